// The machine's bandwidth (triad) and ops::matmul against a bare oneDNN matmul.
#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bench.h"
#include "ops/matmul.h"
#include "tensor/random.h"

using namespace mmrec;

BENCH_SUITE(triad) {
  for (size_t mib : {32, 256}) {
    const std::string name = "triad_" + std::to_string(mib) + "MiB";
    if (ctx.wants(name)) ctx.report(name, {{"gbps", bench::triad_gbps(mib << 20, ctx.reps())}});
  }
}

BENCH_SUITE(matmul) {
  if (!ctx.wants("matmul_f32_8192x512x2048")) return;
  const int64_t M = 8192, K = 512, N = 2048;
  Generator g(1);
  Tensor a = rand_uniform({M, K}, g), b = rand_uniform({K, N}, g);
  const double flop = 2.0 * M * K * N;
  const double t_ops = bench::median_seconds([&] { ops::matmul(a, b); }, ctx.reps());
  // The same product on a bare oneDNN primitive, created once.
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::memory::desc amd({M, K}, dt::f32, tag::ab), bmd({K, N}, dt::f32, tag::ab), cmd({M, N}, dt::f32, tag::ab);
  dnnl::matmul prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(amd, bmd, cmd), eng));
  Tensor c = Tensor::empty({M, N});
  dnnl::memory am(amd, eng, a.raw_data()), bm(bmd, eng, b.raw_data()), cm(cmd, eng, c.raw_data());
  const double t_bare = bench::median_seconds(
      [&] {
        prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
        s.wait();
      },
      ctx.reps());
  ctx.report("matmul_f32_8192x512x2048", {{"gflops", flop / t_ops / 1e9},
                                          {"ref_gflops", flop / t_bare / 1e9},
                                          {"ratio", t_bare / t_ops}});
}
