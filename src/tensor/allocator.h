// The 64-byte aligned caching allocator behind every tensor. Freed blocks are
// kept per size and reused; counters report bytes in use and the peak.
// Thread-safe: two models may allocate from two threads of one process.
#pragma once
#include <cstddef>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec::alloc {

constexpr size_t kAlignment = 64;

// Returns 64-byte aligned memory of at least `bytes` (nullptr for 0 bytes).
void* allocate(size_t bytes);
// Gives back a block from allocate() with the same `bytes`.
void release(void* ptr, size_t bytes);

struct Stats {
  size_t current_bytes = 0;  // handed out and not yet released
  size_t peak_bytes = 0;     // max of current_bytes since start or reset_peak()
  size_t cached_bytes = 0;   // released blocks kept for reuse
  size_t allocations = 0;    // calls to allocate() with bytes > 0
  size_t cache_hits = 0;     // of which were served from the cache
};

Stats stats();
void reset_peak();
// Returns every cached block to the system.
void empty_cache();

}  // namespace mmrec::alloc

MMREC_API_END
