// Matrix products on oneDNN, with created primitives cached by shape,
// strides, dtypes, post-ops and threads (creation costs far more than a small
// execution), and a double-precision scalar reference.
//
//   kernels::gemm(x, w.transpose(0, 1), y, b, ops::Activation::gelu);  // y = gelu(x wᵀ + b)
#pragma once
#include <vector>

#include "ops/linear.h"
#include "tensor/tensor.h"

namespace mmrec::kernels {

// c[b, M, N] = act(a[b, M, K] · b[b, K, N] + bias[N]) (+ c when accumulate).
// a and b are rank 2 or 3, both f32 or both bf16 (f32 accumulation), each
// with unit stride on one of its last two axes (plain, transposed or
// row-strided views are used in place); a rank-2 or batch-1 b is broadcast
// over a's batch. c is f32, contiguous, rank 3 or 2 to match. bias is f32
// [N] contiguous or undefined. accumulate (c += a · b + bias) needs act == none.
// addend (f32, c's shape and strides) is added to the result by oneDNN's
// binary post-op: c = (a · b + bias) + addend, rounded as the two steps are;
// it needs act == none and no accumulate. (Another layout would send oneDNN
// 2.6 to its reference matmul, slow and rounded otherwise.)
void gemm(const Tensor& a, const Tensor& b, Tensor& c, const Tensor& bias = Tensor(),
          ops::Activation act = ops::Activation::none, bool accumulate = false, const Tensor& addend = Tensor());

// The f32 product used by ops::matmul (same rules as gemm, no bias).
void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate = false);

// OpenMP threads a GEMM of this size runs on: 1 for small products and
// small-M products (token by token generation), where a second thread gains
// <= 1.5x when the machine is quiet and costs milliseconds per call when the
// other core is busy; 0 (= the process setting) otherwise.
int gemm_threads(int64_t m, int64_t k, int64_t n);

// t (bf16, rank 2 or 3, unit stride on one of its last two axes) widened to
// f32 (exactly) in buf, as a view of the same shape that keeps which of those
// axes has the unit stride: for CPUs without bf16 matmuls (dnnl_context.h).
Tensor widen_bf16(const Tensor& t, std::vector<float>& buf);

namespace ref {
// Double-precision reference of gemm (any dtype f32/bf16).
void gemm(const Tensor& a, const Tensor& b, Tensor& c, const Tensor& bias = Tensor(),
          ops::Activation act = ops::Activation::none, bool accumulate = false, const Tensor& addend = Tensor());
void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate = false);
// gelu (tanh form) and sigmoid in double precision.
double activate(ops::Activation act, double x);
}  // namespace ref

// Number of oneDNN primitives cached so far, every kernel together (tests, benchmarks).
size_t matmul_cache_size();

}  // namespace mmrec::kernels
