// mmrec::Error and helpers to build messages that name the op and the shapes.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

using Shape = std::vector<int64_t>;

// Every error the library raises: bad shapes, dtypes, indices, configs, files.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "[4, 3]"
std::string shape_str(const Shape& s);

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << shape_str(s); }

// Throws Error with the streamed pieces concatenated:
//   fail("matmul: inner dimensions differ: ", a.shape(), " x ", b.shape());
// An allocation that failed; the message names what was being allocated
// and how much ("a f32 tensor [256, 65536] needs 64.0 MiB ...").
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// "64.0 MiB" (binary units, for memory messages).
std::string mib_str(double bytes);

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}

template <class... Args>
void check(bool cond, const Args&... args) {
  if (!cond) fail(args...);
}

}  // namespace mmrec

MMREC_API_END
