#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"
#include "train/fileio.h"

namespace mmrec {
namespace fs = std::filesystem;

namespace {
constexpr char kMagic[8] = {'M', 'M', 'R', 'E', 'C', 'T', 'S', '1'};
constexpr size_t kAlign = 64;
constexpr size_t kMaxElements = size_t{1} << 56;  // of a shape, empty dimensions counted as 1
size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// A non-negative integer of the header (a float or a negative value is corruption, not a cast).
size_t get_size(const nlohmann::json& v, const std::string& path, const char* what) {
  check(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), path, ": corrupt header (",
        what, " is ", v.dump(), ")");
  return v.get<size_t>();
}
}  // namespace

void write_train_state(const std::string& path, const TrainState& s) {
  nlohmann::json index = nlohmann::json::array();
  size_t off = 0;
  std::vector<Tensor> contig;
  for (const auto& [name, t] : s.tensors) {
    contig.push_back(t.contiguous());
    const size_t bytes = contig.back().nbytes();
    index.push_back({{"name", name}, {"dtype", std::string(dtype_name(t.dtype()))}, {"shape", t.shape()},
                     {"offset", off}, {"bytes", bytes}});
    off = align_up(off + bytes);
  }
  const std::string header = nlohmann::json{{"meta", s.meta}, {"tensors", index}}.dump();
  const size_t data_start = align_up(16 + header.size());
  std::string buf(data_start + off + 8, '\0');
  std::memcpy(buf.data(), kMagic, 8);
  const uint64_t hlen = header.size();
  std::memcpy(buf.data() + 8, &hlen, 8);
  std::memcpy(buf.data() + 16, header.data(), header.size());
  for (size_t i = 0; i < contig.size(); ++i) {
    const auto& e = index[i];
    if (contig[i].nbytes())
      std::memcpy(buf.data() + data_start + e["offset"].get<size_t>(), contig[i].raw_data(), contig[i].nbytes());
  }
  const uint64_t h = hash64(buf.data(), buf.size() - 8);
  std::memcpy(buf.data() + buf.size() - 8, &h, 8);
  write_file_atomic(path, buf);
}

TrainState read_train_state(const std::string& path) {
  check(fs::exists(path), path, ": missing (incomplete checkpoint)");
  MappedFile m = MappedFile::open(path);
  const uint8_t* p = m.data();
  const size_t n = m.size();
  check(n >= 24 && std::memcmp(p, kMagic, 8) == 0, path, ": not a training state file (bad magic)");
  uint64_t stored;
  std::memcpy(&stored, p + n - 8, 8);
  check(hash64(p, n - 8) == stored, path, ": corrupt (checksum mismatch)");
  uint64_t hlen;
  std::memcpy(&hlen, p + 8, 8);
  // Every size below is compared by subtraction from n - 8, never by a sum that could wrap.
  const size_t body = n - 8;  // before the hash
  check(hlen <= body - 16, path, ": corrupt (header length ", hlen, " past the end)");
  TrainState s;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(p + 16), hlen));
    s.meta = header.at("meta");
    const size_t data_start = align_up(16 + hlen);
    const auto& tensors = header.at("tensors");
    check(tensors.is_array(), path, ": corrupt header (\"tensors\" is not an array)");
    for (const auto& e : tensors) {
      const std::string name = e.at("name").get<std::string>();
      const DType dt = dtype_from_name(e.at("dtype").get<std::string>());
      Shape shape;
      check(e.at("shape").is_array(), path, ": corrupt header (tensor ", name, " has no shape)");
      for (const auto& d : e.at("shape"))
        shape.push_back(static_cast<int64_t>(std::min<size_t>(get_size(d, path, "a dimension"), INT64_MAX)));
      const size_t off = get_size(e.at("offset"), path, "an offset"), bytes = get_size(e.at("bytes"), path, "a size");
      const size_t space = data_start <= body ? body - data_start : 0;
      check(off <= space && bytes <= space - off, path, ": corrupt (tensor ", name, " out of bounds)");
      // The shape must describe exactly `bytes`, which the file holds: checked without overflow.
      size_t elems = 1, span = 1;
      for (int64_t d : shape) {
        const size_t m = d < 0 ? 0 : std::max<size_t>(static_cast<size_t>(d), 1);
        check(m > 0 && span <= kMaxElements / m, path, ": corrupt (tensor ", name, " shape ", shape_str(shape), ")");
        span *= m;
        elems = d == 0 ? 0 : elems * static_cast<size_t>(d);
      }
      check(elems * dtype_size(dt) == bytes, path, ": corrupt (tensor ", name, " shape ", shape_str(shape),
            " does not fit its ", bytes, " bytes)");
      Tensor t = Tensor::empty(shape, dt);
      if (bytes) std::memcpy(t.raw_data(), p + data_start + off, bytes);
      s.tensors.emplace_back(name, t);
    }
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": corrupt header: ", e.what());
  }
  return s;
}

std::string checkpoint_problem(const std::string& dir) {
  const fs::path d(dir);
  try {
    const TrainState st = read_train_state((d / kCheckpointStateFile).string());
    const fs::path model = d / kCheckpointModelFile;
    std::error_code ec;
    if (!fs::is_regular_file(model, ec)) return model.string() + ": missing";
    const auto& mf = st.meta.at("model_file");
    if (fs::file_size(model) != mf.at("bytes").get<uint64_t>() ||
        hex64(hash_file(model.string())) != mf.at("hash").get<std::string>())
      return model.string() + ": corrupt (its hash does not match the one in " + kCheckpointStateFile + ")";
  } catch (const Error& e) {
    return e.what();
  } catch (const nlohmann::json::exception& e) {
    return (d / kCheckpointStateFile).string() + ": malformed training state: " + e.what();
  }
  return "";
}

std::string choose_resume_checkpoint(const std::vector<CheckpointInfo>& list, bool strict,
                                     const std::function<void(const std::string&)>& note) {
  check(!list.empty(), "resume: no checkpoint to resume from");
  std::vector<std::pair<std::string, std::string>> damaged;  // dir, problem (newest first)
  for (size_t i = list.size(); i-- > 0;) {
    const std::string problem = checkpoint_problem(list[i].dir);
    if (problem.empty()) {
      if (damaged.empty()) return list[i].dir;
      if (strict)
        fail("the newest checkpoint ", damaged.front().first, " is damaged (", damaged.front().second,
             "); the newest intact one is ", list[i].dir, ": remove the damaged one(s) to resume from it, or resume ",
             "without --strict-resume to fall back to it");
      for (const auto& [dir, why] : damaged) if (note) note("skipping damaged checkpoint " + dir + ": " + why);
      if (note) note("falling back to the newest intact checkpoint, " + list[i].dir);
      return list[i].dir;
    }
    damaged.emplace_back(list[i].dir, problem);
  }
  fail("no intact checkpoint to resume from: the newest, ", damaged.front().first, ", is damaged (",
       damaged.front().second, ")", list.size() > 1 ? " and so are the older ones" : "",
       "; use --fresh to start over");
}

std::string checkpoints_root(const std::string& run_dir) { return (fs::path(run_dir) / "checkpoints").string(); }

std::vector<CheckpointInfo> list_checkpoints(const std::string& run_dir) {
  std::vector<CheckpointInfo> out;
  const fs::path root = checkpoints_root(run_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("step-", 0) != 0) continue;
    const std::string digits = name.substr(5);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;  // *.tmp-*
    out.push_back({std::stoll(digits), e.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::string commit_checkpoint(const std::string& run_dir, int64_t step,
                              const std::function<void(const std::string&)>& fill) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  const fs::path root = checkpoints_root(run_dir);
  fs::create_directories(root);
  const fs::path final_dir = root / name;
  const fs::path tmp = root / (std::string(name) + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fill(tmp.string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  fsync_dir(tmp.string());
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  fsync_dir(root.string());
  return final_dir.string();
}

void prune_checkpoints(const std::string& run_dir, int64_t keep) {
  const fs::path root = checkpoints_root(run_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp-") != std::string::npos) fs::remove_all(e.path(), ec);
  }
  if (keep <= 0) return;
  auto list = list_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < list.size(); ++i) fs::remove_all(list[i].dir, ec);
}

}  // namespace mmrec
