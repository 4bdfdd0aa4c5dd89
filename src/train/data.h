// The data pipeline: documents from text / JSONL files (or a generated
// corpus), tokenized once into a binary cache that is memory-mapped, split
// into a training head and a held-out validation tail; training windows of
// seq_len + 1 tokens are drawn by a seeded counter-based RNG (its state is
// the checkpointed data position).
//
//   TokenDataset ds = TokenDataset::prepare(cfg.data, tok, "runs/x");
//   Generator g(seed);
//   Tensor batch = ds.train_batch(g, 8, 257);      // [8, 257] i32
//   Tensor val = ds.val_batch(0, 8, 257);          // consecutive held-out windows
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/export.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "train/fileio.h"
#include "train/tokenizer.h"
#include "train/train_config.h"

MMREC_API_BEGIN

namespace mmrec {

// The files behind data.paths: directories are walked (sorted, hidden files
// skipped); a missing path is an Error naming it.
std::vector<std::string> list_data_files(const std::vector<std::string>& paths);

// Calls f for every document: a whole text file, or the `field` string of
// each line of a JSONL file (format "auto" picks by extension).
void for_each_document(const std::vector<std::string>& files, const std::string& format, const std::string& field,
                       const std::function<void(std::string_view)>& f);

// A deterministic English-like corpus of about `bytes` bytes (sentences from
// a small grammar and simple arithmetic), for runs that need no download.
std::string synthetic_corpus(int64_t bytes, uint64_t seed);

class TokenDataset {
 public:
  // Tokenizes the configured corpus into <cache_dir>/tokens-<key>.bin unless
  // that file already exists (the key hashes the files' names, sizes and
  // times, the data options and the tokenizer), then maps it. `note`
  // receives one-line messages for the user.
  static TokenDataset prepare(const DataConfig& c, const Tokenizer& tok, const std::string& cache_dir,
                              const std::function<void(const std::string&)>& note = {});
  // Maps an existing cache file (an Error if it is malformed).
  static TokenDataset open(const std::string& cache_path, double val_fraction);
  // Writes a cache file atomically.
  static void write_cache(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size,
                          uint64_t key);

  int64_t size() const { return n_; }
  int64_t train_tokens() const { return n_train_; }
  int64_t val_tokens() const { return n_ - n_train_; }
  int64_t vocab_size() const { return vocab_; }
  uint64_t key() const { return key_; }
  const std::string& path() const { return path_; }
  int32_t token(int64_t i) const;

  // B windows of `window` tokens from the training part, each start drawn
  // from g (one counter per window).
  Tensor train_batch(Generator& g, int64_t batch, int64_t window) const;
  // Held-out windows are consecutive, non-overlapping, from the start of the
  // validation part; batch k holds windows [k*B, k*B+B) (the last may be short).
  int64_t val_windows(int64_t window) const { return val_tokens() / window; }
  Tensor val_batch(int64_t k, int64_t batch, int64_t window) const;
  // Checks the split leaves at least one window on each side.
  void check_fits(int64_t window, const std::string& what) const;

 private:
  MappedFile map_;
  const uint8_t* tokens_ = nullptr;
  int width_ = 2;
  int64_t n_ = 0, n_train_ = 0, vocab_ = 0;
  uint64_t key_ = 0;
  std::string path_;
};

}  // namespace mmrec

MMREC_API_END
