// Rows for the linear layers: the oneDNN forward (f32, bf16, fused gelu and
// sigmoid; also accumulating into a residual by the sum post-op, against the
// unfused chain), dX, dW (also fused into a gradient by the sum post-op,
// against the unfused chain), db, the activation backward and the f32 <-> bf16
// conversion against scalar references, and gradient checks of ops::linear
// and ops::qkvz.
#include <iterator>
#include <tuple>
#include <vector>

#include "autograd/gradcheck.h"
#include "kernelcheck/kernelcheck.h"
#include "ops/elementwise.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/kernels/linear.h"
#include "ops/linear.h"
#include "tensor/random.h"

using namespace mmrec;
using ops::Activation;

namespace {
// (M, K, N): rows, inputs, outputs. Odd sizes, 1, 1000 and empty, kept small
// enough for the scalar references.
const std::tuple<int64_t, int64_t, int64_t> kShapes[] = {
    {1, 1, 1}, {3, 17, 5}, {17, 33, 1000}, {1000, 17, 3}, {8, 512, 17}, {0, 5, 4}, {4, 0, 3},
    {1, 512, 2048}};  // a generated token through a 4 MiB weight: packed as two halves

const char* suffix(DType t) { return t == DType::bf16 ? "_bf16" : "_f32"; }

// Relative tolerance for a K-term dot product: f32 accumulation either way.
double tol_for(int64_t K) { return 1e-6 * (4 + K); }
}  // namespace

KERNELCHECK_SUITE(linear) {
  Generator g(21);
  for (auto [M, K, N] : kShapes) {
    const Shape shape{M, K, N};
    for (DType t : {DType::f32, DType::bf16}) {
      Tensor x = rand_uniform({M, K}, g, -1, 1).to(t), w = rand_uniform({N, K}, g, -1, 1).to(t);
      Tensor b = rand_uniform({N}, g, -1, 1), dy = rand_uniform({M, N}, g, -1, 1).to(t);
      for (Activation act : {Activation::none, Activation::gelu, Activation::sigmoid}) {
        const std::string name = std::string(act == Activation::none ? "linear" : act == Activation::gelu ? "linear_gelu" : "linear_sigmoid") + suffix(t);
        if (!ctx.wants(name)) continue;
        Tensor got = Tensor::empty({M, N}), want = Tensor::empty({M, N});
        const double tk = kc::time_us([&] { kernels::linear_fwd(x, w, b, act, got); });
        const double tr = kc::time_us([&] { kernels::ref::linear_fwd(x, w, b, act, want); }, 1);
        ctx.compare(name, shape, got, want, tol_for(K), tk, tr);
      }
      if (const std::string name = std::string("linear_packed") + suffix(t); ctx.wants(name) && M > 0) {
        kernels::PackedLinear p(w, b, Activation::gelu, M);
        Tensor got = Tensor::empty({M, N}), want = Tensor::empty({M, N});
        const double tk = kc::time_us([&] { p.forward(x, got); });
        const double tr = kc::time_us([&] { kernels::ref::linear_fwd(x, w, b, Activation::gelu, want); }, 1);
        ctx.compare(name, shape, got, want, tol_for(K), tk, tr);
      }
      // Packed for 1 row, run on M rows (batched streams): the same packed
      // copy where oneDNN keeps its layout, else the plain path.
      if (const std::string name = std::string("linear_packed_other_rows") + suffix(t); ctx.wants(name) && M > 0) {
        kernels::PackedLinear p(w, b, Activation::sigmoid, 1);
        Tensor got = Tensor::empty({M, N}), want = Tensor::empty({M, N});
        const double tk = kc::time_us([&] { p.forward(x, got); });
        const double tr = kc::time_us([&] { kernels::ref::linear_fwd(x, w, b, Activation::sigmoid, want); }, 1);
        ctx.compare(name, shape, got, want, tol_for(K), tk, tr);
      }
      // dX = dY W: [M, N] · [N, K]
      if (const std::string name = std::string("linear_dx") + suffix(t); ctx.wants(name)) {
        Tensor got = Tensor::empty({M, K}), want = Tensor::empty({M, K});
        const double tk = kc::time_us([&] { kernels::gemm(dy, w, got); });
        const double tr = kc::time_us([&] { kernels::ref::gemm(dy, w, want); }, 1);
        ctx.compare(name, shape, got, want, tol_for(N), tk, tr);
      }
      // dW = dYᵀ X: [N, M] · [M, K], dYᵀ a transposed view
      if (const std::string name = std::string("linear_dw") + suffix(t); ctx.wants(name)) {
        Tensor got = Tensor::empty({N, K}), want = Tensor::empty({N, K});
        const double tk = kc::time_us([&] { kernels::gemm(dy.transpose(0, 1), x, got); });
        const double tr = kc::time_us([&] { kernels::ref::gemm(dy.transpose(0, 1), x, want); }, 1);
        ctx.compare(name, shape, got, want, tol_for(M), tk, tr);
      }
    }
    Tensor dy = rand_uniform({M, N}, g, -1, 1);
    for (auto [name, method] : {std::pair{"linear_db", kernels::ColSum::sum_axis},
                                std::pair{"linear_db_matmul", kernels::ColSum::matmul},
                                std::pair{"linear_db_reduction", kernels::ColSum::reduction}}) {
      if (!ctx.wants(name)) continue;
      Tensor got = Tensor::empty({N}), want = Tensor::empty({N});
      const double tk = kc::time_us([&] { kernels::col_sum(dy, got, nullptr, method); });
      const double tr = kc::time_us([&] { kernels::ref::col_sum(dy, want); }, 1);
      ctx.compare(name, shape, got, want, tol_for(M), tk, tr);
    }
    // f32 <-> bf16 (mixed precision casts every GEMM input), against the
    // scalar round-to-nearest-even of Tensor::to: exact. M·N·17 elements
    // reach the parallel path.
    for (auto [name, from, to] : {std::tuple{"convert_f32_bf16", DType::f32, DType::bf16},
                                  std::tuple{"convert_bf16_f32", DType::bf16, DType::f32}}) {
      if (!ctx.wants(name)) continue;
      const Tensor src = rand_uniform({M * N * 17}, g, -3, 3).to(from);
      Tensor got = Tensor::empty(src.shape(), to), want;
      const double tk = kc::time_us([&] { kernels::convert(src, got); });
      const double tr = kc::time_us([&] { want = src.to(to); }, 1);
      ctx.compare(name, shape, got, want, 0.0, tk, tr);
    }
    Tensor s = rand_uniform({M, N}, g, -3, 3), sig = rand_uniform({M, N}, g, 0.01f, 0.99f);
    for (auto [name, act] : {std::pair{"linear_gelu_bwd_eltwise", Activation::gelu},
                             std::pair{"linear_sigmoid_bwd_eltwise", Activation::sigmoid}}) {
      if (!ctx.wants(name)) continue;
      const Tensor& saved = act == Activation::gelu ? s : sig;
      Tensor got = Tensor::empty({M, N}), want = Tensor::empty({M, N});
      const double tk = kc::time_us([&] { kernels::act_backward(act, dy, saved, got); });
      const double tr = kc::time_us([&] { kernels::ref::act_backward(act, dy, saved, want); }, 1);
      ctx.compare(name, shape, got, want, 1e-6, tk, tr);
    }
    // The bias_grad pass's fused call against the chain it replaces
    // (act_backward, then col_sum of its output): dx and db bit for bit.
    for (auto [name, act] : {std::pair{"linear_gelu_bwd_db", Activation::gelu},
                             std::pair{"linear_sigmoid_bwd_db", Activation::sigmoid}}) {
      if (!ctx.wants(name)) continue;
      const Tensor& saved = act == Activation::gelu ? s : sig;
      Tensor dx = Tensor::empty({M, N}), db = Tensor::empty({N}), cx = Tensor::empty({M, N}), cb = Tensor::empty({N});
      const double tk = kc::time_us([&] { kernels::act_backward_col_sum(act, dy, saved, dx, db); });
      const double tc = kc::time_us([&] {
        kernels::act_backward(act, dy, saved, cx);
        kernels::col_sum(cx, cb);
      });
      ctx.compare(name, shape, dx, cx, 0.0, tk, tc);
      ctx.compare(std::string(name) + "_sums", Shape{N}, db, cb, 0.0, tk, tc);
    }
    // The remat_backward pass's fused call against the chain it replaces
    // (the rematerialized gelu, then the fused bias gradient): a, dx and db
    // bit for bit; pre-activations over [-30, 30], where the backward clamps.
    if (ctx.wants("linear_gelu_remat_bwd_db")) {
      const Tensor u = rand_uniform({M, N}, g, -30, 30);
      Tensor a = Tensor::empty({M, N}), dx = Tensor::empty({M, N}), db = Tensor::empty({N});
      Tensor ca = Tensor::empty({M, N}), cx = Tensor::empty({M, N}), cb = Tensor::empty({N});
      const double tk = kc::time_us([&] { kernels::gelu_remat_backward_col_sum(dy, u, a, dx, db); });
      const double tc = kc::time_us([&] {
        kernels::act_forward(Activation::gelu, u, ca);
        kernels::act_backward_col_sum(Activation::gelu, dy, u, cx, cb);
      });
      ctx.compare("linear_gelu_remat_bwd_db_act", shape, a, ca, 0.0, tk, tc);
      ctx.compare("linear_gelu_remat_bwd_db", shape, dx, cx, 0.0, tk, tc);
      ctx.compare("linear_gelu_remat_bwd_db_sums", Shape{N}, db, cb, 0.0, tk, tc);
    }
  }
  // The sum post-ops of a captured step, each against the unfused chain, bit
  // for bit, f32 only (the passes leave bf16 GEMMs alone: on AMX cores
  // oneDNN's bf16 brgemm adds a few-row, long-K product into dst in another
  // order with the sum post-op, 2.3e-5 apart at [8, 4096, 1024]): the
  // residual epilogue (gemm_residual: r += x wᵀ + b against y = x wᵀ + b;
  // r + y; with r live, o = (x wᵀ + b) + r by the binary post-op), the fused dX (gemm_residual in backward: r += dY W) and dW
  // (gemm_accumulate: g += dYᵀ X); the last shapes run on all threads, with
  // long Ks. The sum post-op rows (dX, dW) are bit for bit where the passes
  // use it, AVX-512; on AVX2, where they leave those adds alone
  // (ops/linear_passes.cpp), oneDNN's gemm kernel sums in another order:
  // over K = 8192 (dW of [8192, 256]) partial sums reach ~60, and an element
  // that cancels to below 1 lands 3e-5 (8 ulps of those sums) away.
  const double sum_tol = kernels::dnnl_has_avx512() ? 0.0 : 1e-4;
  std::vector<std::tuple<int64_t, int64_t, int64_t>> residual_shapes(std::begin(kShapes), std::end(kShapes));
  residual_shapes.insert(residual_shapes.end(), {{256, 1024, 1024}, {8, 4096, 1024}, {8, 1024, 4096}, {8192, 256, 256}});
  for (auto [M, K, N] : residual_shapes)
    for (DType t : {DType::f32}) {
      const Shape shape{M, K, N};
      const Tensor dy = rand_uniform({M, N}, g, -1, 1), xk = rand_uniform({M, K}, g, -1, 1);
      const Tensor wk = rand_uniform({N, K}, g, -1, 1);
      if (const std::string name = std::string("linear_dx_accumulate") + suffix(t); ctx.wants(name)) {
        const Tensor r = rand_uniform({M, K}, g, -1, 1);
        Tensor got = r.clone(), prod = Tensor::empty({M, K});
        const double tk = kc::time_us([&] {
          got.copy_from(r);
          kernels::gemm(dy, wk, got, Tensor(), Activation::none, true);
        });
        const double tr = kc::time_us([&] { kernels::gemm(dy, wk, prod); });
        ctx.compare(name, shape, got, ops::add(r, prod), sum_tol, tk, tr);
      }
      // The dX GEMM adding the gradient it is added to by the binary post-op
      // instead (gemm_residual where the sum post-op is not exact): bit for bit.
      if (const std::string name = std::string("linear_dx_residual") + suffix(t); ctx.wants(name) && K > 0) {
        const Tensor r = rand_uniform({M, K}, g, -1, 1);
        Tensor got = Tensor::empty({M, K}), prod = Tensor::empty({M, K});
        const double tk = kc::time_us([&] { kernels::gemm(dy, wk, got, Tensor(), Activation::none, false, r); });
        const double tr = kc::time_us([&] { kernels::gemm(dy, wk, prod); });
        ctx.compare(name, shape, got, ops::add(r, prod), 0.0, tk, tr);
      }
      if (const std::string name = std::string("linear_dw_accumulate") + suffix(t); ctx.wants(name)) {
        const Tensor g0 = rand_uniform({N, K}, g, -1, 1);
        Tensor got = g0.clone(), prod = Tensor::empty({N, K});
        const double tk = kc::time_us([&] {
          got.copy_from(g0);
          kernels::gemm(dy.transpose(0, 1), xk, got, Tensor(), Activation::none, true);
        });
        const double tr = kc::time_us([&] { kernels::gemm(dy.transpose(0, 1), xk, prod); });
        ctx.compare(name, shape, got, ops::add(g0, prod), sum_tol, tk, tr);
      }
      const std::string name = std::string("linear_residual") + suffix(t);
      const std::string live = std::string("linear_residual_live") + suffix(t);
      if ((!ctx.wants(name) && !ctx.wants(live)) || K == 0) continue;  // K = 0 stays unfused
      const Tensor x = rand_uniform({M, K}, g, -1, 1).to(t), w = rand_uniform({N, K}, g, -1, 1).to(t);
      const Tensor b = rand_uniform({N}, g, -1, 1), r = rand_uniform({M, N}, g, -1, 1);
      Tensor got = r.clone(), y = Tensor::empty({M, N}), want;
      const double tr = kc::time_us([&] {
        kernels::linear_fwd(x, w, b, Activation::none, y);
        want = ops::add(r, y);
      });
      if (ctx.wants(name)) {
        const double tk = kc::time_us([&] {
          got.copy_from(r);
          kernels::gemm(x, w.transpose(0, 1), got, b, Activation::none, true);
        });
        ctx.compare(name, {M, K, N}, got, want, 0.0, tk, tr);
      }
      // gemm_residual where r stays live: the binary post-op reads r and
      // writes the sum elsewhere.
      if (ctx.wants(live)) {
        Tensor sum = Tensor::empty({M, N});
        const double tk = kc::time_us([&] { kernels::gemm(x, w.transpose(0, 1), sum, b, Activation::none, false, r); });
        ctx.compare(live, {M, K, N}, sum, want, 0.0, tk, tr);
      }
    }
  // Gradient checks through ops::linear (x, w, b) and ops::qkvz.
  auto grad_row = [&](const std::string& kernel, const Shape& shape, const autograd::Function& f,
                      const std::vector<Tensor>& in) {
    if (!ctx.wants(kernel)) return;
    const auto r = autograd::gradcheck(f, in);
    ctx.add({kernel, shape_str(shape), r.max_abs_err, r.max_rel_err, 2e-2, 0, 0, r.ok, r.message});
  };
  Tensor x = rand_uniform({2, 3, 17}, g, -1, 1).set_requires_grad();
  Tensor w = rand_uniform({5, 17}, g, -1, 1).set_requires_grad(), b = rand_uniform({5}, g).set_requires_grad();
  for (auto [name, act] : {std::pair{"linear_bwd", Activation::none}, std::pair{"linear_gelu_bwd", Activation::gelu},
                           std::pair{"linear_sigmoid_bwd", Activation::sigmoid}})
    grad_row(name, {2, 3, 17, 5}, [act](auto& in) { return ops::linear(in[0], in[1], in[2], act); }, {x, w, b});
  Tensor xq = rand_uniform({3, 5}, g, -1, 1).set_requires_grad();
  Tensor wq = rand_uniform({20, 5}, g, -1, 1).set_requires_grad(), bq = rand_uniform({20}, g).set_requires_grad();
  grad_row("linear_qkvz_bwd", {3, 5}, [](auto& in) {
    auto [q, k, v, z] = ops::qkvz(in[0], in[1], in[2]);
    return ops::add(ops::mul(q, k), ops::mul(v, z));
  }, {xq, wq, bq});
}
