// Rows for the quantization kernels: fake quantization (per tensor, per
// channel) and its straight-through backward, u8 quantization of activations
// the observers' min/max and the oneDNN int8 linear (both zero-point modes, fused activations),
// against their scalar references. Inputs include exact ties (k + 0.5 steps),
// values far outside the range and a zero point at either end.
#include <cfloat>
#include <cmath>
#include <tuple>

#include "kernelcheck/kernelcheck.h"
#include "ops/kernels/fake_quant.h"
#include "ops/kernels/linear_int8.h"
#include "tensor/random.h"

using namespace mmrec;

namespace {
// Uniform values over about ±1.5x the quantization range, every 7th an exact
// tie between two levels.
Tensor edge_values(const Shape& shape, Generator& g, float scale, float range) {
  Tensor t = rand_uniform(shape, g, -1.5f * range, 1.5f * range);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); i += 7) p[i] = (std::floor(p[i] / scale) + 0.5f) * scale;
  return t;
}

Tensor u8_as_f32(const Tensor& q) {
  Tensor f = Tensor::empty(q.shape());
  for (int64_t i = 0; i < q.numel(); ++i) f.data<float>()[i] = q.data<uint8_t>()[i];
  return f;
}
}  // namespace

KERNELCHECK_SUITE(quant) {
  Generator g(31);
  // Per tensor: u8 affine (zero point 0, 128, 255) over the odd sizes.
  for (int64_t n : kc::sizes()) {
    for (int32_t zp : {0, 128, 255}) {
      const float s = 0.0173f;
      Tensor x = edge_values({n}, g, s, 255 * s), dy = rand_uniform({n}, g, -1, 1);
      Tensor sc = Tensor::full({1}, s), z = Tensor::empty({1}, DType::i32);
      z.data<int32_t>()[0] = zp;
      const std::string tag = "_zp" + std::to_string(zp);
      if (const std::string name = "fake_quant_per_tensor" + tag; ctx.wants(name)) {
        Tensor got = Tensor::empty({n}), want = Tensor::empty({n});
        const double tk = kc::time_us([&] {
          kernels::fake_quant_f32(x.data<float>(), got.data<float>(), 1, 1, n, sc.data<float>(), z.data<int32_t>(), 0, 255);
        });
        const double tr = kc::time_us([&] {
          kernels::ref::fake_quant_f32(x.data<float>(), want.data<float>(), 1, 1, n, sc.data<float>(), z.data<int32_t>(), 0, 255);
        }, 1);
        ctx.compare(name, {n}, got, want, 0.0, tk, tr);
      }
      if (const std::string name = "fake_quant_per_tensor_bwd" + tag; ctx.wants(name)) {
        Tensor got = Tensor::empty({n}), want = Tensor::empty({n});
        const double tk = kc::time_us([&] {
          kernels::fake_quant_bwd_f32(x.data<float>(), dy.data<float>(), got.data<float>(), 1, 1, n, sc.data<float>(), z.data<int32_t>(), 0, 255);
        });
        const double tr = kc::time_us([&] {
          kernels::ref::fake_quant_bwd_f32(x.data<float>(), dy.data<float>(), want.data<float>(), 1, 1, n, sc.data<float>(), z.data<int32_t>(), 0, 255);
        }, 1);
        ctx.compare(name, {n}, got, want, 0.0, tk, tr);
      }
      if (const std::string name = "quantize_u8" + tag; ctx.wants(name)) {
        Tensor got = Tensor::empty({n}, DType::u8), want = Tensor::empty({n}, DType::u8);
        const double tk = kc::time_us([&] { kernels::quantize_u8(x.data<float>(), got.data<uint8_t>(), n, s, zp); });
        const double tr = kc::time_us([&] { kernels::ref::quantize_u8(x.data<float>(), want.data<uint8_t>(), n, s, zp); }, 1);
        ctx.compare(name, {n}, u8_as_f32(got), u8_as_f32(want), 0.0, tk, tr);
      }
    }
  }
  // Per channel: s8 symmetric over [outer, C, inner] (axis 0 of a weight is outer = 1).
  for (auto [outer, C, inner] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {1, 17, 33}, {3, 5, 1000},
                                 {2, 1000, 1}, {1, 2048, 512}, {1, 0, 4}, {1, 4, 0}}) {
    const Shape shape{outer, C, inner};
    Tensor sc = rand_uniform({C}, g, 0.001f, 0.05f), z = Tensor::zeros({C}, DType::i32);
    Tensor x = edge_values(shape, g, 0.02f, 127 * 0.02f), dy = rand_uniform(shape, g, -1, 1);
    if (ctx.wants("fake_quant_per_channel")) {
      Tensor got = Tensor::empty(shape), want = Tensor::empty(shape);
      const double tk = kc::time_us([&] {
        kernels::fake_quant_f32(x.data<float>(), got.data<float>(), outer, C, inner, sc.data<float>(), z.data<int32_t>(), -128, 127);
      });
      const double tr = kc::time_us([&] {
        kernels::ref::fake_quant_f32(x.data<float>(), want.data<float>(), outer, C, inner, sc.data<float>(), z.data<int32_t>(), -128, 127);
      }, 1);
      ctx.compare("fake_quant_per_channel", shape, got, want, 0.0, tk, tr);
    }
    if (ctx.wants("fake_quant_per_channel_bwd")) {
      Tensor got = Tensor::empty(shape), want = Tensor::empty(shape);
      const double tk = kc::time_us([&] {
        kernels::fake_quant_bwd_f32(x.data<float>(), dy.data<float>(), got.data<float>(), outer, C, inner, sc.data<float>(), z.data<int32_t>(), -128, 127);
      });
      const double tr = kc::time_us([&] {
        kernels::ref::fake_quant_bwd_f32(x.data<float>(), dy.data<float>(), want.data<float>(), outer, C, inner, sc.data<float>(), z.data<int32_t>(), -128, 127);
      }, 1);
      ctx.compare("fake_quant_per_channel_bwd", shape, got, want, 0.0, tk, tr);
    }
  }
  // The observers' min/max of [C, n] rows: odd sizes, one long row (split in
  // pieces), many short ones; NaNs are skipped, infinities taken.
  for (auto [C, n] : {std::pair<int64_t, int64_t>{1, 0}, {1, 1}, {1, 17}, {1, 1000}, {1, 200003}, {3, 33},
                      {2048, 512}, {1000, 1}, {5, 0}}) {
    if (!ctx.wants("min_max")) break;
    Tensor x = rand_uniform({C, n}, g, -3, 5);
    float* p = x.data<float>();
    for (int64_t i = 5; i < x.numel(); i += 97) p[i] = std::nanf("");
    if (x.numel() > 300) p[300] = INFINITY, p[x.numel() - 1] = -INFINITY;
    Tensor got = Tensor::empty({2, C}), want = Tensor::empty({2, C});
    const double tk = kc::time_us([&] { kernels::min_max_f32(p, C, n, got.data<float>(), got.data<float>() + C); });
    const double tr = kc::time_us([&] { kernels::ref::min_max_f32(p, C, n, want.data<float>(), want.data<float>() + C); }, 1);
    for (Tensor* t : {&got, &want})  // ±inf as ±FLT_MAX, so that equal infinities compare equal
      for (int64_t i = 0; i < t->numel(); ++i)
        if (std::isinf(t->data<float>()[i])) t->data<float>()[i] = std::copysign(FLT_MAX, t->data<float>()[i]);
    ctx.compare("min_max", {C, n}, got, want, 0.0, tk, tr);
  }
  // The int8 linear: (M, K, N).
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 17, 5}, {17, 33, 1000}, {1000, 17, 3},
                         {1, 512, 2048}, {8, 512, 17}, {0, 5, 4}, {4, 0, 3}}) {
    const Shape shape{M, K, N};
    Tensor x = rand_uniform({M, K}, g, -1.0f, 3.0f), b = rand_uniform({N}, g, -1, 1);
    Tensor wq = Tensor::empty({N, K}, DType::i8), ws = rand_uniform({N}, g, 0.001f, 0.01f);
    for (int64_t i = 0; i < wq.numel(); ++i)
      wq.data<int8_t>()[i] = static_cast<int8_t>(static_cast<int>(g.next_u64() % 255) - 127);
    const float xs = 4.0f / 255, xz = 64;
    for (auto [mode, mname] : {std::pair{kernels::ZeroPointMode::folded, "folded"},
                               std::pair{kernels::ZeroPointMode::runtime, "runtime_zp"}}) {
      for (ops::Activation act : {ops::Activation::none, ops::Activation::gelu, ops::Activation::sigmoid}) {
        const std::string name = std::string("linear_int8_") + mname +
                                 (act == ops::Activation::gelu ? "_gelu" : act == ops::Activation::sigmoid ? "_sigmoid" : "");
        if (!ctx.wants(name)) continue;
        kernels::Int8Linear l(wq, ws, b, xs, static_cast<int32_t>(xz), act, mode);
        Tensor got = Tensor::empty({M, N}), want = Tensor::empty({M, N});
        const double tk = kc::time_us([&] { l.forward(x, got); });
        const double tr = kc::time_us([&] { kernels::ref::int8_linear(x, wq, ws, b, xs, static_cast<int32_t>(xz), act, want); }, 1);
        // s32 accumulation is exact; the folded bias and the f32 epilogue round.
        ctx.compare(name, shape, got, want, 1e-5, tk, tr);
      }
    }
  }
}
