#include "train/data.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace mmrec {
namespace fs = std::filesystem;

namespace {
constexpr char kMagic[8] = {'M', 'M', 'R', 'E', 'C', 'T', 'O', 'K'};
constexpr uint32_t kVersion = 2;  // 2: the tokens' hash
constexpr size_t kHeader = 48;    // magic, version, width, count, key, vocab, hash of the tokens

std::string lower_ext(const std::string& p) {
  std::string e = fs::path(p).extension().string();
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}
}  // namespace

std::vector<std::string> list_data_files(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    check(!ec && fs::exists(st), "data.paths: no such file or directory: ", p);
    if (fs::is_directory(st)) {
      std::vector<std::string> inner;
      for (auto it = fs::recursive_directory_iterator(p); it != fs::recursive_directory_iterator(); ++it) {
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file()) inner.push_back(it->path().string());
      }
      std::sort(inner.begin(), inner.end());
      check(!inner.empty(), "data.paths: directory ", p, " holds no files");
      out.insert(out.end(), inner.begin(), inner.end());
    } else {
      out.push_back(p);
    }
  }
  return out;
}

void for_each_document(const std::vector<std::string>& files, const std::string& format, const std::string& field,
                       const std::function<void(std::string_view)>& f) {
  for (const auto& path : files) {
    const std::string ext = lower_ext(path);
    const bool jsonl = format == "jsonl" || (format == "auto" && (ext == ".jsonl" || ext == ".json"));
    if (!jsonl) {
      f(read_file(path));
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    check(in.good(), path, ": cannot open");
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail(path, ":", lineno, ": invalid JSON: ", e.what());
      }
      auto it = j.is_object() ? j.find(field) : j.end();
      check(j.is_object() && it != j.end() && it->is_string(), path, ":", lineno, ": no string field \"", field,
            "\"");
      f(it->get<std::string>());
    }
  }
}

std::string synthetic_corpus(int64_t bytes, uint64_t seed) {
  static const char* subjects[] = {"the cat", "a dog", "the old man", "my sister", "the little bird", "a farmer",
                                   "the teacher", "our neighbour", "the children", "a sailor", "the baker",
                                   "my friend"};
  static const char* verbs[] = {"sees", "likes", "finds", "follows", "paints", "remembers", "calls", "helps",
                                "carries", "watches", "visits", "forgets"};
  static const char* objects[] = {"the red ball", "a small house", "the river", "an apple", "the green door",
                                  "a quiet garden", "the letter", "the moon", "a wooden boat", "the bridge",
                                  "a warm loaf", "the blue kite"};
  static const char* tails[] = {"in the morning", "every day", "after the rain", "near the school", "at night",
                                "with great care", "before dinner", "on sunday"};
  static const char* numbers[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
  Generator g(seed);
  auto pick = [&](int n) { return static_cast<int>(g.next_u64() % static_cast<uint64_t>(n)); };
  std::string out;
  out.reserve(static_cast<size_t>(bytes) + 256);
  while (static_cast<int64_t>(out.size()) < bytes) {
    const int sentences = 3 + pick(4);
    for (int s = 0; s < sentences; ++s) {
      std::string line;
      const int kind = pick(10);
      if (kind < 6) {
        line = std::string(subjects[pick(12)]) + " " + verbs[pick(12)] + " " + objects[pick(12)];
        if (pick(2)) line += std::string(" ") + tails[pick(8)];
        line += ".";
      } else if (kind < 8) {
        const int a = pick(50), b = pick(50);
        line = std::to_string(a) + " plus " + std::to_string(b) + " is " + std::to_string(a + b) + ".";
      } else {
        const int a = pick(7);
        line = "count: ";
        for (int k = a; k < a + 4; ++k) line += std::string(numbers[k]) + (k + 1 < a + 4 ? ", " : ".");
      }
      line[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(line[0])));
      out += line;
      out += s + 1 < sentences ? " " : "\n\n";
    }
  }
  out.resize(static_cast<size_t>(bytes));
  return out;
}

void TokenDataset::write_cache(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size,
                               uint64_t key) {
  const uint32_t width = vocab_size <= 65536 ? 2 : 4;
  const uint64_t count = tokens.size(), vocab = static_cast<uint64_t>(vocab_size);
  std::string buf(kHeader + count * width, '\0');
  char* p = buf.data();
  std::memcpy(p, kMagic, 8);
  std::memcpy(p + 8, &kVersion, 4);
  std::memcpy(p + 12, &width, 4);
  std::memcpy(p + 16, &count, 8);
  std::memcpy(p + 24, &key, 8);
  std::memcpy(p + 32, &vocab, 8);
  for (size_t i = 0; i < count; ++i) {
    if (width == 2) {
      const uint16_t t = static_cast<uint16_t>(tokens[i]);
      std::memcpy(p + kHeader + 2 * i, &t, 2);
    } else {
      std::memcpy(p + kHeader + 4 * i, &tokens[i], 4);
    }
  }
  const uint64_t h = hash64(p + kHeader, count * width);
  std::memcpy(p + 40, &h, 8);
  write_file_atomic(path, buf);
}

TokenDataset TokenDataset::open(const std::string& path, double val_fraction) {
  TokenDataset d;
  d.map_ = MappedFile::open(path);
  d.path_ = path;
  const uint8_t* p = d.map_.data();
  check(d.map_.size() >= kHeader && std::memcmp(p, kMagic, 8) == 0, path, ": not a token cache file");
  uint32_t version, width;
  uint64_t count, vocab;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&width, p + 12, 4);
  std::memcpy(&count, p + 16, 8);
  std::memcpy(&d.key_, p + 24, 8);
  std::memcpy(&vocab, p + 32, 8);
  check(version == kVersion, path, ": unsupported token cache version ", version, " (this build writes ", kVersion,
        ")");
  check(width == 2 || width == 4, path, ": corrupt token cache (token width ", width, ")");
  const size_t data = d.map_.size() - kHeader;
  check(count <= data / width && count * width == data, path, ": truncated token cache (", d.map_.size(),
        " bytes for ", count, " tokens of ", width, " bytes)");
  uint64_t stored;
  std::memcpy(&stored, p + 40, 8);
  check(hash64(p + kHeader, data) == stored, path, ": corrupt token cache (checksum mismatch)");
  check(vocab >= 1 && vocab <= static_cast<uint64_t>(Tokenizer::kMaxVocab) && (width == 4 || vocab <= 65536), path,
        ": corrupt token cache (vocabulary ", vocab, ")");
  for (uint64_t i = 0; i < count; ++i) {  // every id in range, once per open (the model indexes with them)
    uint32_t t = 0;
    std::memcpy(&t, p + kHeader + i * width, width);
    check(t < vocab, path, ": corrupt token cache (token ", t, " at ", i, " is outside the vocabulary of ", vocab, ")");
  }
  d.width_ = static_cast<int>(width);
  d.tokens_ = p + kHeader;
  d.n_ = static_cast<int64_t>(count);
  d.vocab_ = static_cast<int64_t>(vocab);
  const int64_t val = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(d.n_) * val_fraction));
  d.n_train_ = std::max<int64_t>(0, d.n_ - val);
  return d;
}

TokenDataset TokenDataset::prepare(const DataConfig& c, const Tokenizer& tok, const std::string& cache_dir,
                                   const std::function<void(const std::string&)>& note) {
  std::vector<std::string> files;
  std::string desc = "v1|" + tok.fingerprint() + "|" + c.source;
  if (c.source == "synthetic") {
    desc += "|" + std::to_string(c.synthetic_bytes) + "|" + std::to_string(c.synthetic_seed);
  } else {
    files = list_data_files(c.paths);
    desc += "|" + c.format + "|" + c.text_field;
    for (const auto& f : files) {
      const auto size = fs::file_size(f);
      const auto mtime = fs::last_write_time(f).time_since_epoch().count();
      desc += "|" + fs::absolute(f).lexically_normal().string() + ":" + std::to_string(size) + ":" +
              std::to_string(mtime);
    }
  }
  const uint64_t key = hash64(desc.data(), desc.size());
  const std::string path = (fs::path(cache_dir.empty() ? "." : cache_dir) / ("tokens-" + hex64(key) + ".bin")).string();
  if (fs::exists(path)) {
    try {
      TokenDataset d = open(path, c.val_fraction);
      if (d.key_ == key && d.vocab_ == tok.vocab_size()) return d;
      if (note) note("token cache " + path + " is for other data or another tokenizer: rebuilding it");
    } catch (const Error& e) {
      if (note) note(std::string(e.what()) + ": rebuilding it");
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> tokens;
  Tokenizer::Cache memo;
  int64_t docs = 0, bytes = 0;
  auto add = [&](std::string_view doc) {
    tok.encode_append(doc, tokens, &memo);
    if (!doc.empty() && doc.back() != '\n') tok.encode_append("\n", tokens, &memo);
    ++docs;
    bytes += static_cast<int64_t>(doc.size());
  };
  if (c.source == "synthetic") {
    add(synthetic_corpus(c.synthetic_bytes, static_cast<uint64_t>(c.synthetic_seed)));
  } else {
    if (note) note("tokenizing " + std::to_string(files.size()) + " file(s) with the " +
                   (tok.is_byte_level() ? std::string("byte-level") : tok.fingerprint()) + " tokenizer");
    for_each_document(files, c.format, c.text_field, add);
  }
  write_cache(path, tokens, tok.vocab_size(), key);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (note) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "cached %zu tokens from %lld document(s), %.1f MB of text, in %.1f s: %s",
                  tokens.size(), static_cast<long long>(docs), static_cast<double>(bytes) / 1e6, secs, path.c_str());
    note(buf);
  }
  return open(path, c.val_fraction);
}

int32_t TokenDataset::token(int64_t i) const {
  if (width_ == 2) {
    uint16_t t;
    std::memcpy(&t, tokens_ + 2 * i, 2);
    return t;
  }
  int32_t t;
  std::memcpy(&t, tokens_ + 4 * i, 4);
  return t;
}

void TokenDataset::check_fits(int64_t window, const std::string& what) const {
  check(n_train_ >= window && val_tokens() >= window, "data: the corpus has ", n_, " tokens (", n_train_,
        " for training, ", val_tokens(), " held out): too few for windows of ", window, " tokens (", what, ")");
}

Tensor TokenDataset::train_batch(Generator& g, int64_t batch, int64_t window) const {
  check(n_train_ >= window, "data: ", n_train_, " training tokens cannot hold a window of ", window);
  Tensor out = Tensor::empty({batch, window}, DType::i32);
  int32_t* o = out.data<int32_t>();
  const uint64_t range = static_cast<uint64_t>(n_train_ - window + 1);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t start = static_cast<int64_t>(g.next_u64() % range);
    for (int64_t t = 0; t < window; ++t) o[b * window + t] = token(start + t);
  }
  return out;
}

Tensor TokenDataset::val_batch(int64_t k, int64_t batch, int64_t window) const {
  const int64_t total = val_windows(window);
  const int64_t first = k * batch, count = std::min(batch, total - first);
  check(count > 0, "data: validation batch ", k, " is past the ", total, " held-out windows");
  Tensor out = Tensor::empty({count, window}, DType::i32);
  int32_t* o = out.data<int32_t>();
  for (int64_t b = 0; b < count; ++b) {
    const int64_t start = n_train_ + (first + b) * window;
    for (int64_t t = 0; t < window; ++t) o[b * window + t] = token(start + t);
  }
  return out;
}

}  // namespace mmrec
