#include "autograd/plan.h"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <utility>

#include "tensor/allocator.h"

namespace mmrec::autograd::detail {
namespace {

// Streams whose addresses agree in their low 12 bits alias in the core's
// store-to-load checks: a kernel reading three [8, 1025, 512] arrays and
// streaming two out ran 3.5x slower on a Zen 3 EPYC when all five started at
// the same offset in a 4 KiB page (as a plan of page-multiple sizes puts
// them) than 256 bytes apart (the scan's backward: 6.3 -> 2.6 ms a call).
// So a large temporary starts at one of 16 "colours", 256-byte steps of a
// 4 KiB page, chosen apart from those of the temporaries it shares calls with.
constexpr size_t kPage = 4096, kColourStep = 256, kColours = kPage / kColourStep;
constexpr size_t kColourMinBytes = 64 << 10;  // smaller buffers stay in cache or are short

size_t round_up(size_t b) { return (b + alloc::kAlignment - 1) / alloc::kAlignment * alloc::kAlignment; }

// The first offset >= off that is `colour` bytes into a page.
size_t at_colour(size_t off, size_t colour) { return off + (colour + kPage - off % kPage) % kPage; }

// A colour for each large temporary, in the given order: the least used
// among those already given to its neighbours (temporaries read or written
// by a call that touches it), ties to the next colour in turn.
std::unordered_map<const Buffer*, size_t> colours(const std::vector<Buffer*>& temps, const std::vector<Call>& calls) {
  std::unordered_map<const Storage*, const Buffer*> large;
  for (const Buffer* b : temps)
    if (b->bytes >= kColourMinBytes) large.emplace(b->storage.get(), b);
  std::unordered_map<const Buffer*, std::vector<const Buffer*>> neighbours;
  std::vector<const Buffer*> touched;
  for (const Call& c : calls) {
    touched.clear();
    for (const std::vector<Tensor>* v : {&c.in, &c.out})
      for (const Tensor& t : *v)
        if (t.defined())
          if (auto it = large.find(t.impl()->storage.get()); it != large.end()) touched.push_back(it->second);
    for (const Buffer* a : touched)
      for (const Buffer* b : touched)
        if (a != b) neighbours[a].push_back(b);
  }
  std::unordered_map<const Buffer*, size_t> colour;
  size_t turn = 0;
  for (const Buffer* b : temps) {
    if (!large.count(b->storage.get())) continue;
    std::array<int, kColours> used{};
    for (const Buffer* n : neighbours[b])
      if (auto it = colour.find(n); it != colour.end()) used[it->second / kColourStep]++;
    size_t best = turn % kColours;
    for (size_t k = 0; k < kColours; ++k) {
      const size_t c = (turn + k) % kColours;
      if (used[c] < used[best]) best = c;
    }
    colour[b] = best * kColourStep;
    ++turn;
  }
  return colour;
}

}  // namespace

// Greedily by size: largest first, each at the lowest offset (at its colour)
// free during its whole live range [first, last].
size_t plan_offsets(std::vector<Buffer*>& temps, const std::vector<Call>& calls) {
  std::sort(temps.begin(), temps.end(), [](const Buffer* a, const Buffer* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->first < b->first;
  });
  const std::unordered_map<const Buffer*, size_t> colour = colours(temps, calls);
  std::vector<const Buffer*> placed;
  size_t total = 0;
  std::vector<std::pair<size_t, size_t>> busy;
  for (Buffer* b : temps) {
    const auto c = colour.find(b);
    const auto start = [&](size_t off) { return c == colour.end() ? off : at_colour(off, c->second); };
    busy.clear();
    for (const Buffer* p : placed)
      if (p->first <= b->last && b->first <= p->last)
        busy.emplace_back(static_cast<size_t>(p->offset), static_cast<size_t>(p->offset) + round_up(p->bytes));
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& [lo, hi] : busy) {
      if (start(off) + round_up(b->bytes) <= lo) break;
      off = std::max(off, hi);
    }
    off = start(off);
    b->offset = static_cast<int64_t>(off);
    total = std::max(total, off + round_up(b->bytes));
    placed.push_back(b);
  }
  return total;
}

size_t live_peak(const std::vector<Buffer*>& temps, size_t calls) {
  std::vector<int64_t> delta(calls + 1, 0);  // bytes becoming live at call i (negative: freed after i - 1)
  for (const Buffer* b : temps) {
    delta[static_cast<size_t>(b->first)] += static_cast<int64_t>(round_up(b->bytes));
    delta[static_cast<size_t>(b->last) + 1] -= static_cast<int64_t>(round_up(b->bytes));
  }
  int64_t live = 0, peak = 0;
  for (int64_t x : delta) peak = std::max(peak, live += x);
  return static_cast<size_t>(peak);
}

}  // namespace mmrec::autograd::detail
