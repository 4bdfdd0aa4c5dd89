// Bandwidth of the row ops (rmsnorm, softmax, gelu, sigmoid_mul) and the axis
// mean on 32 MiB tensors ([16384, 512] f32) against the machine's triad in
// the same run, and their 1- vs 2-thread scaling next to the triad's.
//
// gbps counts the bytes an op must read plus write (e.g. gelu: 2 x 32 MiB).
// ref_gbps is bench::triad_gbps(32 MiB), which counts 3 arrays (STREAM
// convention: the read-for-ownership of the written array is not counted).
// Ops whose large outputs use non-temporal stores skip that hidden read, so
// a ratio near or above 1 is possible.
#include <functional>

#include "bench/bench.h"
#include "ops/activation.h"
#include "ops/kernels/activation.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;

namespace {
struct Case {
  const char* name;
  double bytes;  // read + written
  std::function<void()> run;
};
}  // namespace

// The strided_operand pass's trade (ops/strided_operand.cpp): σ(x) ⊙ z and
// its backward with z a column slice of a [8192, 2048] projection (qkvz),
// read in place (`fwd_us`, `bwd_us`) against copied out once and read
// contiguous (`copy_us` + `fwd_contig_us`, `bwd_contig_us`).
BENCH_SUITE(elementwise_strided) {
  const std::string name = "sigmoid_mul_rows_8192x512";
  if (!ctx.wants(name)) return;
  const int64_t rows = 8192, d = 512, ld = 4 * d;
  Generator g(8);
  const Tensor wide = rand_uniform({rows, ld}, g), x = rand_uniform({rows, d}, g, -3.0f, 3.0f);
  const Tensor go = rand_uniform({rows, d}, g);
  Tensor z = Tensor::empty({rows, d}), out = Tensor::empty({rows, d}), dx = Tensor::empty({rows, d}),
         dz = Tensor::empty({rows, d});
  const float* zs = wide.data<float>() + 3 * d;  // the last column block, as z of qkvz
  const Tensor slice = wide.as_strided({rows, d}, {ld, 1}, 3 * d);
  // The backward reads z long after the forward: 128 MiB read between them
  // leaves none of it in cache, as in a training step.
  const Tensor flush = rand_uniform({32 << 20}, g);
  const std::vector<double> t = bench::median_seconds_interleaved(
      {[&] { kernels::sigmoid_mul_rows_f32(x.data<float>(), zs, ld, out.data<float>(), rows, d); },
       [&] { z.copy_from(slice); },
       [&] { kernels::sigmoid_mul_f32(x.data<float>(), z.data<float>(), out.data<float>(), rows * d); },
       [&] { ops::sum(flush); },
       [&] {
         kernels::sigmoid_mul_bwd_rows_f32(x.data<float>(), zs, ld, go.data<float>(), dx.data<float>(),
                                           dz.data<float>(), rows, d);
       },
       [&] { ops::sum(flush); },
       [&] {
         kernels::sigmoid_mul_bwd_f32(x.data<float>(), z.data<float>(), go.data<float>(), dx.data<float>(),
                                      dz.data<float>(), rows * d);
       }},
      ctx.reps());
  ctx.report(name, {{"fwd_us", t[0] * 1e6}, {"copy_us", t[1] * 1e6}, {"fwd_contig_us", t[2] * 1e6},
                    {"bwd_us", t[4] * 1e6}, {"bwd_contig_us", t[6] * 1e6},
                    {"ratio", (t[1] + t[2] + t[6]) / (t[0] + t[4])}});
}

BENCH_SUITE(elementwise) {
  const int64_t rows = 16384, d = 512;
  const double mib32 = static_cast<double>(rows * d * sizeof(float));
  Generator g(7);
  Tensor x = rand_uniform({rows, d}, g, -3.0f, 3.0f), y = rand_uniform({rows, d}, g), w = rand_uniform({d}, g);
  const std::vector<Case> cases = {
      {"rmsnorm_16384x512", 2 * mib32, [&] { ops::rmsnorm(x, w); }},
      {"softmax_16384x512", 2 * mib32, [&] { ops::softmax(x); }},
      {"gelu_16384x512", 2 * mib32, [&] { ops::gelu(x); }},
      {"sigmoid_mul_16384x512", 3 * mib32, [&] { ops::sigmoid_mul(x, y); }},
      {"mean_axis0_16384x512", mib32, [&] { ops::mean(x, 0); }},
  };
  bool any = false;
  for (const Case& c : cases) any = any || ctx.wants(c.name);
  if (!any) return;
  const int reps = ctx.reps();
  const int threads = num_threads();
  const double ref_gbps = bench::triad_gbps(32 << 20, reps);
  // The triad's own 2- vs 1-thread ratio: the ceiling for a bandwidth-bound
  // op's speedup_2t on this machine at this moment (a busy neighbour on the
  // memory bus lowers it).
  set_num_threads(1);
  const double ref_gbps_1t = bench::triad_gbps(32 << 20, reps);
  set_num_threads(2);
  const double ref_gbps_2t = bench::triad_gbps(32 << 20, reps);
  set_num_threads(threads);
  for (const Case& c : cases) {
    if (!ctx.wants(c.name)) continue;
    const double t = bench::median_seconds(c.run, reps);
    set_num_threads(1);
    const double t1 = bench::median_seconds(c.run, reps);
    set_num_threads(2);
    const double t2 = bench::median_seconds(c.run, reps);
    set_num_threads(threads);
    const double gbps = c.bytes / t / 1e9;
    ctx.report(c.name, {{"gbps", gbps},
                        {"ref_gbps", ref_gbps},
                        {"ratio", gbps / ref_gbps},
                        {"ms", t * 1e3},
                        {"gbps_1t", c.bytes / t1 / 1e9},
                        {"speedup_2t", t1 / t2},
                        {"ref_speedup_2t", ref_gbps_2t / ref_gbps_1t}});
  }
}
