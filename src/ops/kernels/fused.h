// The fused pointwise kernel: a chain (or small tree) of elementwise ops run
// as one pass over the data, each element's intermediates kept in vector
// registers. The chain is a small fixed-size program of instructions over at
// most four input streams, so one kernel serves every chain the graph pass
// (ops/fuse_pointwise.cpp) fuses; it runs the same per-lane functions as the
// separate kernels (pointwise_hwy-inl.h), so its result is bit-identical.
//   PointwiseProgram p{};                        // y = clamp(a * b, lo, hi)
//   p.n = n; p.n_in = 2; p.n_ops = 2;
//   p.ops[0] = {PointwiseOp::mul, 0, 1, 0, 0};   // operands 0..3: inputs
//   p.ops[1] = {PointwiseOp::clamp, kFirstResult, 0, lo, hi};  // 4 + k: op k's result
//   const float* in[] = {a, b};
//   kernels::fused_f32(p, in, y);
#pragma once
#include <cstdint>

namespace mmrec::kernels {

enum class PointwiseOp : uint8_t {
  copy,                            // a
  add, sub, mul, div,              // a op b (ops::add ...)
  neg, exp, log,                   // ops::neg, ops::exp, ops::log
  affine,                          // a * p + q
  clamp,                           // min(max(a, p), q)
  sigmoid, gelu,                   // ops::sigmoid, ops::gelu
  sigmoid_mul,                     // σ(a) * b
  accumulate,                      // a + b: the tape's g += b, a the earlier g
};

// Operands 0..kMaxInputs-1 name input streams; kFirstResult + k the result of op k.
constexpr uint8_t kFirstResult = 4;

struct PointwiseInstr {
  PointwiseOp op;
  uint8_t a, b;  // operands (b unused by one-operand ops)
  float p, q;    // affine's scale and shift, clamp's bounds
};

struct PointwiseProgram {
  static constexpr int kMaxOps = 6, kMaxInputs = kFirstResult;
  int64_t n = 0;      // output elements
  int64_t inner = 0;  // elements of the repeating inputs (see repeat), dividing n
  uint8_t n_ops = 0, n_in = 0;
  uint8_t repeat = 0;  // bit k: input k has `inner` elements, repeated along the output
  PointwiseInstr ops[kMaxOps] = {};
  // out_ld > 0: the output is rows of out_row elements (dividing n), out_ld
  // apart (a column slice of a wider buffer: a concatenation written in place).
  int64_t out_row = 0, out_ld = 0;
};

// out[i] = the last op's result at element i, for i < n (at
// out[(i / out_row) * out_ld + i % out_row] with a row stride). An input may
// be `out` itself (the same elements, read before written; not with a row
// stride).
void fused_f32(const PointwiseProgram& p, const float* const* in, float* out);

namespace ref {
// Each op in double precision, rounded to f32 after each op (as the chain
// of scalar references).
void fused_f32(const PointwiseProgram& p, const float* const* in, float* out);
}  // namespace ref

}  // namespace mmrec::kernels
