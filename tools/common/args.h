// Command-line reading shared by the tools: flags with values, checked
// numbers, and one UsageError that each tool prints as "tool: message" with
// exit status 2.
//
//   tools::Args args(argc, argv);
//   while (args.next()) {
//     if (args.is("--seq")) seq = args.int_value(1);       // "--seq: expected an integer >= 1, got 'x'"
//     else if (args.is("--json")) json = true;
//     else args.unknown();                                  // "unknown argument '--x' (see --help)"
//   }
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <initializer_list>
#include <string>

namespace mmrec::tools {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  Args(int argc, char** argv) : argc_(argc), argv_(argv) {}

  // Moves to the next argument; false after the last.
  bool next() {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_];
    return true;
  }
  const std::string& flag() const { return flag_; }
  bool is(const char* name) const { return flag_ == name; }
  // True when the argument after the current one exists and is not a flag.
  bool plain_follows() const { return i_ + 1 < argc_ && std::string(argv_[i_ + 1]).rfind("--", 0) != 0; }

  // The argument after the current one, not consumed ("" after the last).
  std::string peek() const { return i_ + 1 < argc_ ? argv_[i_ + 1] : ""; }
  // The current flag's value: the next argument.
  std::string value() {
    if (i_ + 1 >= argc_) throw UsageError(flag_ + ": missing value");
    return argv_[++i_];
  }
  // value() as an integer >= lo.
  int64_t int_value(int64_t lo) {
    const std::string v = value();
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < lo)
      throw UsageError(flag_ + ": expected an integer >= " + std::to_string(lo) + ", got '" + v + "'");
    return x;
  }
  // value() as a finite number >= 0.
  double float_value() {
    const std::string v = value();
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !std::isfinite(x) || x < 0)
      throw UsageError(flag_ + ": expected a number >= 0, got '" + v + "'");
    return x;
  }
  // value() as one of the names given (e.g. --dtype f32|bf16).
  std::string choice_value(std::initializer_list<const char*> names) {
    const std::string v = value();
    std::string list;
    for (const char* n : names) {
      if (v == n) return v;
      list += list.empty() ? n : std::string(", ") + n;
    }
    throw UsageError(flag_ + ": expected one of " + list + ", got '" + v + "'");
  }
  [[noreturn]] void unknown() const { throw UsageError("unknown argument '" + flag_ + "' (see --help)"); }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string flag_;
};

}  // namespace mmrec::tools
