// safetensors read/write (format: https://github.com/huggingface/safetensors).
// Reading trusts nothing in the file: every length, offset and shape is
// checked against the file size before a byte of data is touched.
#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace mmrec {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit too
constexpr size_t kMaxRank = 16;
constexpr uint64_t kMaxElements = uint64_t{1} << 56;  // strides and byte sizes stay far from overflow

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i8: return "I8";
    case DType::u8: return "U8";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  return "?";
}

bool st_dtype_from_name(const std::string& n, DType& out) {
  static const std::pair<const char*, DType> table[] = {{"F32", DType::f32}, {"BF16", DType::bf16},
                                                        {"I8", DType::i8},   {"U8", DType::u8},
                                                        {"I32", DType::i32}, {"I64", DType::i64}};
  for (auto& [name, t] : table)
    if (n == name) {
      out = t;
      return true;
    }
  return false;
}

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write_safetensors: cannot write '", path, "': ", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Reads exactly n bytes at offset; false on a short read (the file shrank).
bool read_at(int fd, void* data, size_t n, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

uint64_t get_u64(const nlohmann::json& v, const std::string& where) {
  check(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), where, ": expected a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const nlohmann::json& e, const std::string& where) {
  const std::string w = where + ": tensor '" + name + "'";
  check(e.is_object(), w, ": expected an object with dtype, shape and data_offsets, got ", e.dump());
  Entry out;
  out.name = name;
  for (const char* k : {"dtype", "shape", "data_offsets"})
    check(e.contains(k), w, ": missing \"", k, "\"");
  const auto& dt = e["dtype"];
  check(dt.is_string(), w, ": dtype must be a string, got ", dt.dump());
  if (!st_dtype_from_name(dt.get<std::string>(), out.dtype))
    fail(w, ": dtype ", dt.get<std::string>(), " is not supported (supported: F32, BF16, I8, U8, I32, I64)");
  const auto& sh = e["shape"];
  check(sh.is_array(), w, ": shape must be an array, got ", sh.dump());
  check(sh.size() <= kMaxRank, w, ": shape has ", sh.size(), " dimensions (at most ", kMaxRank, ")");
  uint64_t numel = 1, span = 1;  // span: empty dimensions count as 1, as in the strides
  bool overflow = false;
  for (const auto& d : sh) {
    const uint64_t n = get_u64(d, w + " shape");
    check(n <= static_cast<uint64_t>(INT64_MAX), w, ": shape entry ", n, " is too large");
    out.shape.push_back(static_cast<int64_t>(n));
    const uint64_t m = std::max<uint64_t>(n, 1);
    if (span > kMaxElements / m) overflow = true;
    else span *= m;
    numel = n == 0 ? 0 : numel * n;  // <= span while no overflow
  }
  check(!overflow, w, ": shape ", sh.dump(), " has too many elements (the limit is ", kMaxElements, ")");
  const auto& off = e["data_offsets"];
  check(off.is_array() && off.size() == 2, w, ": data_offsets must be [begin, end], got ", off.dump());
  out.begin = get_u64(off[0], w + " data_offsets");
  out.end = get_u64(off[1], w + " data_offsets");
  check(out.begin <= out.end, w, ": data_offsets [", out.begin, ", ", out.end, "] are reversed");
  const uint64_t esize = dtype_size(out.dtype);
  check(numel * esize == out.end - out.begin, w, ": shape ",
        shape_str(out.shape), " of ", dt.get<std::string>(), " needs ", numel * esize,
        " bytes but data_offsets [", out.begin, ", ", out.end, "] hold ", out.end - out.begin);
  return out;
}

}  // namespace

Tensor Safetensors::get(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  fail("safetensors '", path, "': no tensor named '", name, "'");
}

bool Safetensors::has(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const NamedTensor& nt) { return nt.first == name; });
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  std::set<std::string> seen;
  std::vector<Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    check(name != "__metadata__", "write_safetensors: '__metadata__' is not a valid tensor name");
    check(seen.insert(name).second, "write_safetensors: tensor name '", name, "' appears twice");
    check(t.defined(), "write_safetensors: tensor '", name, "' is undefined");
    Tensor c = t.contiguous();
    header[name] = {{"dtype", st_dtype_name(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + c.nbytes()}}};
    offset += c.nbytes();
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned, like the reference writer
  const uint64_t hlen = h.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(hlen >> (8 * i));

  // Atomic: a crash leaves either the old file or the new one, never half of one.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.fd < 0) fail("write_safetensors: cannot create '", tmp, "': ", std::strerror(errno));
    try {
      write_all(fd.fd, len_bytes, 8, tmp);
      write_all(fd.fd, h.data(), h.size(), tmp);
      for (const Tensor& t : data) write_all(fd.fd, t.raw_data(), t.nbytes(), tmp);
      if (::fsync(fd.fd) != 0) fail("write_safetensors: cannot sync '", tmp, "': ", std::strerror(errno));
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("write_safetensors: cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
  // Make the rename itself durable.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.fd >= 0) ::fsync(dfd.fd);
}

Safetensors read_safetensors(const std::string& path) {
  const std::string where = "read_safetensors: '" + path + "'";
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) fail(where, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) fail(where, ": cannot stat: ", std::strerror(errno));
  check(S_ISREG(st.st_mode), where, ": not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  check(size >= 8, where, ": file too short for a safetensors header (", size, " bytes)");
  unsigned char len_bytes[8];
  check(read_at(fd.fd, len_bytes, 8, 0), where, ": cannot read the header length");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  check(hlen <= size - 8, where, ": header length ", hlen, " exceeds the file size (", size,
        " bytes); the file is truncated or not safetensors");
  check(hlen <= kMaxHeaderBytes, where, ": header length ", hlen, " is larger than the limit of ",
        kMaxHeaderBytes, " bytes");
  std::string h(hlen, '\0');
  check(read_at(fd.fd, h.data(), hlen, 8), where, ": cannot read the header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": invalid JSON header: ", e.what());
  }
  check(header.is_object(), where, ": the header must be a JSON object");

  Safetensors out;
  out.path = path;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      check(it.value().is_object(), where, ": __metadata__ must be an object of strings");
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    entries.push_back(parse_entry(it.key(), it.value(), where));
  }
  const uint64_t data_start = 8 + hlen;
  const uint64_t data_size = size - data_start;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    check(e.end <= data_size, where, ": tensor '", e.name, "' data_offsets [", e.begin, ", ", e.end,
          "] run past the end of the data (", data_size, " bytes); the file is truncated");
    if (i > 0)
      check(e.begin >= entries[i - 1].end, where, ": tensors '", entries[i - 1].name, "' and '", e.name,
            "' overlap");
  }
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (t.nbytes() > 0)
      check(read_at(fd.fd, t.raw_data(), t.nbytes(), data_start + e.begin), where, ": cannot read tensor '",
            e.name, "' (the file changed while reading?)");
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace mmrec
