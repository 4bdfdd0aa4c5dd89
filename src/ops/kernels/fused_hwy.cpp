// Highway fused pointwise kernel, compiled for every target and picked at run
// time. The data goes in blocks of 256 elements: each op runs over the block
// (one switch per op and block, then a tight vector loop), its result kept in
// an L1-resident scratch row for the next op, the last op storing into the
// output: one pass over the inputs and the output, intermediates never in
// memory beyond L1. The partial last vector of a range goes through padded
// copies, as in the separate kernels; an input repeating along the output
// (a bias) is copied block by block into a full-length row.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/fused_hwy.cpp"
#include <algorithm>

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "ops/kernels/fused.h"
#include "ops/kernels/pointwise_hwy-inl.h"
#include "tensor/error.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// y[0..n) = f(a[0..n), b[0..n)), n a multiple of the vector length.
template <class D, class F>
HWY_INLINE void Loop(D d, const float* a, const float* b, float* y, size_t n, const F& f) {
  for (size_t j = 0; j < n; j += hn::Lanes(d)) hn::StoreU(f(hn::LoadU(d, a + j), hn::LoadU(d, b + j)), d, y + j);
}

// One op over n elements (a multiple of the vector length); one-operand ops ignore b.
template <class D>
HWY_INLINE void Op(D d, const PointwiseInstr& op, const float* a, const float* b, float* y, size_t n) {
  using V = hn::Vec<D>;
  switch (op.op) {
    case PointwiseOp::copy: return Loop(d, a, b, y, n, [](V x, V) { return x; });
    case PointwiseOp::add: return Loop(d, a, b, y, n, [d](V x, V z) { return ApplyBinary(d, BinaryOp::add, x, z); });
    case PointwiseOp::sub: return Loop(d, a, b, y, n, [d](V x, V z) { return ApplyBinary(d, BinaryOp::sub, x, z); });
    case PointwiseOp::mul: return Loop(d, a, b, y, n, [d](V x, V z) { return ApplyBinary(d, BinaryOp::mul, x, z); });
    case PointwiseOp::div: return Loop(d, a, b, y, n, [d](V x, V z) { return ApplyBinary(d, BinaryOp::div, x, z); });
    case PointwiseOp::neg: return Loop(d, a, b, y, n, [d](V x, V) { return ApplyUnary(d, UnaryOp::neg, x); });
    case PointwiseOp::exp: return Loop(d, a, b, y, n, [d](V x, V) { return ApplyUnary(d, UnaryOp::exp, x); });
    case PointwiseOp::log: return Loop(d, a, b, y, n, [d](V x, V) { return ApplyUnary(d, UnaryOp::log, x); });
    case PointwiseOp::affine: return Loop(d, a, b, y, n, [d, &op](V x, V) { return Affine(d, x, op.p, op.q); });
    case PointwiseOp::clamp: return Loop(d, a, b, y, n, [d, &op](V x, V) { return Clamp(d, x, op.p, op.q); });
    case PointwiseOp::sigmoid: return Loop(d, a, b, y, n, [d](V x, V) { return Sigmoid(d, x); });
    case PointwiseOp::gelu: return Loop(d, a, b, y, n, [d](V x, V) { return Gelu(d, x); });
    case PointwiseOp::sigmoid_mul: return Loop(d, a, b, y, n, [d](V x, V z) { return hn::Mul(Sigmoid(d, x), z); });
    case PointwiseOp::accumulate: return Loop(d, a, b, y, n, [](V x, V z) { return hn::Add(x, z); });
  }
}

// Elements per block: the intermediates of one block (kMaxOps x 1 KiB) stay in L1.
constexpr size_t kBlock = 256;

// The program over n elements (a multiple of the vector length, at most
// kBlock): each op over the whole block, its result in `scratch`, the last
// op's into out.
template <class D>
HWY_INLINE void Block(D d, const PointwiseProgram& p, const float* const* in, float* out, size_t n,
                      float (*scratch)[kBlock]) {
  auto src = [&](uint8_t x) -> const float* { return x < kFirstResult ? in[x] : scratch[x - kFirstResult]; };
  for (uint8_t k = 0; k < p.n_ops; ++k) {
    const PointwiseInstr& op = p.ops[k];
    Op(d, op, src(op.a), src(op.b), k + 1 == p.n_ops ? out : scratch[k], n);
  }
}

// Points at[k] to input k's elements [i, i + n): in place for a full-length
// input, else (a repeating one) copied into rep[k] with the wrap-around.
HWY_INLINE void Gather(const PointwiseProgram& p, const float* const* in, size_t i, size_t n,
                       float (*rep)[kBlock], const float** at) {
  for (uint8_t k = 0; k < p.n_in; ++k) {
    if (!(p.repeat >> k & 1)) {
      at[k] = in[k] + i;
      continue;
    }
    const size_t inner = static_cast<size_t>(p.inner);
    for (size_t j = 0, from = i % inner; j < n;) {
      const size_t len = std::min(n - j, inner - from);
      std::copy(in[k] + from, in[k] + from + len, rep[k] + j);
      j += len;
      from = 0;
    }
    at[k] = rep[k];
  }
}

// Elements [begin, end) of the program into out[0, end - begin) (the inputs
// not offset). The
// partial last vector runs on copies padded with 1 (division and log stay
// finite there).
void FusedRange(const PointwiseProgram& p, const float* const* in, float* out, size_t begin, size_t end) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float scratch[PointwiseProgram::kMaxOps][kBlock];
  HWY_ALIGN float rep[PointwiseProgram::kMaxInputs][kBlock];
  const float* at[PointwiseProgram::kMaxInputs] = {};
  const size_t full = begin + (end - begin) / N * N;
  for (size_t i = begin; i < full; i += kBlock) {
    const size_t n = std::min(kBlock, full - i);
    Gather(p, in, i, n, rep, at);
    Block(d, p, at, out + (i - begin), n, scratch);
  }
  if (full < end) {
    const size_t r = end - full;
    HWY_ALIGN float pad[PointwiseProgram::kMaxInputs][hn::MaxLanes(d)];
    HWY_ALIGN float tail[hn::MaxLanes(d)];
    Gather(p, in, full, r, rep, at);
    for (uint8_t k = 0; k < p.n_in; ++k) {
      for (size_t j = 0; j < N; ++j) pad[k][j] = j < r ? at[k][j] : 1.0f;
      at[k] = pad[k];
    }
    Block(d, p, at, tail, N, scratch);
    std::copy(tail, tail + r, out + (full - begin));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(FusedRange);

namespace {
constexpr int64_t kGrain = 1 << 14;  // output elements per task
}

void fused_f32(const PointwiseProgram& p, const float* const* in, float* out) {
  if (p.n == 0 || p.n_ops == 0) return;
  if (p.out_ld > 0) {
    check(p.out_row > 0 && p.n % p.out_row == 0 && p.out_ld >= p.out_row, "fused_f32: output rows of ", p.out_row,
          " elements ", p.out_ld, " apart for ", p.n, " elements");
    const int64_t w = p.out_row;
    parallel_for(p.n / w, std::max<int64_t>(1, kGrain / w), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r)
        HWY_DYNAMIC_DISPATCH(FusedRange)(p, in, out + r * p.out_ld, static_cast<size_t>(r * w),
                                         static_cast<size_t>((r + 1) * w));
    });
    return;
  }
  parallel_for(p.n, kGrain, [&](int64_t s, int64_t e) {
    HWY_DYNAMIC_DISPATCH(FusedRange)(p, in, out + s, static_cast<size_t>(s), static_cast<size_t>(e));
  });
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
