// Matrix products on oneDNN, with created primitives cached by shape, strides
// and dtype (creation costs far more than a small execution), and a
// double-precision scalar reference.
#pragma once
#include "tensor/tensor.h"

namespace mmrec::kernels {

// c[b, M, N] = a[b, M, K] · b[b, K, N] (+ c when accumulate). a and b are
// rank 2 or 3 f32 tensors whose last two axes have unit stride on one of them
// (plain or transposed); a rank-2 or batch-1 b is broadcast over a's batch.
// c is contiguous, rank 3 or 2 to match.
void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate = false);

namespace ref {
void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate = false);
}

// Number of distinct matmul primitives created so far (tests, benchmarks).
size_t matmul_cache_size();

}  // namespace mmrec::kernels
