// Scan kernels behind ops::linear_scan and ops::cumprod_scan (Highway over
// channels, oneTBB tasks) and their sequential double-precision references.
// All buffers are contiguous f32: sequences [B, T, D], states [B, D].
//
//   const auto plan = kernels::plan_scan(opt, {B, T, D});
//   kernels::linear_scan_f32(a, b, h0, h, h_last, {B, T, D}, plan);
//
// Two algorithms share every kernel:
// - sequential: t-outer / D-inner over the whole sequence, one task per
//   (batch, channel block); bandwidth-optimal (12 B/elem forward) when B*D
//   alone gives every core a few tasks.
// - chunked: time is cut into blocks. Pass 1 reduces a block to its
//   aggregate with zero carry-in (decay product Π a and end state for
//   linear_scan, Σ log a for cumprod_scan); pass 2 chains the aggregates
//   into each block's true carry-in (one cheap step per block, in order);
//   pass 3 re-runs the block's scan from that carry-in. Re-running from the
//   right carry is the "add carry × cumulative decay to every element" fix-up
//   without ever storing a local scan or a cumulative decay, and inside a
//   block it is exactly the sequential kernel. The passes are fused per block
//   (see drive() in scan_drive.cpp): a worker reduces a block, waits for the
//   previous block's carry, publishes the next carry, then re-runs the block
//   while it is still in its L2, so a and b come from DRAM once. Backward
//   kernels run the same machinery in reverse time.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/scan.h"

namespace mmrec::kernels {

struct ScanShape {
  int64_t B = 0, T = 0, D = 0;
};

// How a scan is cut into tasks. Results depend only on `chunked` and
// `block` (never on `channels` or the thread count).
struct ScanPlan {
  bool chunked = false;
  int64_t block = 0;     // time steps per block (chunked)
  int64_t channels = 0;  // channels per task (a multiple of 16 or D)
  bool stream = false;   // non-temporal output stores for large scans, where aligned (the
                         // backward's only with several threads: measured slower on one)
};

// Picks the algorithm (ScanMode::automatic: chunked only with several threads,
// when (batch, channel block) tasks cannot occupy them all and T spans at least
// 4 blocks), the block length (opt.block, or by D: 256 KiB of a and b) and the
// channel split for the current thread count.
ScanPlan plan_scan(const ops::ScanOptions& opt, const ScanShape& s);

// Every scan below takes `scratch` of scan_scratch_bytes(s, p) bytes (the
// carries and per-worker rows of its driver; it depends on the plan and the
// thread count) or null, and then allocates it.
size_t scan_scratch_bytes(const ScanShape& s, const ScanPlan& p);

// h_t = a_t ⊙ h_{t-1} + b_t; h0 [B, D] or null (zeros); h [B, T, D];
// h_last [B, D] = h_{T-1} (h0 when T = 0).
void linear_scan_f32(const float* a, const float* b, const float* h0, float* h, float* h_last,
                     const ScanShape& s, const ScanPlan& p, void* scratch = nullptr);

// Decay products of long blocks underflow; below 1e-30 they are flushed to 0
// (the carry's contribution is then beneath float resolution; no denormals).
//
// Backward of linear_scan from dh [B, T, D] and dh_last [B, D]:
// g_t = dh_t + a_{t+1} g_{t+1} (g_{T-1} also gets dh_last), da_t = g_t h_{t-1},
// db_t = g_t, dh0 = a_0 g_0. h is the forward output; h0 may be null (zeros).
// da, db, dh0 may each be null (not wanted).
void linear_scan_bwd_f32(const float* a, const float* h, const float* h0, const float* dh, const float* dh_last,
                         float* da, float* db, float* dh0, const ScanShape& s, const ScanPlan& p,
                         void* scratch = nullptr);

// P_t = exp(Σ_{s≤t} clamp(log a_s, -50, 0)); a ≤ 0 counts as log a = -50.
// P below FLT_MIN is flushed to 0 (no denormals).
void cumprod_scan_f32(const float* a, float* P, const ScanShape& s, const ScanPlan& p, void* scratch = nullptr);

// da_s = (Σ_{t≥s} dP_t P_t) / a_s where -50 ≤ log a_s ≤ 0, else 0 (the clamp's
// gradient passes at its boundary, as in PyTorch).
void cumprod_scan_bwd_f32(const float* a, const float* P, const float* dP, float* da, const ScanShape& s,
                          const ScanPlan& p, void* scratch = nullptr);

namespace ref {
void linear_scan_f32(const float* a, const float* b, const float* h0, float* h, float* h_last, const ScanShape& s);
void linear_scan_bwd_f32(const float* a, const float* h, const float* h0, const float* dh, const float* dh_last,
                         float* da, float* db, float* dh0, const ScanShape& s);
void cumprod_scan_f32(const float* a, float* P, const ScanShape& s);
void cumprod_scan_bwd_f32(const float* a, const float* P, const float* dP, float* da, const ScanShape& s);
}  // namespace ref

}  // namespace mmrec::kernels
