// The associative scan against the machine's bandwidth (triad over a
// comparable footprint, measured in the same run), forward + backward
// against forward, and the chunked algorithm's thread scaling on a long,
// thin scan.
#include <initializer_list>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "ops/scan.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;
using ops::ScanMode;
using ops::ScanOptions;

namespace {
Tensor decays(const Shape& s, Generator& g) { return rand_uniform(s, g, 0.5f, 0.999f); }

bool wants_any(const bench::Context& ctx, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (ctx.wants(n)) return true;
  return false;
}

double scan_seconds(const Tensor& a, const Tensor& b, const Tensor& h0, const ScanOptions& o, int reps) {
  return bench::median_seconds([&] { ops::linear_scan(a, b, h0, o); }, reps);
}
}  // namespace

BENCH_SUITE(scan) {
  const int reps = ctx.reps();
  Generator g(1);
  if (wants_any(ctx, {"scan_fwd_8x1024x512", "scan_fwd_bwd_8x1024x512", "cumprod_scan_fwd_8x1024x512"})) {
    // Forward at [8, 1024, 512]: 16 MiB per array, 12 B per element (read a, b; write h).
    const int64_t B = 8, T = 1024, D = 512, n = B * T * D;
    Tensor a = decays({B, T, D}, g), b = randn({B, T, D}, g), h0 = randn({B, D}, g);
    const double triad = bench::triad_gbps(static_cast<size_t>(n) * 4, reps);
    const double t_fwd = scan_seconds(a, b, h0, {}, reps);
    const double gbps = 12.0 * n / t_fwd / 1e9;
    ctx.report("scan_fwd_8x1024x512", {{"gbps", gbps}, {"ref_gbps", triad}, {"ratio", gbps / triad},
                                       {"gelem_s", n / t_fwd / 1e9}, {"ms", t_fwd * 1e3}});
    // Forward + backward (da, db, dh0: 20 B/elem) of the op: its recorded
    // backward called directly, as when a and b come from other ops (the tape
    // adds a clone of the seed and of leaf gradients on top, reported apart).
    Tensor ag = a.clone().set_requires_grad(), bg = b.clone().set_requires_grad(), hg = h0.clone().set_requires_grad();
    Tensor dh = randn({B, T, D}, g), dhl = Tensor::zeros({B, D});
    const double t_fb = bench::median_seconds(
        [&] {
          auto [h, hl] = ops::linear_scan(ag, bg, hg);
          h.impl()->grad_fn->backward({dh, dhl});
        },
        reps);
    const double t_tape = bench::median_seconds(
        [&] {
          ag.zero_grad(), bg.zero_grad(), hg.zero_grad();
          autograd::backward(ops::linear_scan(ag, bg, hg).first, dh);
        },
        reps);
    ctx.report("scan_fwd_bwd_8x1024x512", {{"fwd_ms", t_fwd * 1e3}, {"fwd_bwd_ms", t_fb * 1e3},
                                           {"ratio", t_fb / t_fwd}, {"bwd_gbps", 20.0 * n / (t_fb - t_fwd) / 1e9},
                                           {"tape_fwd_bwd_ms", t_tape * 1e3}});
    const double t_cp = bench::median_seconds([&] { ops::cumprod_scan(a); }, reps);
    ctx.report("cumprod_scan_fwd_8x1024x512", {{"gbps", 8.0 * n / t_cp / 1e9}, {"ms", t_cp * 1e3}});
  }
  if (wants_any(ctx, {"scan_chunked_1x65536x64", "scan_chunked_vs_sequential_1x65536x64"})) {
    // A long, thin scan: B*D = 64 channels cannot feed two cores; time blocks can.
    const int64_t B = 1, T = 65536, D = 64, n = B * T * D;
    Tensor a = decays({B, T, D}, g), b = randn({B, T, D}, g), h0 = randn({B, D}, g);
    const ScanOptions chunked{ScanMode::chunked, 0}, sequential{ScanMode::sequential, 0};
    set_num_threads(1);
    const double t_c1 = scan_seconds(a, b, h0, chunked, reps);
    const double t_s1 = scan_seconds(a, b, h0, sequential, reps);
    set_num_threads(2);
    const double t_c2 = scan_seconds(a, b, h0, chunked, reps);
    const double t_s2 = scan_seconds(a, b, h0, sequential, reps);
    const double t_auto2 = scan_seconds(a, b, h0, {}, reps);
    set_num_threads(0);
    ctx.report("scan_chunked_1x65536x64", {{"ms_1t", t_c1 * 1e3}, {"ms_2t", t_c2 * 1e3}, {"speedup_2t", t_c1 / t_c2},
                                           {"gelem_s_2t", n / t_c2 / 1e9}});
    ctx.report("scan_chunked_vs_sequential_1x65536x64",
               {{"seq_ms_1t", t_s1 * 1e3}, {"seq_ms_2t", t_s2 * 1e3}, {"chunked_ms_2t", t_c2 * 1e3},
                {"ratio", t_s2 / t_c2}, {"auto_ms_2t", t_auto2 * 1e3}});
  }
}
