#include "ops/kernels/matmul.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include "ops/kernels/convert.h"
#include "ops/kernels/dnnl_context.h"
#include "tensor/threads.h"

namespace mmrec::kernels {
namespace {
using dnnl::memory;
using dt = memory::data_type;

// View any rank-2/3 tensor as rank 3 (batch, rows, cols) for oneDNN.
struct Mat3 {
  memory::dims dims, strides;
};

Mat3 as3(const Tensor& t) {
  if (t.dim() == 2) return {{1, t.shape()[0], t.shape()[1]}, {t.shape()[0] * t.shape()[1], t.strides()[0], t.strides()[1]}};
  return {{t.shape()[0], t.shape()[1], t.shape()[2]}, {t.strides()[0], t.strides()[1], t.strides()[2]}};
}

dt dnnl_type(DType d) {
  check(d == DType::f32 || d == DType::bf16, "gemm: dtype ", dtype_name(d), " is not supported (f32 or bf16)");
  return d == DType::f32 ? dt::f32 : dt::bf16;
}

dnnl::algorithm eltwise_alg(ops::Activation act) {
  return act == ops::Activation::gelu ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_logistic;
}

dnnl::primitive create(const Mat3& a, const Mat3& b, const Mat3& c, dt type, bool has_bias, ops::Activation act,
                       bool acc, const Mat3* addend) {
  memory::desc amd(a.dims, type, a.strides), bmd(b.dims, type, b.strides), cmd(c.dims, dt::f32, c.strides);
  dnnl::primitive_attr attr = user_scratchpad();
  dnnl::post_ops po;
  if (acc) po.append_sum(1.0f);
  if (act != ops::Activation::none) po.append_eltwise(1.0f, eltwise_alg(act), 0.0f, 0.0f);
  if (addend) po.append_binary(dnnl::algorithm::binary_add, memory::desc(addend->dims, dt::f32, addend->strides));
  attr.set_post_ops(po);
  const int64_t N = c.dims[2];
  auto d = has_bias ? dnnl::matmul::desc(amd, bmd, memory::desc({1, 1, N}, dt::f32, {N, N, 1}), cmd)
                    : dnnl::matmul::desc(amd, bmd, cmd);
  return dnnl::matmul(dnnl::matmul::primitive_desc(d, attr, dnnl_engine()));
}

// The degenerate K = 0 product: c = act(bias or 0) (+ c) (+ addend).
void gemm_k0(const Tensor& bias, ops::Activation act, bool acc, const Tensor& addend, Tensor& c) {
  float* pc = c.data<float>();
  const int64_t N = c.shape().back(), rows = c.numel() / N, M = c.dim() == 3 ? c.shape()[1] : rows;
  const float* pb = bias.defined() ? bias.data<float>() : nullptr;
  const float* pa = addend.defined() ? addend.data<float>() : nullptr;
  const Mat3 ad = addend.defined() ? as3(addend) : Mat3{};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < N; ++j) {
      const double v = ref::activate(act, pb ? pb[j] : 0.0);
      float& out = pc[r * N + j];
      out = static_cast<float>(acc ? out + v : v);
      if (pa) out += pa[(r / M) * ad.strides[0] + (r % M) * ad.strides[1] + j * ad.strides[2]];
    }
}
}  // namespace

// t (bf16, rank 2 or 3, unit stride on one of its last two axes) widened to
// f32 in `buf` (exact), keeping which of those axes has the unit stride: the
// conversion reads t in its memory order, and a transposed weight stays a
// transposed view.
Tensor widen_bf16(const Tensor& t, std::vector<float>& buf) {
  const Mat3 m = as3(t);
  const int64_t B = m.dims[0], R = m.dims[1], C = m.dims[2];
  buf.resize(static_cast<size_t>(B * R * C));
  const bool rows = m.strides[2] == 1;  // else the columns are contiguous
  const int64_t outer = rows ? R : C, inner = rows ? C : R, step = rows ? m.strides[1] : m.strides[2];
  const auto* src = static_cast<const uint16_t*>(t.raw_data());
  float* dst = buf.data();
  if (step == inner && (B == 1 || m.strides[0] == outer * inner)) {  // one dense block
    bf16_to_f32(src, dst, B * outer * inner);
  } else {
    parallel_for(B * outer, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(inner, 1)),
                 [&](int64_t s, int64_t e) {
                   for (int64_t r = s; r < e; ++r)
                     bf16_to_f32(src + (r / outer) * m.strides[0] + (r % outer) * step, dst + r * inner, inner);
                 });
  }
  const Shape shape = t.shape();
  const Shape strides = t.dim() == 2 ? (rows ? Shape{C, 1} : Shape{1, R})
                                     : (rows ? Shape{R * C, C, 1} : Shape{R * C, 1, R});
  return Tensor::from_blob(dst, {B * R * C}, DType::f32, nullptr).as_strided(shape, strides, 0);
}
int gemm_threads(int64_t m, int64_t k, int64_t n) {
  // Measured (mmrec-bench --filter linear_small_threads): on a quiet machine
  // 2 threads give 0.1x on 1000x17x3, 0.75x on 8x512x512, 1.24x on
  // 8x512x2048 and 1.8x on 64x512x2048; with the other core busy they lose
  // on all of these, and a late wake-up stalls a call for ~8 ms. So products
  // under 4M multiply-adds and token GEMMs (m <= 64) up to 64M run serially.
  const double macs = static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n);
  if (macs <= static_cast<double>(1 << 22)) return 1;
  if (m <= 64 && macs <= static_cast<double>(1 << 26)) return 1;
  return 0;
}

void gemm(const Tensor& a, const Tensor& b, Tensor& c, const Tensor& bias, ops::Activation act, bool accumulate,
          const Tensor& addend) {
  check(!accumulate || act == ops::Activation::none, "gemm: accumulate needs act == none");
  check(a.dtype() == b.dtype(), "gemm: dtypes differ: ", dtype_name(a.dtype()), " x ", dtype_name(b.dtype()));
  const bool has_addend = addend.defined();
  check(!has_addend || (act == ops::Activation::none && !accumulate && addend.dtype() == DType::f32 &&
                        addend.shape() == c.shape() && addend.strides() == c.strides()),
        "gemm: an addend must be f32 of the output's shape ", c.shape(), " and strides, with no activation or ",
        "accumulate");
  if (c.numel() == 0) return;
  const int64_t K = a.shape().back();
  if (K == 0) return gemm_k0(bias, act, accumulate, addend, c);
  if (a.dtype() == DType::bf16 && !dnnl_has_avx512()) {
    // No bf16 matmul on this CPU (dnnl_context.h): the f32 product of the
    // widened operands, i.e. the same exact products accumulated in f32, in
    // the f32 kernel's order. Per thread, grown as needed.
    thread_local std::vector<float> wide_a, wide_b;
    return gemm(widen_bf16(a, wide_a), widen_bf16(b, wide_b), c, bias, act, accumulate, addend);
  }
  const Mat3 ma = as3(a), mb = as3(b), mc = as3(c), md = has_addend ? as3(addend) : Mat3{};
  const dt type = dnnl_type(a.dtype());
  const bool has_bias = bias.defined();
  DnnlThreads threads(gemm_threads(mc.dims[0] * mc.dims[1], K, mc.dims[2]));
  PrimitiveKey key("matmul");
  key.add_dims(ma.dims).add_dims(ma.strides).add_dims(mb.dims).add_dims(mb.strides).add_dims(mc.dims);
  key.add_dims(mc.strides).add(static_cast<int64_t>(type)).add(has_bias).add(static_cast<int64_t>(act));
  key.add(accumulate).add(dnnl_max_threads()).add(has_addend);
  if (has_addend) key.add_dims(md.strides);
  dnnl::primitive prim = cached_primitive(
      key.str(), [&] { return create(ma, mb, mc, type, has_bias, act, accumulate, has_addend ? &md : nullptr); });
  auto& eng = dnnl_engine();
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, memory({ma.dims, type, ma.strides}, eng, a.raw_data())},
                                          {DNNL_ARG_WEIGHTS, memory({mb.dims, type, mb.strides}, eng, b.raw_data())},
                                          {DNNL_ARG_DST, memory({mc.dims, dt::f32, mc.strides}, eng, c.raw_data())}};
  if (has_bias) {
    const int64_t N = mc.dims[2];
    args.emplace(DNNL_ARG_BIAS, memory({{1, 1, N}, dt::f32, {N, N, 1}}, eng, bias.raw_data()));
  }
  if (has_addend)
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                 memory({md.dims, dt::f32, md.strides}, eng, addend.raw_data()));
  run_primitive(prim, std::move(args));
}

void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate) {
  a.check_dtype(DType::f32, "matmul_f32");
  gemm(a, b, c, Tensor(), ops::Activation::none, accumulate);
}

size_t matmul_cache_size() { return primitive_cache_size(); }

namespace ref {
double activate(ops::Activation act, double x) {
  switch (act) {
    case ops::Activation::none: return x;
    case ops::Activation::gelu: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case ops::Activation::sigmoid: return 1.0 / (1.0 + std::exp(-x));
  }
  return x;
}

namespace {
double load(const void* base, DType t, int64_t i) {
  if (t == DType::bf16) return bf16_bits_to_f32(static_cast<const uint16_t*>(base)[i]);
  return static_cast<const float*>(base)[i];
}
}  // namespace

void gemm(const Tensor& a, const Tensor& b, Tensor& c, const Tensor& bias, ops::Activation act, bool accumulate,
          const Tensor& addend) {
  const Mat3 ma = as3(a), mb = as3(b), mc = as3(c), md = addend.defined() ? as3(addend) : Mat3{};
  const float* pd = addend.defined() ? addend.data<float>() : nullptr;
  const void* pa = a.raw_data();
  const void* pb = b.raw_data();
  float* pc = static_cast<float*>(c.raw_data());
  const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
  const int64_t B = mc.dims[0], M = mc.dims[1], N = mc.dims[2], K = ma.dims[2];
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = pbias ? pbias[j] : 0.0;
        const int64_t ab = ma.dims[0] == 1 ? 0 : bi, bb = mb.dims[0] == 1 ? 0 : bi;
        for (int64_t k = 0; k < K; ++k)
          s += load(pa, a.dtype(), ab * ma.strides[0] + i * ma.strides[1] + k * ma.strides[2]) *
               load(pb, b.dtype(), bb * mb.strides[0] + k * mb.strides[1] + j * mb.strides[2]);
        float& out = pc[bi * mc.strides[0] + i * mc.strides[1] + j * mc.strides[2]];
        out = static_cast<float>(accumulate ? out + s : activate(act, s));
        if (pd) out += pd[bi * md.strides[0] + i * md.strides[1] + j * md.strides[2]];
      }
}

void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate) {
  gemm(a, b, c, Tensor(), ops::Activation::none, accumulate);
}
}  // namespace ref

}  // namespace mmrec::kernels
