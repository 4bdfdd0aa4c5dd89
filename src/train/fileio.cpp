#include "train/fileio.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tensor/error.h"

namespace mmrec {
namespace fs = std::filesystem;

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not allow it
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const std::string& path, std::string_view data) {
  const fs::path p(path);
  const fs::path dir = p.parent_path();
  if (!dir.empty()) fs::create_directories(dir);
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(fd >= 0, tmp, ": cannot create: ", std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(tmp, ": write failed: ", std::strerror(e));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(tmp, ": fsync failed: ", std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(path, ": rename failed: ", std::strerror(e));
  }
  fsync_dir(dir.string());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(f.good(), path, ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

uint64_t hash64(const void* data, size_t n, uint64_t seed) {
  // 4 independent multiply-rotate lanes over 8-byte words, then a mix.
  const uint8_t* p = static_cast<const uint8_t*>(data);
  constexpr uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full;
  auto rotl = [](uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  uint64_t h[4] = {seed + k1, seed ^ k2, seed - k1, ~seed};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      h[l] = rotl(h[l] ^ (w * k2), 31) * k1;
    }
  uint64_t r = h[0] ^ rotl(h[1], 7) ^ rotl(h[2], 12) ^ rotl(h[3], 18) ^ n;
  for (; i < n; ++i) r = (r ^ p[i]) * 0x100000001B3ull;
  r ^= r >> 33;
  r *= 0xFF51AFD7ED558CCDull;
  r ^= r >> 33;
  r *= 0xC4CEB9FE1A85EC53ull;
  r ^= r >> 33;
  return r;
}

uint64_t hash_file(const std::string& path) {
  MappedFile m = MappedFile::open(path);
  return hash64(m.data(), m.size());
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

MappedFile MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  check(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, ": cannot stat");
  }
  MappedFile m;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ == 0) {
    ::close(fd);
    m.base_ = std::shared_ptr<void>(static_cast<void*>(nullptr), [](void*) {});
    return m;
  }
  void* base = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  check(base != MAP_FAILED, path, ": mmap failed: ", std::strerror(errno));
  const size_t size = m.size_;
  m.base_ = std::shared_ptr<void>(base, [size](void* b) { ::munmap(b, size); });
  return m;
}

}  // namespace mmrec
