#include "tensor/allocator.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace mmrec::alloc {
namespace {

struct Pool {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by rounded size
  Stats stats;
};

Pool& pool() {
  // Leaked on purpose: tensors in static objects of a host app may be freed
  // after this translation unit's statics are destroyed.
  static Pool* p = new Pool;
  return *p;
}

size_t round_up(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// Large blocks start at one of 16 offsets, 256 bytes apart, in a 4 KiB page,
// in turn: streams whose addresses agree in their low 12 bits alias in the
// core's store-to-load checks (autograd/plan.cpp, which colours a compiled
// graph's arena by the calls; this is eager's round-robin stand-in).
constexpr size_t kPage = 4096, kColourStep = 256, kColourMinBytes = 64 << 10;

void* system_alloc(size_t size) {
  if (size < kColourMinBytes) return std::aligned_alloc(kAlignment, size);
  static std::atomic<size_t> turn{0};
  // aligned_alloc wants a multiple of the alignment (ASan's returns null otherwise).
  char* base = static_cast<char*>(std::aligned_alloc(kPage, (size + kPage - 1) / kPage * kPage + kPage));
  return base ? base + (turn++ % (kPage / kColourStep)) * kColourStep : nullptr;
}

void system_free(void* ptr, size_t size) {
  if (size < kColourMinBytes) return std::free(ptr);
  std::free(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(ptr) / kPage * kPage));
}

}  // namespace

void* allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_up(bytes);
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    p.stats.allocations++;
    auto it = p.free_blocks.find(size);
    if (it != p.free_blocks.end() && !it->second.empty()) {
      void* ptr = it->second.back();
      it->second.pop_back();
      p.stats.cache_hits++;
      p.stats.cached_bytes -= size;
      p.stats.current_bytes += size;
      if (p.stats.current_bytes > p.stats.peak_bytes) p.stats.peak_bytes = p.stats.current_bytes;
      return ptr;
    }
  }
  void* ptr = system_alloc(size);
  if (!ptr) {
    empty_cache();
    ptr = system_alloc(size);
    if (!ptr) throw std::bad_alloc();
  }
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.current_bytes += size;
  if (p.stats.current_bytes > p.stats.peak_bytes) p.stats.peak_bytes = p.stats.current_bytes;
  return ptr;
}

void release(void* ptr, size_t bytes) {
  if (!ptr) return;
  const size_t size = round_up(bytes);
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.current_bytes -= size;
  p.stats.cached_bytes += size;
  p.free_blocks[size].push_back(ptr);
}

Stats stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void reset_peak() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.peak_bytes = p.stats.current_bytes;
}

void empty_cache() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (auto& [size, blocks] : p.free_blocks)
    for (void* b : blocks) system_free(b, size);
  p.free_blocks.clear();
  p.stats.cached_bytes = 0;
}

}  // namespace mmrec::alloc
