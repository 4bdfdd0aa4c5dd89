#include "train/tokenizer.h"

#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "train/fileio.h"

namespace mmrec {
namespace {
inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

enum Cls { kSpace, kLetter, kDigit, kOther };
inline Cls cls(unsigned char c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return kSpace;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return kLetter;
  if (c >= '0' && c <= '9') return kDigit;
  return kOther;
}
constexpr size_t kMaxChunk = Tokenizer::kMaxTokenBytes;
}  // namespace

void pretokenize(std::string_view s, const std::function<void(std::string_view)>& f) {
  const size_t n = s.size();
  auto emit = [&](size_t b, size_t e) {
    for (; e - b > kMaxChunk; b += kMaxChunk) f(s.substr(b, kMaxChunk));
    f(s.substr(b, e - b));
  };
  size_t i = 0;
  while (i < n) {
    const Cls c = cls(static_cast<unsigned char>(s[i]));
    size_t j = i + 1;
    if (s[i] == ' ' && j < n && cls(static_cast<unsigned char>(s[j])) != kSpace) {
      const Cls w = cls(static_cast<unsigned char>(s[j]));
      while (j < n && cls(static_cast<unsigned char>(s[j])) == w) ++j;
    } else if (c == kSpace) {
      while (j < n && cls(static_cast<unsigned char>(s[j])) == kSpace) ++j;
      // leave a final space to start the next word (" word")
      if (j < n && j - i > 1 && s[j - 1] == ' ') --j;
    } else {
      while (j < n && cls(static_cast<unsigned char>(s[j])) == c) ++j;
    }
    emit(i, j);
    i = j;
  }
}

Tokenizer Tokenizer::byte_level() {
  Tokenizer t;
  t.build();
  return t;
}

Tokenizer Tokenizer::from_merges(std::vector<std::pair<int32_t, int32_t>> merges) {
  Tokenizer t;
  check(merges.size() <= static_cast<size_t>(kMaxVocab - 256), "tokenizer: ", merges.size(),
        " merges (the limit is ", kMaxVocab - 256, ")");
  std::vector<size_t> length(256, 1);  // token length in bytes, checked before any token is built
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto [a, b] = merges[i];
    const int32_t limit = 256 + static_cast<int32_t>(i);
    check(a >= 0 && a < limit && b >= 0 && b < limit, "tokenizer: merge ", i, " (", a, ", ", b,
          ") refers to an id not defined before it");
    length.push_back(length[static_cast<size_t>(a)] + length[static_cast<size_t>(b)]);
    check(length.back() <= kMaxTokenBytes, "tokenizer: merge ", i, " (", a, ", ", b, ") makes a token of ",
          length.back(), " bytes (the limit is ", kMaxTokenBytes, ": merges stay within pretokenized chunks)");
  }
  t.merges_ = std::move(merges);
  t.build();
  return t;
}

void Tokenizer::build() {
  bytes_.clear();
  rank_.clear();
  for (int i = 0; i < 256; ++i) bytes_.emplace_back(1, static_cast<char>(i));
  for (size_t i = 0; i < merges_.size(); ++i) {
    const auto [a, b] = merges_[i];
    bytes_.push_back(bytes_[a] + bytes_[b]);
    rank_.emplace(pair_key(a, b), static_cast<int32_t>(i));  // the first merge of a pair wins
  }
}

Tokenizer Tokenizer::load(const std::string& path) { return from_json_string(read_file(path), path); }

Tokenizer Tokenizer::from_json_string(const std::string& json_text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not a tokenizer JSON: ", e.what());
  }
  auto text = [&](const char* key) {  // a string field, else "" (never a type error)
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  check(j.is_object() && text("type") == "mmrec-bpe", path,
        ": not a tokenizer written by mmrec-tokenize (\"type\" is not \"mmrec-bpe\")");
  check(text("pretokenizer") == "mmrec-v1", path, ": unknown pretokenizer \"", text("pretokenizer"), "\"");
  std::vector<std::pair<int32_t, int32_t>> merges;
  try {
    check(j.at("merges").is_array(), path, ": \"merges\" must be an array of id pairs");
    for (const auto& m : j.at("merges")) {
      check(m.is_array() && m.size() == 2 && m[0].is_number_integer() && m[1].is_number_integer(), path,
            ": merge ", merges.size(), " must be a pair of ids, got ", m.dump());
      const int64_t a = m[0].get<int64_t>(), b = m[1].get<int64_t>();
      check(a >= 0 && b >= 0 && a < kMaxVocab && b < kMaxVocab, path, ": merge ", merges.size(), " (", a, ", ",
            b, ") refers to an id outside [0, ", kMaxVocab, ")");
      merges.emplace_back(static_cast<int32_t>(a), static_cast<int32_t>(b));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": malformed merges: ", e.what());
  }
  Tokenizer t;
  try {
    t = from_merges(std::move(merges));
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  if (j.contains("vocab_size"))
    check(j["vocab_size"].is_number_integer() && j["vocab_size"].get<int64_t>() == t.vocab_size(), path,
          ": vocab_size ", j["vocab_size"].dump(), " does not match its ", t.merges_.size(), " merges");
  return t;
}

std::map<std::string, std::string> tokenizer_metadata(const Tokenizer& tok) {
  if (tok.is_byte_level()) return {};
  return {{"tokenizer", tok.to_json_string()}};
}

Tokenizer tokenizer_from_metadata(const std::map<std::string, std::string>& metadata, const std::string& path) {
  auto it = metadata.find("tokenizer");
  if (it == metadata.end()) return Tokenizer::byte_level();
  return Tokenizer::from_json_string(it->second, path + " (metadata \"tokenizer\")");
}

std::string Tokenizer::to_json_string() const {
  nlohmann::json j;
  j["type"] = "mmrec-bpe";
  j["version"] = 1;
  j["pretokenizer"] = "mmrec-v1";
  j["vocab_size"] = vocab_size();
  nlohmann::json m = nlohmann::json::array();
  for (const auto& [a, b] : merges_) m.push_back({a, b});
  j["merges"] = std::move(m);
  std::string s = j.dump();
  // one merge per line keeps the file diffable
  std::string out;
  out.reserve(s.size() + merges_.size());
  for (size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (s[i] == ']' && i + 1 < s.size() && s[i + 1] == ',') {
      out += ",\n";
      ++i;
    }
  }
  return out + "\n";
}

void Tokenizer::save(const std::string& path) const { write_file_atomic(path, to_json_string()); }

const std::string& Tokenizer::token_bytes(int32_t id) const {
  check(id >= 0 && id < vocab_size(), "tokenizer: id ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
  return bytes_[static_cast<size_t>(id)];
}

std::string Tokenizer::fingerprint() const {
  if (merges_.empty()) return "byte";
  std::vector<int32_t> flat;
  for (const auto& [a, b] : merges_) flat.push_back(a), flat.push_back(b);
  return "bpe" + std::to_string(vocab_size()) + "-" + hex64(hash64(flat.data(), flat.size() * 4));
}

void Tokenizer::encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids(chunk.begin(), chunk.end());
  for (auto& v : ids) v = static_cast<unsigned char>(v);
  // repeatedly apply the lowest-ranked merge present (as in training)
  while (ids.size() > 1) {
    int32_t best = -1;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      auto it = rank_.find(pair_key(ids[i], ids[i + 1]));
      if (it != rank_.end() && (best < 0 || it->second < best)) best = it->second;
    }
    if (best < 0) break;
    const auto [a, b] = merges_[static_cast<size_t>(best)];
    const int32_t id = 256 + best;
    size_t w = 0;
    for (size_t r = 0; r < ids.size(); ++r) {
      if (r + 1 < ids.size() && ids[r] == a && ids[r + 1] == b) {
        ids[w++] = id;
        ++r;
      } else {
        ids[w++] = ids[r];
      }
    }
    ids.resize(w);
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

void Tokenizer::encode_append(std::string_view text, std::vector<int32_t>& out, Cache* cache) const {
  if (merges_.empty()) {
    for (unsigned char c : text) out.push_back(c);
    return;
  }
  pretokenize(text, [&](std::string_view chunk) {
    if (!cache) return encode_chunk(chunk, out);
    auto it = cache->find(std::string(chunk));
    if (it == cache->end()) {
      std::vector<int32_t> ids;
      encode_chunk(chunk, ids);
      if (cache->size() > (1u << 20)) cache->clear();  // bound the memo on huge corpora
      it = cache->emplace(std::string(chunk), std::move(ids)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  Cache cache;
  encode_append(text, out, &cache);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  for (int32_t id : ids) s += token_bytes(id);
  return s;
}

}  // namespace mmrec
