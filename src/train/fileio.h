// File helpers of the training stack: atomic writes (temporary file, fsync,
// rename, fsync of the directory), a fast 64-bit content hash for corruption
// checks, and read-only memory maps.
//
//   write_file_atomic("runs/x/state.bin", bytes);   // readers see the old file or the new one
//   MappedFile m = MappedFile::open("tokens.bin");  // m.data(), m.size()
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

// Writes `data` to path.tmp-<pid>, fsyncs it, renames it over `path` and
// fsyncs the directory. Creates missing parent directories.
void write_file_atomic(const std::string& path, std::string_view data);
// fsync of a directory (makes a rename inside it durable).
void fsync_dir(const std::string& dir);
std::string read_file(const std::string& path);

// 64-bit hash of bytes (not cryptographic: detects corruption).
uint64_t hash64(const void* data, size_t n, uint64_t seed = 0);
uint64_t hash_file(const std::string& path);
std::string hex64(uint64_t v);  // 16 hex digits

class MappedFile {
 public:
  static MappedFile open(const std::string& path);  // an Error naming the file when it fails
  const uint8_t* data() const { return static_cast<const uint8_t*>(base_.get()); }
  size_t size() const { return size_; }
  // Keeps the mapping alive (e.g. as the owner of a Tensor::from_blob).
  std::shared_ptr<void> keep_alive() const { return base_; }

 private:
  std::shared_ptr<void> base_;
  size_t size_ = 0;
};

}  // namespace mmrec

MMREC_API_END
