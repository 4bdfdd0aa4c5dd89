// The scans' planner and three-pass chunked driver (ops/kernels/scan.h),
// over the Highway tile kernels of scan_hwy.cpp.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <thread>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include "ops/kernels/scan.h"
#include "ops/kernels/scan_tiles.h"
#include "tensor/threads.h"

namespace mmrec::kernels {

namespace {
constexpr int64_t kSeqMinChannels = 128;    // sequential: narrowest channel split (512 B rows)
constexpr int64_t kTileBytes = 256 << 10;   // chunked: a+b bytes of one block (default block)
// The L3 one core sees (one Zen CCD; sysconf reports the whole socket's on these VMs).
constexpr int64_t kL3Bytes = int64_t{32} << 20;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A tile: batch bi, channels [c0, c0 + nc), time rows [t0, t0 + nt).
struct Tile {
  int64_t bi, c0, nc, t0, nt;
  int64_t offset(int64_t T, int64_t D) const { return (bi * T + t0) * D + c0; }
};

// Runs worker(i) for i in [0, num_threads()), one per thread of the pool (or
// inline on one thread).
template <class F>
void on_all_threads(const F& worker) {
  const int n = num_threads();
  if (n == 1) return worker(0);
  tbb::parallel_for(
      tbb::blocked_range<int>(0, n, 1), [&](const tbb::blocked_range<int>& r) { worker(r.begin()); },
      tbb::static_partitioner());
}

// The driver's scratch, carved from one block (the call's declared scratch):
// the groups' carries, the blocks' carries and ready flags, each worker's
// three rows, and a row of zeros.
struct ScanScratch {
  float *state = nullptr, *carry = nullptr, *rows = nullptr, *zeros = nullptr;
  std::atomic<bool>* ready = nullptr;
  size_t bytes = 0;
};
ScanScratch carve(const ScanShape& s, const ScanPlan& p, void* base) {
  const int64_t C = std::max<int64_t>(p.channels, 1), G = std::max<int64_t>(s.B, 0) * ceil_div(std::max<int64_t>(s.D, 0), C);
  const int64_t block = p.chunked ? std::max<int64_t>(1, p.block) : std::max<int64_t>(1, s.T);
  const int64_t nb = std::max<int64_t>(s.T, 0) == 0 ? 0 : ceil_div(s.T, block);
  const int64_t carries = nb > 1 ? G * nb : 0, threads = nb > 1 ? num_threads() : 0;
  const int64_t floats = G * C + carries * C + threads * 3 * C + C;
  ScanScratch r;
  r.bytes = static_cast<size_t>(floats) * sizeof(float) + static_cast<size_t>(carries) * sizeof(std::atomic<bool>);
  if (!base) return r;
  float* f = static_cast<float*>(base);
  r.state = f, r.carry = f + G * C, r.rows = r.carry + carries * C, r.zeros = r.rows + threads * 3 * C;
  r.ready = reinterpret_cast<std::atomic<bool>*>(r.zeros + C);
  for (int64_t i = 0; i < carries; ++i) new (&r.ready[i]) std::atomic<bool>(false);
  std::fill_n(r.zeros, C, 0.0f);
  return r;
}

// The call's scratch, or one the driver allocates when it was given none.
struct ScratchOr {
  std::vector<float> own;
  ScanScratch sc;
  ScratchOr(const ScanShape& s, const ScanPlan& p, void* scratch) {
    if (!scratch) own.resize(carve(s, p, nullptr).bytes / sizeof(float) + 1);
    sc = carve(s, p, scratch ? scratch : own.data());
  }
};

// The scan over groups (batch, channel block) x time blocks. Positions j count
// blocks in scan order (reverse: from the last block).
//   init(g, tile0, carry)   carry-in of the group's first block
//   agg(tile, x, y)         pass 1: the block's aggregate with zero carry-in
//   run(tile, state)        pass 3: the block from its carry-in; leaves its carry-out
//   finish(g, tile0, state) the last block's carry-out
// affine: carry' = x * carry + y (x: the block's decay product); else carry + y.
//
// With several blocks the three passes are fused per block, in block order
// across all threads: a worker takes the next block, reduces it (pass 1, which
// leaves it in the worker's L2), waits until the previous block has published
// its carry, publishes the next one (pass 2: one chain step), and re-runs the
// block from cache (pass 3). Workers only wait for a block taken earlier by a
// running worker, so the chain always progresses. Carries always chain
// through the aggregates: results depend on the block length only.
template <class Init, class Agg, class Run, class Finish>
void drive(const ScanShape& s, const ScanPlan& p, const ScanScratch& sc, bool reverse, bool affine, const Init& init,
           const Agg& agg, const Run& run, const Finish& finish) {
  const int64_t T = s.T, D = s.D, C = p.channels;
  if (s.B == 0 || D == 0) return;
  const int64_t ncb = ceil_div(D, C), G = s.B * ncb;
  const int64_t block = p.chunked ? std::max<int64_t>(1, p.block) : std::max<int64_t>(1, T);
  const int64_t nb = ceil_div(T, block);
  auto tile = [&](int64_t g, int64_t j) {
    const int64_t bi = g / ncb, c0 = (g % ncb) * C, k = std::max<int64_t>(0, reverse ? nb - 1 - j : j);
    const int64_t t0 = std::min(k * block, T);
    return Tile{bi, c0, std::min(C, D - c0), t0, std::min(block, T - t0)};
  };
  // state [G][C]: carry-in of the first block, then the final carry-out.
  float* const state = sc.state;
  for (int64_t g = 0; g < G; ++g) init(g, tile(g, 0), state + g * C);
  if (nb == 1) {  // one block per group (the sequential algorithm): pass 3 only
    parallel_for(G, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, T * C)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t g = lo; g < hi; ++g) run(tile(g, 0), state + g * C);
                 });
  } else if (nb > 1) {
    // carry[g][j]: carry-in of block j, valid once ready[g * nb + j] is set.
    float* const carry = sc.carry;
    std::atomic<bool>* const ready = sc.ready;
    for (int64_t g = 0; g < G; ++g) {
      std::memcpy(carry + g * nb * C, state + g * C, C * sizeof(float));
      ready[g * nb].store(true, std::memory_order_relaxed);
    }
    std::atomic<int64_t> next{0};
    on_all_threads([&](int w) {
      float* const x = sc.rows + w * 3 * C;
      float* const y = x + C;
      float* const st = y + C;
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < G * nb;) {
        const int64_t j = i / G, g = i % G;  // block-major: groups advance side by side
        const Tile t = tile(g, j);
        agg(t, x, y);
        for (int spins = 0; !ready[g * nb + j].load(std::memory_order_acquire);)
          if (++spins > 64) std::this_thread::yield();
        const float* cin = carry + (g * nb + j) * C;
        if (j + 1 < nb) {
          float* cout = carry + (g * nb + j + 1) * C;
          for (int64_t c = 0; c < t.nc; ++c)  // a zero carry stays out of inf * 0
            cout[c] = !affine ? cin[c] + y[c] : cin[c] == 0.0f ? y[c] : x[c] * cin[c] + y[c];
          ready[g * nb + j + 1].store(true, std::memory_order_release);
        }
        std::memcpy(st, cin, t.nc * sizeof(float));
        run(t, st);
        if (j + 1 == nb) std::memcpy(state + g * C, st, t.nc * sizeof(float));
      }
    });
  }
  for (int64_t g = 0; g < G; ++g) finish(g, tile(g, 0), state + g * C);
}

const float* row_or_null(const float* p, const Tile& t, int64_t D) { return p ? p + t.bi * D + t.c0 : nullptr; }

// The carry-in of a tile: the given row, or zeros when there is none.
void copy_or_zero(const float* src, const Tile& t, float* c) {
  if (src)
    std::memcpy(c, src, t.nc * sizeof(float));
  else
    std::fill(c, c + t.nc, 0.0f);
}

// Non-temporal stores need every output vector aligned: whole vectors per row
// (D and the channel split multiples of 16 floats) on 64-byte aligned buffers.
bool can_stream(const ScanShape& s, const ScanPlan& p, std::initializer_list<const float*> outs) {
  if (!p.stream || s.D % 16 != 0 || p.channels % 16 != 0) return false;
  for (const float* o : outs)
    if (o && reinterpret_cast<uintptr_t>(o) % 64 != 0) return false;
  return true;
}
}  // namespace

ScanPlan plan_scan(const ops::ScanOptions& opt, const ScanShape& s) {
  const int64_t B = std::max<int64_t>(1, s.B), T = s.T, D = std::max<int64_t>(1, s.D);
  const int threads = num_threads();
  // Sequential: split channels only as far as needed to give every thread
  // work, and never below kSeqMinChannels (narrow strided rows prefetch badly).
  ScanPlan sq;
  int64_t ncb = 1;
  if (threads > 1) {
    const int64_t max_ncb = std::max<int64_t>(1, D / kSeqMinChannels);
    for (ncb = 1; ncb < max_ncb; ++ncb)
      if (B * ncb >= 4 * threads || (B * ncb) % threads == 0) break;
  }
  sq.channels = ncb == 1 ? D : std::min(D, ceil_div(ceil_div(D, ncb), 16) * 16);
  const int64_t seq_tasks = B * ceil_div(D, sq.channels);
  // Chunked: whole rows per tile unless D is very wide; the block (the only
  // choice that changes results) depends on D alone.
  ScanPlan ch;
  ch.chunked = true;
  ch.channels = D <= 1024 ? D : 512;
  ch.block = opt.block > 0 ? opt.block : std::clamp<int64_t>(kTileBytes / (8 * ch.channels), 64, 8192);
  // Forward kernels stream their output past the cache when one [B, T, D]
  // array is a quarter of L3: the scan then moves more than L3, little of what
  // it wrote would still be cached for the next op, and streaming saves the
  // write-allocate reads (measured 1.9 -> 1.3 ms at [8, 1024, 512], 1 thread).
  ch.stream = sq.stream = 16 * B * std::max<int64_t>(T, 0) * D >= kL3Bytes;
  switch (opt.mode) {
    case ops::ScanMode::sequential: return sq;
    case ops::ScanMode::chunked: return ch;
    case ops::ScanMode::automatic: break;
  }
  // Chunked reads a and b twice, so it pays only when (batch, channel block)
  // tasks cannot occupy every thread and there are enough time blocks.
  const bool fills = seq_tasks >= threads;
  const bool long_enough = T >= 4 * ch.block;
  return threads > 1 && !fills && long_enough ? ch : sq;
}

size_t scan_scratch_bytes(const ScanShape& s, const ScanPlan& p) { return carve(s, p, nullptr).bytes; }

void linear_scan_f32(const float* a, const float* b, const float* h0, float* h, float* h_last, const ScanShape& s,
                     const ScanPlan& p, void* scratch) {
  const int64_t T = s.T, D = s.D;
  const bool stream = can_stream(s, p, {h});
  const ScratchOr sc(s, p, scratch);
  drive(
      s, p, sc.sc, false, true,
      [&](int64_t, const Tile& t, float* c) { copy_or_zero(row_or_null(h0, t, D), t, c); },
      [&](const Tile& t, float* x, float* y) {
        const int64_t o = t.offset(T, D);
        scan_tiles::lin_agg(a + o, b + o, D, t.nt, t.nc, x, y);
      },
      [&](const Tile& t, float* c) {
        const int64_t o = t.offset(T, D);
        scan_tiles::lin_fwd(a + o, b + o, h + o, D, t.nt, t.nc, c, stream);
      },
      [&](int64_t, const Tile& t, const float* c) {
        if (h_last) std::memcpy(h_last + t.bi * D + t.c0, c, t.nc * sizeof(float));
      });
}

void linear_scan_bwd_f32(const float* a, const float* h, const float* h0, const float* dh, const float* dh_last,
                         float* da, float* db, float* dh0, const ScanShape& s, const ScanPlan& p, void* scratch) {
  const int64_t T = s.T, D = s.D;
  const ScratchOr sc(s, p, scratch);
  const float* const zeros = sc.sc.zeros;
  // Streaming da and db pays off only when both cores stream (op forward +
  // backward at [8, 1024, 512], medians of 3 runs: 2 threads 3.8 -> 2.8 ms;
  // 1 thread, kernel alone: 2.4 -> 2.8 ms).
  const bool stream = num_threads() > 1 && can_stream(s, p, {da, db});
  drive(
      s, p, sc.sc, true, true,
      [&](int64_t, const Tile& t, float* c) { copy_or_zero(row_or_null(dh_last, t, D), t, c); },
      [&](const Tile& t, float* x, float* y) {
        const int64_t o = t.offset(T, D);
        scan_tiles::lin_bwd_agg(a + o, dh + o, D, t.nt, t.nc, x, y);
      },
      [&](const Tile& t, float* c) {
        const int64_t o = t.offset(T, D);
        const float* hprev0 = t.t0 > 0 ? h + o - D : h0 ? h0 + t.bi * D + t.c0 : zeros;
        scan_tiles::lin_bwd(a + o, h + o, hprev0, dh + o, da ? da + o : nullptr, db ? db + o : nullptr, D,
                                     t.nt, t.nc, c, stream);
      },
      [&](int64_t, const Tile& t, const float* c) {
        if (dh0) std::memcpy(dh0 + t.bi * D + t.c0, c, t.nc * sizeof(float));
      });
}

void cumprod_scan_f32(const float* a, float* P, const ScanShape& s, const ScanPlan& p, void* scratch) {
  const int64_t T = s.T, D = s.D;
  const bool stream = can_stream(s, p, {P});
  const ScratchOr sc(s, p, scratch);
  drive(
      s, p, sc.sc, false, false, [&](int64_t, const Tile& t, float* c) { std::fill(c, c + t.nc, 0.0f); },
      [&](const Tile& t, float*, float* y) {
        scan_tiles::cum_agg(a + t.offset(T, D), D, t.nt, t.nc, y);
      },
      [&](const Tile& t, float* c) {
        const int64_t o = t.offset(T, D);
        scan_tiles::cum_fwd(a + o, P + o, D, t.nt, t.nc, c, stream);
      },
      [](int64_t, const Tile&, const float*) {});
}

void cumprod_scan_bwd_f32(const float* a, const float* P, const float* dP, float* da, const ScanShape& s,
                          const ScanPlan& p, void* scratch) {
  const int64_t T = s.T, D = s.D;
  const ScratchOr sc(s, p, scratch);
  drive(
      s, p, sc.sc, true, false, [&](int64_t, const Tile& t, float* c) { std::fill(c, c + t.nc, 0.0f); },
      [&](const Tile& t, float*, float* y) {
        const int64_t o = t.offset(T, D);
        scan_tiles::cum_bwd_agg(P + o, dP + o, D, t.nt, t.nc, y);
      },
      [&](const Tile& t, float* c) {
        const int64_t o = t.offset(T, D);
        scan_tiles::cum_bwd(a + o, P + o, dP + o, da + o, D, t.nt, t.nc, c);
      },
      [](int64_t, const Tile&, const float*) {});
}

}  // namespace mmrec::kernels
