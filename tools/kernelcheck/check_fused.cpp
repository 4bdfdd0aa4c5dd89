// Rows for the fused pointwise kernel (the fuse_pointwise graph pass): each
// chain the pass fuses in the model, run as one program, against the same
// chain of separate kernels (bit for bit: tolerance 0), and against the
// fused kernel's scalar reference. Sizes are kc::sizes() and one above the
// kernels' task grain (parallel chunks). The tape's accumulation is a
// scalar loop in autograd/tape.cpp, written out here. Then the copy_chains
// pass's collapsed copies against the two copies they replace, and the
// write_in_place pass's rows made in place against making and copying them.
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "kernelcheck/kernelcheck.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/elementwise.h"
#include "ops/copy_chains.h"
#include "ops/kernels/fused.h"
#include "ops/kernels/gather.h"
#include "ops/kernels/reduce.h"
#include "tensor/capture_hook.h"
#include "tensor/random.h"

using namespace mmrec;
using kernels::BinaryOp;
using kernels::kFirstResult;
using kernels::PointwiseOp;
using kernels::PointwiseProgram;

namespace {
constexpr uint8_t R0 = kFirstResult, R1 = kFirstResult + 1, R2 = kFirstResult + 2, R3 = kFirstResult + 3,
                  R4 = kFirstResult + 4;

struct Chain {
  const char* name;  // the row: fused_<name>
  std::vector<kernels::PointwiseInstr> ops;
  int inputs;
  int64_t inner;  // elements of input 1 when it repeats along the output (0: full length)
  float lo, hi;   // the inputs' range
  // The separate kernels: in[k] inputs, out the result, tmp two scratch buffers of n.
  std::function<void(const std::vector<const float*>& in, float* out, float* t0, float* t1, int64_t n)> unfused;
};

const std::vector<Chain>& chains() {
  static const std::vector<Chain> c = {
      // The decay gate: clamp(σ-out * σ-out) (the sigmoids are the GEMMs' post-ops).
      {"decay_gate",
       {{PointwiseOp::mul, 0, 1, 0, 0}, {PointwiseOp::clamp, R0, 0, 1e-6f, 1 - 1e-6f}},
       2, 0, 0.0f, 1.0f,
       [](const auto& in, float* out, float* t0, float*, int64_t n) {
         kernels::binary_f32(BinaryOp::mul, in[0], n, in[1], n, t0, n);
         kernels::clamp_f32(t0, 1e-6f, 1 - 1e-6f, out, n);
       }},
      // x + h + c before the FFN.
      {"x_h_c",
       {{PointwiseOp::add, 0, 1, 0, 0}, {PointwiseOp::add, R0, 2, 0, 0}},
       3, 0, -3.0f, 3.0f,
       [](const auto& in, float* out, float* t0, float*, int64_t n) {
         kernels::binary_f32(BinaryOp::add, in[0], n, in[1], n, t0, n);
         kernels::binary_f32(BinaryOp::add, t0, n, in[2], n, out, n);
       }},
      // The sequential recurrence's step: σ(gate) ⊙ z + γ ⊙ h.
      {"recurrence_step",
       {{PointwiseOp::sigmoid_mul, 0, 1, 0, 0}, {PointwiseOp::mul, 2, 3, 0, 0}, {PointwiseOp::add, R0, R1, 0, 0}},
       4, 0, -8.0f, 8.0f,
       [](const auto& in, float* out, float* t0, float* t1, int64_t n) {
         kernels::sigmoid_mul_f32(in[0], in[1], t0, n);
         kernels::binary_f32(BinaryOp::mul, in[2], n, in[3], n, t1, n);
         kernels::binary_f32(BinaryOp::add, t0, n, t1, n, out, n);
       }},
      // The tape summing two gradients of one tensor: g = copy(a); g += b.
      {"grad_accumulate",
       {{PointwiseOp::copy, 0, 0, 0, 0}, {PointwiseOp::accumulate, R0, 1, 0, 0}},
       2, 0, -3.0f, 3.0f,
       [](const auto& in, float* out, float*, float*, int64_t n) {
         for (int64_t i = 0; i < n; ++i) out[i] = in[0][i];
         for (int64_t i = 0; i < n; ++i) out[i] += in[1][i];
       }},
      // A product's backward summed into a gradient: g = copy(go * w); g += b.
      {"mul_grad_accumulate",
       {{PointwiseOp::mul, 0, 1, 0, 0}, {PointwiseOp::copy, R0, 0, 0, 0}, {PointwiseOp::accumulate, R1, 2, 0, 0}},
       3, 0, -3.0f, 3.0f,
       [](const auto& in, float* out, float* t0, float*, int64_t n) {
         kernels::binary_f32(BinaryOp::mul, in[0], n, in[1], n, t0, n);
         for (int64_t i = 0; i < n; ++i) out[i] = t0[i];
         for (int64_t i = 0; i < n; ++i) out[i] += in[2][i];
       }},
      // A bias over leading axes, then GELU (the repeating operand).
      {"bias_gelu",
       {{PointwiseOp::add, 0, 1, 0, 0}, {PointwiseOp::gelu, R0, 0, 0, 0}},
       2, 37, -6.0f, 6.0f,
       [](const auto& in, float* out, float* t0, float*, int64_t n) {
         kernels::binary_f32(BinaryOp::add, in[0], n, in[1], 37, t0, n);
         kernels::activation_f32(kernels::Activation::gelu, t0, out, n);
       }},
      // Every other op, six deep: sigmoid(exp(log(a) * s + t) / b) - neg(a).
      {"six_ops",
       {{PointwiseOp::log, 0, 0, 0, 0},
        {PointwiseOp::affine, R0, 0, 0.5f, -0.25f},
        {PointwiseOp::exp, R1, 0, 0, 0},
        {PointwiseOp::div, R2, 1, 0, 0},
        {PointwiseOp::sigmoid, R3, 0, 0, 0},
        {PointwiseOp::sub, R4, 0, 0, 0}},
       2, 0, 0.1f, 4.0f,
       [](const auto& in, float* out, float* t0, float* t1, int64_t n) {
         kernels::unary_f32(kernels::UnaryOp::log, in[0], t0, n);
         kernels::affine_f32(t0, 0.5f, -0.25f, t1, n);
         kernels::unary_f32(kernels::UnaryOp::exp, t1, t0, n);
         kernels::binary_f32(BinaryOp::div, t0, n, in[1], n, t1, n);
         kernels::activation_f32(kernels::Activation::sigmoid, t1, t0, n);
         kernels::binary_f32(BinaryOp::sub, t0, n, in[0], n, out, n);
       }},
  };
  return c;
}
}  // namespace

KERNELCHECK_SUITE(fused) {
  Generator gen(41);
  std::vector<int64_t> ns = kc::sizes();
  ns.push_back(100003);
  for (const Chain& c : chains()) {
    const std::string name = std::string("fused_") + c.name;
    if (!ctx.wants(name)) continue;
    for (int64_t n0 : ns) {
      // A repeating operand: n0 rows of it (about n0 elements for the large sizes).
      const int64_t n = !c.inner ? n0 : c.inner * (n0 <= 1000 ? n0 : n0 / c.inner);
      PointwiseProgram p;
      p.n = n;
      p.n_in = static_cast<uint8_t>(c.inputs);
      p.n_ops = static_cast<uint8_t>(c.ops.size());
      for (size_t k = 0; k < c.ops.size(); ++k) p.ops[k] = c.ops[k];
      if (c.inner) p.inner = c.inner, p.repeat = 0b10;
      std::vector<Tensor> in;
      std::vector<const float*> ptr;
      for (int k = 0; k < c.inputs; ++k) {
        in.push_back(rand_uniform({k == 1 && c.inner ? c.inner : n}, gen, c.lo, c.hi));
        ptr.push_back(in.back().data<float>());
      }
      Tensor got = Tensor::empty({n}), want = Tensor::empty({n}), ref = Tensor::empty({n});
      Tensor t0 = Tensor::empty({n}), t1 = Tensor::empty({n});
      const double tk = kc::time_us([&] { kernels::fused_f32(p, ptr.data(), got.data<float>()); });
      const double tc = kc::time_us([&] { c.unfused(ptr, want.data<float>(), t0.data<float>(), t1.data<float>(), n); });
      ctx.compare(name, {n}, got, want, 0.0, tk, tc);
      const double tr = kc::time_us([&] { kernels::ref::fused_f32(p, ptr.data(), ref.data<float>()); }, 1);
      ctx.compare(name + "_ref", {n}, got, ref, 1e-5, tk, tr);
    }
  }
}

// The copy_chains pass on memory attention's two chains: the head
// permutation [B, H, C, d] -> [B, C, H, d] copied, then concatenated into its
// chunk's rows of [B, T, D] (forward), and those rows split out, then
// permuted back (backward); each as the two copies the eager run makes
// against the one strided copy compose_views makes of them: bit for bit.
KERNELCHECK_SUITE(copy_chains) {
  if (!ctx.wants("copy_chain")) return;
  using ops::detail::ElemView;
  Generator gen(43);
  for (auto [B, H, C, d, T] : {std::array<int64_t, 5>{2, 2, 32, 32, 129}, {2, 8, 128, 64, 513}}) {
    const int64_t D = H * d, off = C;  // the second chunk
    const Shape shape{B, H, C, d};
    const auto row_bytes = static_cast<int64_t>(sizeof(float)) * C * D, t_bytes = static_cast<int64_t>(sizeof(float)) * T * D;
    const ElemView chunk_rows{off * D, {B, C * D}, {T * D, 1}}, mid_rows{0, {B, C * D}, {C * D, 1}};
    if (ctx.wants("copy_chain_heads_to_rows")) {
      const Tensor heads = rand_uniform(shape, gen, -1, 1), perm = heads.permute({0, 2, 1, 3});
      Tensor mid = Tensor::empty({B, C, H, d}), want = Tensor::zeros({B, T, D}), got = Tensor::zeros({B, T, D});
      const double tc = kc::time_us([&] {
        copy_raw(mid, perm);
        kernels::copy_rows(static_cast<char*>(want.raw_data()) + off * D * 4, t_bytes, mid.raw_data(), row_bytes, B,
                           row_bytes);
      });
      const auto v = ops::detail::compose_views(mid_rows, chunk_rows, {perm.offset(), perm.shape(), perm.strides()});
      const double tk = kc::time_us([&] {
        if (v) copy_raw(got.as_strided(v->dst.shape, v->dst.strides, v->dst.offset),
                        heads.as_strided(v->src.shape, v->src.strides, v->src.offset));
      });
      ctx.compare("copy_chain_heads_to_rows", shape, got, want, 0.0, tk, tc);
    }
    if (ctx.wants("copy_chain_rows_to_heads")) {
      const Tensor rows = rand_uniform({B, T, D}, gen, -1, 1);
      Tensor mid = Tensor::empty({B, C, H, d}), want = Tensor::empty(shape), got = Tensor::zeros(shape);
      const double tc = kc::time_us([&] {
        kernels::copy_rows(mid.raw_data(), row_bytes, static_cast<const char*>(rows.raw_data()) + off * D * 4, t_bytes,
                           B, row_bytes);
        copy_raw(want, mid.permute({0, 2, 1, 3}));
      });
      const Tensor perm = mid.permute({0, 2, 1, 3});
      const auto v = ops::detail::compose_views({perm.offset(), perm.shape(), perm.strides()},
                                                {0, shape, got.strides()}, chunk_rows);
      const double tk = kc::time_us([&] {
        if (v) copy_raw(got.as_strided(v->dst.shape, v->dst.strides, v->dst.offset),
                        rows.as_strided(v->src.shape, v->src.strides, v->src.offset));
      });
      ctx.compare("copy_chain_rows_to_heads", shape, got, want, 0.0, tk, tc);
    }
  }
}

// The write_in_place pass: a part of a concatenation made straight into its
// columns (rows of w elements, ld apart) by the fused kernel and by
// expand_axis, against making it contiguous and copying its rows there (the
// qkvz gradient's dk and dz: 8192 rows of 512 in rows of 2048): bit for bit.
KERNELCHECK_SUITE(write_in_place) {
  Generator gen(47);
  for (auto [rows, w, ld] : {std::array<int64_t, 3>{8192, 512, 2048}, {33, 17, 40}, {1, 1000, 1000}}) {
    const Shape shape{rows, w};
    const int64_t n = rows * w, col = ld - w;  // the last columns
    const auto w_bytes = static_cast<int64_t>(sizeof(float)) * w, ld_bytes = static_cast<int64_t>(sizeof(float)) * ld;
    Tensor got = Tensor::zeros({rows, ld}), want = Tensor::zeros({rows, ld}), part = Tensor::empty(shape);
    auto rows_into_want = [&] {
      kernels::copy_rows(want.data<float>() + col, ld_bytes, part.raw_data(), w_bytes, rows, w_bytes);
    };
    if (ctx.wants("fused_rows_in_place")) {
      const Chain& c = chains().front();
      PointwiseProgram p;
      p.n = n, p.n_in = static_cast<uint8_t>(c.inputs), p.n_ops = static_cast<uint8_t>(c.ops.size());
      for (size_t k = 0; k < c.ops.size(); ++k) p.ops[k] = c.ops[k];
      std::vector<Tensor> in;
      std::vector<const float*> ptr;
      for (int k = 0; k < c.inputs; ++k) {
        in.push_back(rand_uniform(shape, gen, c.lo, c.hi));
        ptr.push_back(in.back().data<float>());
      }
      const double tc = kc::time_us([&] {
        kernels::fused_f32(p, ptr.data(), part.data<float>());
        rows_into_want();
      });
      PointwiseProgram q = p;
      q.out_row = w, q.out_ld = ld;
      const double tk = kc::time_us([&] { kernels::fused_f32(q, ptr.data(), got.data<float>() + col); });
      ctx.compare("fused_rows_in_place", {rows, w, ld}, got, want, 0.0, tk, tc);
    }
    if (ctx.wants("expand_axis_rows_in_place") && rows % 8 == 0) {
      const Tensor g = rand_uniform({rows / 8, w}, gen, -1, 1);
      const double tc = kc::time_us([&] {
        kernels::expand_axis_f32(g.data<float>(), rows / 8, 8, w, 0.125f, part.data<float>());
        rows_into_want();
      });
      const double tk = kc::time_us(
          [&] { kernels::expand_axis_f32(g.data<float>(), rows / 8, 8, w, 0.125f, got.data<float>() + col, ld); });
      ctx.compare("expand_axis_rows_in_place", {rows, w, ld}, got, want, 0.0, tk, tc);
    }
  }
}
