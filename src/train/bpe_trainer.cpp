// BPE training over chunk frequencies with incremental pair counts and a lazy
// max-heap (O(total chunk length) per merge only for the chunks it touches).
#include <algorithm>
#include <queue>
#include <unordered_set>

#include "tensor/error.h"
#include "train/tokenizer.h"

namespace mmrec {
namespace {
inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct HeapItem {
  int64_t count;
  uint64_t key;
  // max count first; ties: the smallest pair
  bool operator<(const HeapItem& o) const { return count != o.count ? count < o.count : key > o.key; }
};
}  // namespace

void BpeTrainer::add_text(std::string_view text) {
  pretokenize(text, [&](std::string_view c) { ++counts_[std::string(c)]; });
}

Tokenizer BpeTrainer::train(int64_t vocab_size, const std::function<void(int64_t, int64_t)>& progress) const {
  check(vocab_size >= 256 && vocab_size <= (int64_t{1} << 30), "mmrec-tokenize: vocabulary size must be >= 256, got ",
        vocab_size);
  // Unique chunks in a fixed (sorted) order so that the result is deterministic.
  std::vector<std::pair<std::string, int64_t>> chunks(counts_.begin(), counts_.end());
  std::sort(chunks.begin(), chunks.end());
  std::vector<std::vector<int32_t>> words(chunks.size());
  std::vector<int64_t> freq(chunks.size());
  std::unordered_map<uint64_t, int64_t> pairs;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < chunks.size(); ++w) {
    for (unsigned char c : chunks[w].first) words[w].push_back(c);
    freq[w] = chunks[w].second;
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t k = pair_key(words[w][i], words[w][i + 1]);
      pairs[k] += freq[w];
      auto& lst = where[k];
      if (lst.empty() || lst.back() != static_cast<int32_t>(w)) lst.push_back(static_cast<int32_t>(w));
    }
  }
  std::priority_queue<HeapItem> heap;
  for (const auto& [k, c] : pairs) heap.push({c, k});

  const int64_t want = vocab_size - 256;
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int64_t> seen(words.size(), -1);  // the merge that last touched a word
  while (static_cast<int64_t>(merges.size()) < want && !heap.empty()) {
    const HeapItem top = heap.top();
    heap.pop();
    auto pit = pairs.find(top.key);
    if (pit == pairs.end() || pit->second != top.count) continue;  // stale entry
    if (top.count < 2) break;
    const int32_t a = static_cast<int32_t>(top.key >> 32), b = static_cast<int32_t>(top.key & 0xffffffffu);
    const int32_t id = 256 + static_cast<int32_t>(merges.size());
    const int64_t m = static_cast<int64_t>(merges.size());
    merges.emplace_back(a, b);
    std::unordered_set<uint64_t> changed;
    std::vector<int32_t> list = std::move(where[top.key]);
    where.erase(top.key);
    for (int32_t w : list) {
      if (seen[static_cast<size_t>(w)] == m) continue;
      seen[static_cast<size_t>(w)] = m;
      std::vector<int32_t>& s = words[static_cast<size_t>(w)];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;
      const int64_t f = freq[static_cast<size_t>(w)];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        if ((pairs[k] -= f) == 0) pairs.erase(k);
        changed.insert(k);
      }
      size_t o = 0;
      for (size_t r = 0; r < s.size(); ++r) {
        if (r + 1 < s.size() && s[r] == a && s[r + 1] == b) {
          s[o++] = id;
          ++r;
        } else {
          s[o++] = s[r];
        }
      }
      s.resize(o);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        pairs[k] += f;
        changed.insert(k);
        if (s[i] == id || s[i + 1] == id) {
          auto& lst = where[k];
          if (lst.empty() || lst.back() != w) lst.push_back(w);
        }
      }
    }
    for (uint64_t k : changed) {
      auto it = pairs.find(k);
      if (it != pairs.end() && k != top.key) heap.push({it->second, k});
    }
    if (progress && (merges.size() % 256 == 0)) progress(static_cast<int64_t>(merges.size()), want);
  }
  if (progress) progress(static_cast<int64_t>(merges.size()), want);
  return Tokenizer::from_merges(std::move(merges));
}

}  // namespace mmrec
