// Shared by the fuzz targets: the loaders take paths, so each input is
// written to an in-memory file (memfd) and opened as /proc/self/fd/N.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "tensor/error.h"
#include "train/fileio.h"

namespace mmrec::fuzz {

class MemFile {
 public:
  MemFile() : fd_(::memfd_create("mmrec-fuzz", 0)) {
    if (fd_ < 0) std::abort();
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  // Replaces the contents; returns a path the loaders can open.
  std::string write(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
    return "/proc/self/fd/" + std::to_string(fd_);
  }

 private:
  int fd_;
};

// A checksummed format is fuzzed behind its checksum too: when the first
// byte is odd, the input (less that byte) gets its hash recomputed and
// written at hash_at (the checksum of `from`..`to`; negative offsets count
// from the end), as a crafted file would have.
inline std::string with_checksum(const uint8_t* data, size_t size, long hash_at, long from, long to) {
  if (size == 0) return {};
  std::string s(reinterpret_cast<const char*>(data) + 1, size - 1);
  const long n = static_cast<long>(s.size());
  auto at = [n](long o) { return o < 0 ? n + o : o; };
  if ((data[0] & 1) && at(hash_at) >= 0 && at(hash_at) + 8 <= n && at(from) >= 0 && at(to) >= at(from) &&
      at(to) <= n) {
    const uint64_t h = hash64(s.data() + at(from), static_cast<size_t>(at(to) - at(from)));
    for (int i = 0; i < 8; ++i) s[static_cast<size_t>(at(hash_at) + i)] = static_cast<char>(h >> (8 * i));
  }
  return s;
}

}  // namespace mmrec::fuzz
