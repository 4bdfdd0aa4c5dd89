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
