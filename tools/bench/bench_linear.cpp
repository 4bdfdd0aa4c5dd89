// ops::linear against a bare oneDNN matmul of the same shape (f32, bf16),
// forward+backward, thread scaling, the token GEMM (cache, packed weights),
// the small-GEMM thread policy, the gelu and db strategies, and whether idle
// OpenMP threads slow down the oneTBB loop that follows a GEMM.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <tuple>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/linear.h"
#include "ops/linear.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;
using ops::Activation;

namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// y[M, N] = x[M, K] · w[N, K]ᵀ + b on a primitive created once, outside the
// library. `packed` lets oneDNN choose the weight layout (format_tag::any)
// and reorders w into it once.
struct BareLinear {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream s{eng};
  dnnl::matmul prim;
  dnnl::memory xm, wm, bm, ym;
  BareLinear(int64_t M, int64_t K, int64_t N, dt type, const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y,
             bool packed = false) {
    dnnl::memory::desc xd({M, K}, type, tag::ab), wd({K, N}, type, tag::ba), bd({1, N}, dt::f32, tag::ab),
        yd({M, N}, dt::f32, tag::ab);
    dnnl::memory::desc want = packed ? dnnl::memory::desc({K, N}, type, tag::any) : wd;
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(xd, want, bd, yd), eng);
    prim = dnnl::matmul(pd);
    xm = dnnl::memory(xd, eng, x.raw_data());
    bm = dnnl::memory(bd, eng, b.raw_data());
    ym = dnnl::memory(yd, eng, y.raw_data());
    dnnl::memory user_w(wd, eng, w.raw_data());
    if (packed) {
      wm = dnnl::memory(pd.weights_desc(), eng);
      dnnl::reorder(user_w, wm).execute(s, user_w, wm);
      s.wait();
    } else {
      wm = user_w;
    }
  }
  void run() {
    prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}});
    s.wait();
  }
};

// oneDNN's eltwise forward and backward (gelu_tanh, or logistic on its
// output) over n floats, on primitives created once outside the library.
struct BareEltwise {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream s{eng};
  dnnl::eltwise_forward fwd;
  dnnl::eltwise_backward bwd;
  dnnl::memory src, dst, saved, diff_dst, diff_src;
  bool gelu;
  BareEltwise(bool is_gelu, int64_t n, const Tensor& x, Tensor& y, const Tensor& sv, const Tensor& gy, Tensor& dx)
      : gelu(is_gelu) {
    const dnnl::memory::desc md({n}, dt::f32, tag::a);
    const auto alg = gelu ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_logistic_use_dst_for_bwd;
    dnnl::eltwise_forward::primitive_desc fpd(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, md, 0.0f, 0.0f), eng);
    fwd = dnnl::eltwise_forward(fpd);
    bwd = dnnl::eltwise_backward(
        dnnl::eltwise_backward::primitive_desc(dnnl::eltwise_backward::desc(alg, md, md, 0.0f, 0.0f), eng, fpd));
    src = dnnl::memory(md, eng, x.raw_data()), dst = dnnl::memory(md, eng, y.raw_data());
    saved = dnnl::memory(md, eng, sv.raw_data()), diff_dst = dnnl::memory(md, eng, gy.raw_data());
    diff_src = dnnl::memory(md, eng, dx.raw_data());
  }
  void forward() {
    fwd.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    s.wait();
  }
  void backward() {
    bwd.execute(s, {{gelu ? DNNL_ARG_SRC : DNNL_ARG_DST, saved}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_SRC, diff_src}});
    s.wait();
  }
};

double gflops(double flop, double sec) { return flop / sec / 1e9; }
}  // namespace

BENCH_SUITE(linear) {
  const int64_t M = 8192, K = 512, N = 2048;
  const double flop = 2.0 * M * K * N;
  Generator g(1);
  Tensor x = rand_uniform({M, K}, g, -1, 1), w = rand_uniform({N, K}, g, -0.05f, 0.05f), b = rand_uniform({N}, g);
  Tensor y = Tensor::empty({M, N});
  const int reps = ctx.reps();

  for (DType t : {DType::f32, DType::bf16}) {
    const std::string tn = t == DType::f32 ? "f32" : "bf16";
    const std::string name = "linear_" + tn + "_8192x512x2048";
    if (!ctx.wants(name)) continue;
    Tensor xt = x.to(t), wt = w.to(t);
    const double t_ops = bench::median_seconds([&] { ops::linear(xt, wt, b); }, reps);
    BareLinear bare(M, K, N, t == DType::f32 ? dt::f32 : dt::bf16, xt, wt, b, y);
    const double t_bare = bench::median_seconds([&] { bare.run(); }, reps);
    ctx.report(name, {{"gflops", gflops(flop, t_ops)}, {"ref_gflops", gflops(flop, t_bare)}, {"ratio", t_bare / t_ops}});
  }

  // Forward + backward (dX, dW, db): 6 M K N flop; and each backward GEMM alone.
  for (DType t : {DType::f32, DType::bf16}) {
    const std::string tn = t == DType::f32 ? "f32" : "bf16";
    const std::string name = "linear_fwd_bwd_" + tn + "_8192x512x2048";
    if (!ctx.wants(name)) continue;
    Tensor xp = x.clone().set_requires_grad(), wp = w.clone().set_requires_grad(), bp = b.clone().set_requires_grad();
    Tensor seed = rand_uniform({M, N}, g, -1, 1);
    const double t_fb = bench::median_seconds([&] {
      Tensor yy = t == DType::f32 ? ops::linear(xp, wp, bp) : ops::linear(ops::cast(xp, t), ops::cast(wp, t), bp);
      autograd::backward(yy, seed);
      xp.zero_grad(), wp.zero_grad(), bp.zero_grad();
    }, reps);
    Tensor dyt = seed.to(t), xt = x.to(t), wt = w.to(t), dx = Tensor::empty({M, K}), dw = Tensor::empty({N, K});
    const double t_dx = bench::median_seconds([&] { kernels::gemm(dyt, wt, dx); }, reps);
    const double t_dw = bench::median_seconds([&] { kernels::gemm(dyt.transpose(0, 1), xt, dw); }, reps);
    ctx.report(name, {{"gflops", gflops(3 * flop, t_fb)}, {"ms", t_fb * 1e3}, {"dx_gflops", gflops(flop, t_dx)},
                      {"dw_gflops", gflops(flop, t_dw)}});
  }

  if (ctx.wants("linear_db_8192x2048")) {
    Tensor dy = rand_uniform({M, N}, g), db = Tensor::empty({N});
    std::vector<char> scratch(kernels::col_sum_scratch_bytes(M, N));
    auto time = [&](kernels::ColSum method) {
      return bench::median_seconds([&] { kernels::col_sum(dy, db, scratch.data(), method); }, reps);
    };
    const double t = time(kernels::ColSum::sum_axis), t_mm = time(kernels::ColSum::matmul),
                 t_red = time(kernels::ColSum::reduction), tri = bench::triad_gbps(32 << 20, reps);
    const double bytes = 4.0 * M * N;
    ctx.report("linear_db_8192x2048", {{"us", t * 1e6}, {"gbps", bytes / t / 1e9}, {"ref_gbps", tri},
                                       {"matmul_us", t_mm * 1e6}, {"matmul_gbps", bytes / t_mm / 1e9},
                                       {"reduction_us", t_red * 1e6}, {"ratio", t_mm / t}});
  }

  // The activation passes of a linear layer in training (gelu forward after
  // the GEMM, gelu and sigmoid backward before dX/dW, on the Highway kernels
  // of kernels/activation.h; sigmoid's forward on oneDNN) against bare oneDNN
  // eltwise primitives, the Highway forward, and the triad.
  if (ctx.wants_prefix("linear_act_")) {
    const double tri = bench::triad_gbps(32 << 20, reps), bytes = 4.0 * M * N;
    Tensor pre = rand_uniform({M, N}, g, -3, 3), sig = rand_uniform({M, N}, g, 0.01f, 0.99f);
    Tensor gy = rand_uniform({M, N}, g, -1, 1), out = Tensor::empty({M, N});
    for (Activation act : {Activation::gelu, Activation::sigmoid}) {
      const bool gelu = act == Activation::gelu;
      const Tensor& saved = gelu ? pre : sig;
      const std::string name = std::string("linear_act_") + (gelu ? "gelu" : "sigmoid") + "_8192x2048";
      if (!ctx.wants(name)) continue;
      BareEltwise bare(gelu, M * N, pre, out, saved, gy, out);
      const double fk = bench::median_seconds([&] { kernels::act_forward(act, pre, out); }, reps);
      const double fd = bench::median_seconds([&] { bare.forward(); }, reps);
      const double fh = bench::median_seconds([&] {  // the Highway forward: act_forward's for gelu, the alternative for sigmoid
        kernels::activation_f32(gelu ? kernels::Activation::gelu : kernels::Activation::sigmoid, pre.data<float>(),
                                out.data<float>(), M * N);
      }, reps);
      const double bk = bench::median_seconds([&] { kernels::act_backward(act, gy, saved, out); }, reps);
      const double bd = bench::median_seconds([&] { bare.backward(); }, reps);
      nlohmann::json fig{{"fwd_gbps", 2 * bytes / fk / 1e9}, {"bwd_gbps", 3 * bytes / bk / 1e9},
                         {"fwd_dnnl_gbps", 2 * bytes / fd / 1e9}, {"bwd_dnnl_gbps", 3 * bytes / bd / 1e9},
                         {"fwd_hwy_gbps", 2 * bytes / fh / 1e9},
                         {"ref_gbps", tri}, {"fwd_ratio", fd / fk}, {"bwd_ratio", bd / bk}};
      if (gelu) {  // pre-activations of a trained layer's outliers, down to where σ(2u) is subnormal
        const Tensor wide = rand_uniform({M, N}, g, -30, 30);
        const double bw = bench::median_seconds([&] { kernels::act_backward(act, gy, wide, out); }, reps);
        fig["bwd_wide_gbps"] = 3 * bytes / bw / 1e9;
      }
      ctx.report(name, fig);
    }
  }

  // The bias_grad pass's fused call (activation backward and the bias
  // column sums in one pass) against the two calls it replaces; bytes: dy
  // and saved read, dx written once.
  for (Activation act : {Activation::gelu, Activation::sigmoid})
  for (int64_t n : {int64_t{128}, int64_t{512}, int64_t{2048}}) {  // the model's MDI, gate and FFN widths
    const std::string name = std::string("linear_bwd_db_") + (act == Activation::gelu ? "gelu" : "sigmoid") + "_8192x" +
                             std::to_string(n);
    if (!ctx.wants(name)) continue;
    const Tensor saved =
        act == Activation::gelu ? rand_uniform({M, n}, g, -3, 3) : rand_uniform({M, n}, g, 0.01f, 0.99f);
    const Tensor gy = rand_uniform({M, n}, g, -1, 1);
    Tensor dx = Tensor::empty({M, n}), db = Tensor::empty({n});
    std::vector<char> scratch(kernels::col_sum_scratch_bytes(M, n));
    const std::vector<double> t = bench::median_seconds_interleaved(
        {[&] { kernels::act_backward_col_sum(act, gy, saved, dx, db, scratch.data()); },
         [&] {
           kernels::act_backward(act, gy, saved, dx);
           kernels::col_sum(dx, db, scratch.data());
         }},
        reps);
    const double bytes = 3.0 * 4.0 * M * n;
    ctx.report(name, {{"us", t[0] * 1e6}, {"gbps", bytes / t[0] / 1e9}, {"chain_us", t[1] * 1e6},
                      {"ratio", t[1] / t[0]}});
  }

  // The remat_backward pass's fused call (the rematerialized gelu made with
  // its backward and the bias sums, one exp per element) against the two
  // calls it replaces; bytes: u and dy read, a and dx written once.
  for (int64_t n : {int64_t{128}, int64_t{2048}}) {  // the model's MDI and FFN widths
    const std::string name = "linear_remat_bwd_db_gelu_8192x" + std::to_string(n);
    if (!ctx.wants(name)) continue;
    const Tensor u = rand_uniform({M, n}, g, -3, 3), gy = rand_uniform({M, n}, g, -1, 1);
    Tensor a = Tensor::empty({M, n}), dx = Tensor::empty({M, n}), db = Tensor::empty({n});
    std::vector<char> scratch(kernels::col_sum_scratch_bytes(M, n));
    const std::vector<double> t = bench::median_seconds_interleaved(
        {[&] { kernels::gelu_remat_backward_col_sum(gy, u, a, dx, db, scratch.data()); },
         [&] {
           kernels::act_forward(Activation::gelu, u, a);
           kernels::act_backward_col_sum(Activation::gelu, gy, u, dx, db, scratch.data());
         }},
        reps);
    const double bytes = 4.0 * 4.0 * M * n;
    ctx.report(name, {{"us", t[0] * 1e6}, {"gbps", bytes / t[0] / 1e9}, {"chain_us", t[1] * 1e6},
                      {"ratio", t[1] / t[0]}});
  }

  // gelu with a backward to come: GEMM + separate gelu pass (saves the
  // pre-activation) against the fused post-op (would re-run the GEMM in the backward).
  if (ctx.wants("linear_gelu_strategy")) {
    Tensor pre = Tensor::empty({M, N});
    const double t_fused = bench::median_seconds([&] { kernels::linear_fwd(x, w, b, Activation::gelu, y); }, reps);
    const double t_split = bench::median_seconds([&] {
      kernels::linear_fwd(x, w, b, Activation::none, pre);
      kernels::act_forward(Activation::gelu, pre, y);
    }, reps);
    const double t_gemm = bench::median_seconds([&] { kernels::linear_fwd(x, w, b, Activation::none, pre); }, reps);
    ctx.report("linear_gelu_strategy", {{"fused_ms", t_fused * 1e3}, {"split_ms", t_split * 1e3},
                                        {"recompute_gemm_ms", t_gemm * 1e3},
                                        {"split_extra_pct", 100 * (t_split - t_fused) / t_fused}});
  }

  if (ctx.wants("linear_threads_f32_8192x512x2048")) {
    set_num_threads(1);
    const double t1 = bench::median_seconds([&] { ops::linear(x, w, b); }, reps);
    set_num_threads(2);
    const double t2 = bench::median_seconds([&] { ops::linear(x, w, b); }, reps);
    set_num_threads(0);
    ctx.report("linear_threads_f32_8192x512x2048", {{"gflops_1t", gflops(flop, t1)}, {"gflops_2t", gflops(flop, t2)},
                                                    {"speedup", t1 / t2}});
  }

  // Token-by-token GEMM 8x512x512 on 1 thread: through the cache, creating
  // the primitive every call, and bare primitives with plain / packed weights.
  if (ctx.wants("linear_token_8x512x512_1t")) {
    set_num_threads(1);
    const int64_t m = 8, k = 512, n = 512;
    Tensor xs = rand_uniform({m, k}, g), ws = rand_uniform({n, k}, g), bs = rand_uniform({n}, g), ys = Tensor::empty({m, n});
    const int r = std::max(reps, 1) * 200;
    const double t_ops = bench::median_seconds([&] { ops::linear(xs, ws, bs); }, r);
    const double t_kernel = bench::median_seconds([&] { kernels::linear_fwd(xs, ws, bs, Activation::none, ys); }, r);
    // Creating the primitive every call; oneDNN's own primitive cache hides
    // most of that, so also with it off (what a cache miss really costs).
    const double t_create = bench::median_seconds([&] { BareLinear(m, k, n, dt::f32, xs, ws, bs, ys).run(); }, reps * 4);
    const int capacity = dnnl::get_primitive_cache_capacity();
    dnnl::set_primitive_cache_capacity(0);
    const double t_create0 = bench::median_seconds([&] { BareLinear(m, k, n, dt::f32, xs, ws, bs, ys).run(); }, reps * 4);
    dnnl::set_primitive_cache_capacity(capacity);
    BareLinear plain(m, k, n, dt::f32, xs, ws, bs, ys), packed(m, k, n, dt::f32, xs, ws, bs, ys, true);
    const double t_plain = bench::median_seconds([&] { plain.run(); }, r);
    const double t_packed = bench::median_seconds([&] { packed.run(); }, r);
    kernels::PackedLinear pl(ws, bs, Activation::none, m);
    const double t_pl = bench::median_seconds([&] { pl.forward(xs, ys); }, r);
    set_num_threads(0);
    ctx.report("linear_token_8x512x512_1t", {{"ops_us", t_ops * 1e6}, {"kernel_us", t_kernel * 1e6},
                                             {"uncached_us", t_create * 1e6}, {"uncached_no_dnnl_cache_us", t_create0 * 1e6},
                                             {"bare_plain_us", t_plain * 1e6},
                                             {"bare_packed_us", t_packed * 1e6}, {"packed_us", t_pl * 1e6}});
  }

  // Generation's matrix-vector products (one token: M = 1): the bench
  // config's 4 layers of weight shapes (60 MiB, more than the caches hold),
  // through PackedLinear as the model runs them, each once per pass, with
  // the threads knob at 1 and 2 (the large weights run as two column halves
  // on two tasks): the rate weights stream at, against the triad.
  if (ctx.wants("linear_vector_token_60MiB")) {
    const double tri = bench::triad_gbps(32 << 20, reps);
    struct Layer {
      Tensor x, y;
      kernels::PackedLinear p;
    };
    std::vector<Layer> layers;
    double bytes = 0;
    for (int l = 0; l < 4; ++l)
      for (auto [k, n] : {std::pair<int64_t, int64_t>{512, 2048}, {512, 512}, {512, 128}, {128, 512}, {512, 128},
                          {128, 512}, {512, 512}, {512, 2048}, {2048, 512}}) {
        Tensor w = rand_uniform({n, k}, g), b = rand_uniform({n}, g);
        layers.push_back({rand_uniform({1, k}, g), Tensor::empty({1, n}), kernels::PackedLinear(w, b, Activation::none, 1)});
        bytes += 4.0 * static_cast<double>(k * n);
      }
    auto pass = [&] {
      for (Layer& l : layers) l.p.forward(l.x, l.y);
    };
    double t[2];
    for (int k = 0; k < 2; ++k) {
      set_num_threads(k + 1);
      t[k] = bench::median_seconds(pass, std::max(reps, 1) * 10);
    }
    set_num_threads(0);
    ctx.report("linear_vector_token_60MiB", {{"gbps_1t", bytes / t[0] / 1e9}, {"gbps_2t", bytes / t[1] / 1e9},
                                             {"ref_gbps", tri}, {"ratio", bytes / t[1] / 1e9 / tri},
                                             {"speedup_2t", t[0] / t[1]}});
  }

  // Small GEMMs on 1 vs 2 OpenMP threads (bare primitives): the basis of
  // kernels::gemm_threads.
  if (ctx.wants_prefix("linear_small_threads_")) {
    for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{8, 512, 512}, {8, 512, 2048}, {64, 512, 2048},
                           {1000, 17, 3}, {256, 256, 256}, {64, 256, 1024}}) {
      Tensor xs = rand_uniform({m, k}, g), ws = rand_uniform({n, k}, g), bs = rand_uniform({n}, g), ys = Tensor::empty({m, n});
      const int r = std::max(reps, 1) * 20;
      double t[2];
      for (int th : {1, 2}) {
        omp_set_num_threads(th);
        BareLinear p(m, k, n, dt::f32, xs, ws, bs, ys);
        t[th - 1] = bench::median_seconds([&] { p.run(); }, r);
      }
      set_num_threads(0);
      ctx.report("linear_small_threads_" + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n),
                 {{"us_1t", t[0] * 1e6}, {"us_2t", t[1] * 1e6}, {"speedup", t[0] / t[1]},
                  {"policy_threads", kernels::gemm_threads(m, k, n)}});
    }
  }

  // A oneTBB loop right after a oneDNN GEMM vs alone: idle OpenMP threads
  // that spin (OMP_WAIT_POLICY unset/ACTIVE) take the core the loop needs.
  if (ctx.wants("linear_omp_spin")) {
    const int64_t m = 512, n = 1 << 20;
    Tensor xs = rand_uniform({m, K}, g), ws = rand_uniform({K, K}, g), ys = Tensor::empty({m, K});
    Tensor a = rand_uniform({n}, g), c = Tensor::empty({n});
    const float* pa = a.data<float>();
    float* pc = c.data<float>();
    auto loop = [&] {
      parallel_for(n, 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) pc[i] = pa[i] * 1.5f + 2.0f;
      });
    };
    std::vector<double> after, gemm_after_loop;
    const double alone = bench::median_seconds(loop, reps * 10);
    const double t_after = bench::median_seconds([&] {
      kernels::linear_fwd(xs, ws, Tensor(), Activation::none, ys);
      const auto t0 = std::chrono::steady_clock::now();
      loop();
      after.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }, reps * 10);
    const double t_gemm = bench::median_seconds([&] { kernels::linear_fwd(xs, ws, Tensor(), Activation::none, ys); }, reps * 10);
    const double t_gemm_after = bench::median_seconds([&] {
      loop();
      const auto t0 = std::chrono::steady_clock::now();
      kernels::linear_fwd(xs, ws, Tensor(), Activation::none, ys);
      gemm_after_loop.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }, reps * 10);
    (void)t_after, (void)t_gemm_after;
    std::sort(after.begin(), after.end());
    std::sort(gemm_after_loop.begin(), gemm_after_loop.end());
    const char* pol = std::getenv("OMP_WAIT_POLICY");
    const char* spin = std::getenv("GOMP_SPINCOUNT");
    ctx.report("linear_omp_spin", {{"wait_policy", pol ? pol : "unset"}, {"spincount", spin ? spin : "unset"},
                                   {"loop_alone_us", alone * 1e6},
                                   {"loop_after_gemm_us", after[after.size() / 2] * 1e6},
                                   {"gemm_alone_us", t_gemm * 1e6},
                                   {"gemm_after_loop_us", gemm_after_loop[gemm_after_loop.size() / 2] * 1e6}});
  }
}
