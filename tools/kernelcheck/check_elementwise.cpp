// Rows for the activations, RMSNorm, softmax, cross-entropy, embedding,
// concat/split and the chunked axis sums: each Highway/oneTBB kernel, forward
// and backward, against its scalar reference on odd shapes (kc::sizes() as
// row lengths, including 0, 1, 3, 17, 1000), then gradient checks of the ops.
#include <functional>

#include "autograd/gradcheck.h"
#include "kernelcheck/kernelcheck.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/gather.h"
#include "ops/kernels/norm.h"
#include "ops/kernels/reduce.h"
#include "ops/kernels/softmax.h"
#include "ops/loss.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "tensor/random.h"

using namespace mmrec;
using kc::grad_row;
using Fn = std::function<void()>;

namespace {
// Times kernel and reference, then compares their outputs.
void row(kc::Context& ctx, const std::string& name, const Shape& shape, const Fn& kernel, const Fn& ref,
         const Tensor& got, const Tensor& want, double tol) {
  const double tk = kc::time_us(kernel), tr = kc::time_us(ref, 1);
  ctx.compare(name, shape, got, want, tol, tk, tr);
}


Tensor ids_of(int64_t n, int64_t v, Generator& g) {
  Tensor t = Tensor::empty({n}, DType::i64);
  for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = static_cast<int64_t>(g.next_u64() % static_cast<uint64_t>(v));
  return t;
}
}  // namespace

KERNELCHECK_SUITE(activation) {
  using kernels::Activation;
  Generator gen(31);
  for (int64_t n : kc::sizes()) {
    const Shape s{n};
    Tensor x = rand_uniform(s, gen, -10.0f, 10.0f), y = rand_uniform(s, gen, -1.0f, 1.0f), g = rand_uniform(s, gen);
    Tensor a = Tensor::empty(s), b = Tensor::empty(s), a2 = Tensor::empty(s), b2 = Tensor::empty(s);
    const float *px = x.data<float>(), *py = y.data<float>(), *pg = g.data<float>();
    float *pa = a.data<float>(), *pb = b.data<float>(), *pa2 = a2.data<float>(), *pb2 = b2.data<float>();
    for (auto [name, op] : {std::pair{"sigmoid", Activation::sigmoid}, std::pair{"gelu", Activation::gelu}}) {
      const std::string nm = name;
      if (ctx.wants(nm))
        row(ctx, nm, s, [&] { kernels::activation_f32(op, px, pa, n); },
            [&] { kernels::ref::activation_f32(op, px, pb, n); }, a, b, 2e-6);
      if (ctx.wants(nm + "_bwd")) {
        // σ's backward takes the forward output.
        Tensor saved = x;
        if (op == Activation::sigmoid) {
          saved = Tensor::empty(s);
          kernels::ref::activation_f32(op, px, saved.data<float>(), n);
        }
        const float* ps = saved.data<float>();
        row(ctx, nm + "_bwd", s, [&] { kernels::activation_bwd_f32(op, ps, pg, pa, n); },
            [&] { kernels::ref::activation_bwd_f32(op, ps, pg, pb, n); }, a, b, 2e-6);
      }
    }
    // The rematerialized gelu made with its backward (one exp for both):
    // y and dx against the double references, on x's own draws.
    if (ctx.wants("gelu_fwd_bwd")) {
      const double tk = kc::time_us([&] { kernels::gelu_fwd_bwd_f32(px, pg, pa, pa2, n); });
      const double tr = kc::time_us([&] { kernels::ref::gelu_fwd_bwd_f32(px, pg, pb, pb2, n); }, 1);
      ctx.compare("gelu_fwd_bwd_y", s, a, b, 2e-6, tk, tr);
      ctx.compare("gelu_fwd_bwd_dx", s, a2, b2, 2e-6, tk, tr);
    }
    if (ctx.wants("clamp"))
      row(ctx, "clamp", s, [&] { kernels::clamp_f32(px, -2.0f, 3.0f, pa, n); },
          [&] { kernels::ref::clamp_f32(px, -2.0f, 3.0f, pb, n); }, a, b, 0);
    if (ctx.wants("clamp_bwd"))
      row(ctx, "clamp_bwd", s, [&] { kernels::clamp_bwd_f32(px, -2.0f, 3.0f, pg, pa, n); },
          [&] { kernels::ref::clamp_bwd_f32(px, -2.0f, 3.0f, pg, pb, n); }, a, b, 0);
    if (ctx.wants("sigmoid_mul"))
      row(ctx, "sigmoid_mul", s, [&] { kernels::sigmoid_mul_f32(px, py, pa, n); },
          [&] { kernels::ref::sigmoid_mul_f32(px, py, pb, n); }, a, b, 2e-6);
    if (ctx.wants("sigmoid_mul_bwd")) {
      const double tk = kc::time_us([&] { kernels::sigmoid_mul_bwd_f32(px, py, pg, pa, pa2, n); });
      const double tr = kc::time_us([&] { kernels::ref::sigmoid_mul_bwd_f32(px, py, pg, pb, pb2, n); }, 1);
      ctx.compare("sigmoid_mul_bwd_dx", s, a, b, 2e-6, tk, tr);
      ctx.compare("sigmoid_mul_bwd_dy", s, a2, b2, 2e-6, tk, tr);
    }
  }
  // sigmoid_mul reading y in place, rows of a wider buffer (the
  // strided_operand pass: z, a column slice of qkvz).
  for (int64_t cols : kc::sizes()) {
    const int64_t rows = 33, ld = cols + 5;
    const Shape s{rows, cols};
    const Tensor wide = rand_uniform({rows, ld}, gen, -1.0f, 1.0f), x = rand_uniform(s, gen, -10.0f, 10.0f);
    const Tensor g = rand_uniform(s, gen);
    const float *px = x.data<float>(), *pw = wide.data<float>() + 2, *pg = g.data<float>();
    Tensor a = Tensor::empty(s), b = Tensor::empty(s), a2 = Tensor::empty(s), b2 = Tensor::empty(s);
    if (ctx.wants("sigmoid_mul_rows"))
      row(ctx, "sigmoid_mul_rows", s, [&] { kernels::sigmoid_mul_rows_f32(px, pw, ld, a.data<float>(), rows, cols); },
          [&] { kernels::ref::sigmoid_mul_rows_f32(px, pw, ld, b.data<float>(), rows, cols); }, a, b, 2e-6);
    if (ctx.wants("sigmoid_mul_bwd_rows")) {
      const double tk = kc::time_us([&] {
        kernels::sigmoid_mul_bwd_rows_f32(px, pw, ld, pg, a.data<float>(), a2.data<float>(), rows, cols);
      });
      const double tr = kc::time_us([&] {
        kernels::ref::sigmoid_mul_bwd_rows_f32(px, pw, ld, pg, b.data<float>(), b2.data<float>(), rows, cols);
      }, 1);
      ctx.compare("sigmoid_mul_bwd_rows_dx", s, a, b, 2e-6, tk, tr);
      ctx.compare("sigmoid_mul_bwd_rows_dy", s, a2, b2, 2e-6, tk, tr);
    }
  }
  Tensor x = rand_uniform({3, 17}, gen, -3.0f, 3.0f).set_requires_grad();
  Tensor y = rand_uniform({3, 17}, gen).set_requires_grad();
  grad_row(ctx, "sigmoid_gradcheck", {3, 17}, [](auto& in) { return ops::sigmoid(in[0]); }, {x});
  grad_row(ctx, "gelu_gradcheck", {3, 17}, [](auto& in) { return ops::gelu(in[0]); }, {x});
  grad_row(ctx, "sigmoid_mul_gradcheck", {3, 17}, [](auto& in) { return ops::sigmoid_mul(in[0], in[1]); }, {x, y});
  // clamp bounds far from every sample point of x (finite differences would straddle them).
  grad_row(ctx, "clamp_gradcheck", {3, 17}, [](auto& in) { return ops::clamp(in[0], -10.0f, 10.0f); }, {x});
}

KERNELCHECK_SUITE(norm_softmax) {
  Generator gen(32);
  for (int64_t d : kc::sizes()) {
    for (int64_t rows : {int64_t{3}, int64_t{0}}) {
      if (rows == 0 && d != 17) continue;
      const Shape s{rows, d};
      Tensor x = rand_uniform(s, gen, -4.0f, 4.0f), w = rand_uniform({d}, gen), g = rand_uniform(s, gen);
      Tensor a = Tensor::empty(s), b = Tensor::empty(s), ra = Tensor::empty({rows}), rb = Tensor::empty({rows});
      Tensor wa = Tensor::empty({d}), wb = Tensor::empty({d});
      const float *px = x.data<float>(), *pw = w.data<float>(), *pg = g.data<float>();
      float *pa = a.data<float>(), *pb = b.data<float>();
      if (ctx.wants("rmsnorm")) {
        row(ctx, "rmsnorm", s, [&] { kernels::rmsnorm_f32(px, pw, 1e-6f, pa, ra.data<float>(), rows, d); },
            [&] { kernels::ref::rmsnorm_f32(px, pw, 1e-6f, pb, rb.data<float>(), rows, d); }, a, b, 2e-6);
        const float* pr = rb.data<float>();
        const double tk = kc::time_us(
            [&] { kernels::rmsnorm_bwd_f32(px, pw, pr, pg, pa, wa.data<float>(), rows, d); });
        const double tr = kc::time_us(
            [&] { kernels::ref::rmsnorm_bwd_f32(px, pw, pr, pg, pb, wb.data<float>(), rows, d); }, 1);
        ctx.compare("rmsnorm_bwd_dx", s, a, b, 1e-5, tk, tr);
        ctx.compare("rmsnorm_bwd_dw", s, wa, wb, 1e-5, tk, tr);
      }
      if (ctx.wants("rmsnorm_bwd_accumulate")) {
        // The norm_accumulate pass's call (dx = r + the gradient, in place
        // in r) against the chain: the gradient, then r + it.
        const Tensor r = rand_uniform(s, gen, -1.0f, 1.0f), rstd = Tensor::full({rows}, 0.7);
        Tensor got = r.clone(), dx = Tensor::empty(s);
        const double tk = kc::time_us([&] {
          got.copy_from(r);
          kernels::rmsnorm_bwd_f32(px, pw, rstd.data<float>(), pg, got.data<float>(), nullptr, rows, d, nullptr,
                                   got.data<float>());
        });
        const double tc = kc::time_us(
            [&] { kernels::rmsnorm_bwd_f32(px, pw, rstd.data<float>(), pg, dx.data<float>(), nullptr, rows, d); });
        ctx.compare("rmsnorm_bwd_accumulate", s, got, ops::add(r, dx), 0.0, tk, tc);
      }
      if (ctx.wants("softmax")) {
        row(ctx, "softmax", s, [&] { kernels::softmax_f32(px, nullptr, 0, pa, rows, d); },
            [&] { kernels::ref::softmax_f32(px, nullptr, 0, pb, rows, d); }, a, b, 1e-6);
        // A [2, d] mask over the rows; its second row excludes everything.
        Tensor m = Tensor::empty({2, d}, DType::u8);
        for (int64_t k = 0; k < 2 * d; ++k) m.data<uint8_t>()[k] = k < d && gen.next_u64() % 4 != 0;
        const uint8_t* pm = m.data<uint8_t>();
        row(ctx, "softmax_masked", s, [&] { kernels::softmax_f32(px, pm, 2, pa, rows, d); },
            [&] { kernels::ref::softmax_f32(px, pm, 2, pb, rows, d); }, a, b, 1e-6);
        Tensor y = Tensor::empty(s), da = Tensor::empty(s), db = Tensor::empty(s);
        kernels::ref::softmax_f32(px, nullptr, 0, y.data<float>(), rows, d);
        const float* py = y.data<float>();
        row(ctx, "softmax_bwd", s, [&] { kernels::softmax_bwd_f32(py, pg, da.data<float>(), rows, d); },
            [&] { kernels::ref::softmax_bwd_f32(py, pg, db.data<float>(), rows, d); }, da, db, 1e-6);
      }
      if (ctx.wants("cross_entropy") && d > 0) {
        std::vector<int64_t> t(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) t[static_cast<size_t>(r)] = r == 1 ? -1 : (r * 13) % d;
        Tensor la = Tensor::empty({rows}), lb = Tensor::empty({rows});
        row(ctx, "cross_entropy", s,
            [&] { kernels::cross_entropy_f32(px, t.data(), -1, la.data<float>(), ra.data<float>(), rows, d); },
            [&] { kernels::ref::cross_entropy_f32(px, t.data(), -1, lb.data<float>(), rb.data<float>(), rows, d); },
            la, lb, 1e-6);
        const float* pl = rb.data<float>();
        row(ctx, "cross_entropy_bwd", s,
            [&] { kernels::cross_entropy_bwd_f32(px, t.data(), -1, pl, 0.5f, pa, rows, d); },
            [&] { kernels::ref::cross_entropy_bwd_f32(px, t.data(), -1, pl, 0.5f, pb, rows, d); }, a, b, 1e-6);
      }
    }
  }
  Tensor x = rand_uniform({2, 3, 17}, gen, -2.0f, 2.0f).set_requires_grad();
  Tensor w = rand_uniform({17}, gen, 0.5f, 1.5f).set_requires_grad();
  grad_row(ctx, "rmsnorm_gradcheck", {2, 3, 17}, [](auto& in) { return ops::rmsnorm(in[0], in[1]); }, {x, w});
  grad_row(ctx, "softmax_gradcheck", {2, 3, 17}, [](auto& in) { return ops::softmax(in[0]); }, {x});
  Tensor m = Tensor::ones({3, 17}, DType::u8);
  for (int64_t i = 0; i < 17; ++i) m.set({2, i}, 0.0), m.set({0, i}, i % 3 != 0);
  grad_row(ctx, "softmax_masked_gradcheck", {2, 3, 17}, [m](auto& in) { return ops::softmax(in[0], m); }, {x});
  Tensor logits = rand_uniform({5, 17}, gen, -3.0f, 3.0f).set_requires_grad();
  Tensor t = Tensor::from_vector(std::vector<int64_t>{3, -100, 16, 0, 3}, {5});
  grad_row(ctx, "cross_entropy_gradcheck", {5, 17}, [t](auto& in) { return ops::cross_entropy(in[0], t, -100); },
           {logits});
}

KERNELCHECK_SUITE(gather_shape) {
  Generator gen(33);
  for (int64_t n : kc::sizes()) {
    const int64_t v = 50, d = 17;
    Tensor w = rand_uniform({v, d}, gen), g = rand_uniform({n, d}, gen), ids = ids_of(n, v, gen);
    const int64_t* pi = ids.data<int64_t>();
    if (ctx.wants("embedding")) {
      Tensor a = Tensor::empty({n, d}), b = Tensor::empty({n, d});
      row(ctx, "embedding", {n, d}, [&] { kernels::embedding_f32(w.data<float>(), d, pi, n, a.data<float>()); },
          [&] { kernels::ref::embedding_f32(w.data<float>(), d, pi, n, b.data<float>()); }, a, b, 0);
      Tensor da = Tensor::empty({v, d}), db = Tensor::empty({v, d});
      row(ctx, "embedding_bwd", {n, d},
          [&] { kernels::embedding_bwd_f32(g.data<float>(), pi, n, d, v, da.data<float>()); },
          [&] { kernels::ref::embedding_bwd_f32(g.data<float>(), pi, n, d, v, db.data<float>()); }, da, db, 1e-6);
    }
    if (ctx.wants("concat") || ctx.wants("split")) {
      // [3, n, 5] and [3, 2, 5] along axis 1 against element-wise copies.
      Tensor p = rand_uniform({3, n, 5}, gen), q = rand_uniform({3, 2, 5}, gen);
      Tensor got, want = Tensor::empty({3, n + 2, 5});
      const double tk = kc::time_us([&] { got = ops::concat({p, q}, 1); });
      const double tr = kc::time_us([&] {
        want.slice(1, 0, n).copy_from(p);  // the generic strided copy
        want.slice(1, n, n + 2).copy_from(q);
      }, 1);
      ctx.compare("concat", {3, n + 2, 5}, got, want, 0, tk, tr);
      std::vector<Tensor> parts;
      const double ts = kc::time_us([&] { parts = ops::split(want, {n, 2}, 1); });
      ctx.compare("split", {3, n + 2, 5}, ops::concat({parts[1], parts[0]}, 1),
                  ops::concat({q, p}, 1), 0, ts, 0);
    }
  }
  if (ctx.wants("mean_axis")) {
    // The chunked (small outer) and blocked paths of the axis sums.
    for (Shape s : {Shape{1, 100003, 1}, Shape{1, 3000, 600}, Shape{2, 4099, 3}, Shape{17, 33, 1000}, Shape{1, 0, 3}}) {
      Tensor x = rand_uniform(s, gen);
      Tensor a = Tensor::empty({s[0], s[2]}), b = Tensor::empty({s[0], s[2]});
      const float scale = s[1] ? 1.0f / static_cast<float>(s[1]) : 0.0f;
      row(ctx, "mean_axis", s, [&] { kernels::sum_axis_f32(x.data<float>(), s[0], s[1], s[2], scale, a.data<float>()); },
          [&] { kernels::ref::sum_axis_f32(x.data<float>(), s[0], s[1], s[2], scale, b.data<float>()); }, a, b, 1e-6);
    }
  }
  if (ctx.wants("mean_axis_strided")) {
    // The compiled graph's strided sum (a column slice of a wider buffer,
    // summed in place) against the chain it replaces: copy the slice, sum it.
    for (Shape s : {Shape{4, 64, 256}, Shape{1, 3000, 600}, Shape{17, 33, 5}}) {
      const int64_t ld = s[2] * 3, c0 = s[2];
      Tensor wide = rand_uniform({s[0] * s[1], ld}, gen);
      Tensor part = Tensor::empty(s);
      Tensor a = Tensor::empty({s[0], s[2]}), b = Tensor::empty({s[0], s[2]});
      const float scale = 1.0f / static_cast<float>(s[1]);
      row(ctx, "mean_axis_strided", s,
          [&] {
            kernels::sum_axis_f32(wide.data<float>() + c0, s[0], s[1], s[2], scale, a.data<float>(), nullptr,
                                  kernels::SumBlockFn(), ld);
          },
          [&] {
            part.reshape({s[0] * s[1], s[2]}).copy_from(wide.slice(1, c0, c0 + s[2]));
            kernels::sum_axis_f32(part.data<float>(), s[0], s[1], s[2], scale, b.data<float>());
          },
          a, b, 0);
    }
  }
  if (ctx.wants("mean_axis_strided_grouped")) {
    // The same where each batch's rows but its last are summed (the slabs
    // in groups, training's chunk means of k and v): {batches, chunks a
    // batch, chunk rows, columns}.
    for (Shape s : {Shape{8, 8, 128, 512}, Shape{2, 1, 3000, 600}, Shape{3, 5, 17, 7}}) {
      const int64_t outer = s[0] * s[1], rows = s[1] * s[2], ld = s[3] * 4, c0 = s[3];
      Tensor wide = rand_uniform({s[0], rows + 1, ld}, gen);
      Tensor part = Tensor::empty({s[0], rows, s[3]});
      Tensor a = Tensor::empty({outer, s[3]}), b = Tensor::empty({outer, s[3]});
      const float scale = 1.0f / static_cast<float>(s[2]);
      row(ctx, "mean_axis_strided_grouped", s,
          [&] {
            kernels::sum_axis_f32(wide.data<float>() + c0, outer, s[2], s[3], scale, a.data<float>(), nullptr,
                                  kernels::SumBlockFn(), ld, s[1], (rows + 1) * ld);
          },
          [&] {
            part.copy_from(wide.slice(1, 0, rows).slice(2, c0, c0 + s[3]));
            kernels::sum_axis_f32(part.data<float>(), outer, s[2], s[3], scale, b.data<float>());
          },
          a, b, 0);
    }
  }
  Tensor w = rand_uniform({7, 5}, gen).set_requires_grad();
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, 0, 3, 6, 3, 1}, {2, 3});
  grad_row(ctx, "embedding_gradcheck", {2, 3, 5}, [ids](auto& in) { return ops::embedding(in[0], ids); }, {w});
  Tensor a = rand_uniform({2, 3, 4}, gen).set_requires_grad(), b = rand_uniform({2, 5, 4}, gen).set_requires_grad();
  grad_row(ctx, "concat_gradcheck", {2, 8, 4}, [](auto& in) { return ops::concat({in[0], in[1]}, 1); }, {a, b});
  grad_row(ctx, "split_gradcheck", {2, 3, 4},
           [](auto& in) {
             auto p = ops::split(in[0], {1, 2, 1}, -1);
             return ops::concat({ops::mul(p[2], p[2]), p[0]}, -1);
           },
           {a});
  grad_row(ctx, "mean_axis_gradcheck", {2, 5, 4}, [](auto& in) { return ops::mean(in[0], 0); }, {b});
}
