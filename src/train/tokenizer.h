// Tokenizers: byte-level (256 ids, the default) and byte-level BPE trained by
// tools/mmrec-tokenize and saved as JSON. Both round-trip any bytes exactly:
// decode(encode(s)) == s, valid UTF-8 or not.
//
//   Tokenizer tok = Tokenizer::load("tok.json");       // or Tokenizer::byte_level()
//   std::vector<int32_t> ids = tok.encode("hello world");
//   std::string back = tok.decode(ids);
//
//   BpeTrainer t;  t.add_text(corpus);  Tokenizer bpe = t.train(4096);  bpe.save("tok.json");
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

class Tokenizer {
 public:
  // Limits a loaded file is held to: the vocabulary (256 + merges), and the
  // bytes of one token, which is the pretokenizer's longest chunk (no merge
  // can make a longer token that encoding could ever produce).
  static constexpr int64_t kMaxVocab = int64_t{1} << 20;
  static constexpr size_t kMaxTokenBytes = 64;

  // Ids 0..255 are the bytes; BPE adds one id per merge from 256 on.
  static Tokenizer byte_level();
  // From the JSON of save(); a malformed file is an Error naming it.
  static Tokenizer load(const std::string& path);
  // From the text of such a file; errors name `path` (where the text came from).
  static Tokenizer from_json_string(const std::string& text, const std::string& path);
  static Tokenizer from_merges(std::vector<std::pair<int32_t, int32_t>> merges);

  void save(const std::string& path) const;  // atomic
  std::string to_json_string() const;

  int64_t vocab_size() const { return 256 + static_cast<int64_t>(merges_.size()); }
  bool is_byte_level() const { return merges_.empty(); }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  // The bytes a token stands for (an Error for an id outside the vocabulary).
  const std::string& token_bytes(int32_t id) const;
  // A short hash of the vocabulary (cache keys, checkpoint checks).
  std::string fingerprint() const;

  // Chunk -> ids memo for encode_append (one per thread).
  using Cache = std::unordered_map<std::string, std::vector<int32_t>>;
  std::vector<int32_t> encode(std::string_view text) const;
  void encode_append(std::string_view text, std::vector<int32_t>& out, Cache* cache = nullptr) const;
  std::string decode(const std::vector<int32_t>& ids) const;

 private:
  void build();
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const;

  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<std::string> bytes_;                  // id -> bytes
  std::unordered_map<uint64_t, int32_t> rank_;      // (a, b) -> merge index
};

// A checkpoint records its tokenizer in its metadata under "tokenizer" (the
// JSON of save()); none means byte-level.
std::map<std::string, std::string> tokenizer_metadata(const Tokenizer& tok);  // {} for byte-level
Tokenizer tokenizer_from_metadata(const std::map<std::string, std::string>& metadata, const std::string& path);

// Splits text into the chunks BPE merges stay within: a word with its
// leading space, a run of digits, a run of punctuation, a run of whitespace
// (pieces of at most 64 bytes). The chunks concatenate back to `text`.
void pretokenize(std::string_view text, const std::function<void(std::string_view)>& f);

// Learns merges from chunk frequencies: repeatedly merges the most frequent
// adjacent pair (ties: the smallest ids), deterministically.
class BpeTrainer {
 public:
  void add_text(std::string_view text);
  // Stops early when no pair occurs at least twice. `progress(done, total)`
  // is called now and then.
  Tokenizer train(int64_t vocab_size, const std::function<void(int64_t, int64_t)>& progress = {}) const;
  int64_t unique_chunks() const { return static_cast<int64_t>(counts_.size()); }

 private:
  std::unordered_map<std::string, int64_t> counts_;
};

}  // namespace mmrec

MMREC_API_END
