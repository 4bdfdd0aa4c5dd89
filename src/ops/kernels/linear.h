// Linear-layer kernels: the fused forward y = act(x wᵀ + b), the separate
// activation pass of training on oneDNN (cached primitives), f32 <-> bf16
// conversion, the activation's backward and the column sums for db on the
// Highway kernels of kernels/activation.h and kernels/reduce.h;
// double-precision references beside them.
//
//   kernels::linear_fwd(x, w, b, ops::Activation::gelu, y);   // x [M, K], w [N, K], y [M, N]
//   kernels::col_sum(dy, db);                                  // db[n] = Σ_m dy[m, n]
#pragma once
#include <memory>

#include "ops/kernels/matmul.h"
#include "ops/linear.h"
#include "tensor/tensor.h"

namespace mmrec::kernels {

// y[M, N] = act(x[M, K] · w[N, K]ᵀ + b[N]). x and w are rank 2, both f32 or
// both bf16, each with unit stride on one axis (row-strided views such as q of
// qkvz are used in place); b is f32 [N] contiguous or undefined; y is f32
// [M, N] contiguous. Wᵀ is a transposed memory descriptor, not a copy.
void linear_fwd(const Tensor& x, const Tensor& w, const Tensor& b, ops::Activation act, Tensor& y);

// db[N] = Σ_m dy[m, n] for dy f32 [M, N] contiguous, db f32 [N]. The
// default is the Highway column reduction of kernels/reduce.h (double
// accumulators, the same result on any thread count; its partial sums in
// `scratch`, col_sum_scratch_bytes, null: allocated), at the triad's
// bandwidth: on 8192x2048, 46 GB/s on 2 threads against 9.6 GB/s for the
// ones-vector GEMM (oneDNN's matrix-vector product, one thread) and ~0.5
// GB/s for oneDNN 2.6's reduction, which takes its reference path (bench linear_db).
enum class ColSum { sum_axis, matmul, reduction };
void col_sum(const Tensor& dy, Tensor& db, void* scratch = nullptr, ColSum method = ColSum::sum_axis);
size_t col_sum_scratch_bytes(int64_t M, int64_t N);

// act_backward, then col_sum of its result (dx [M, N], db [N]) in one pass:
// each block of dx is made just before the column sums add it, while it is
// in cache (kernels/reduce.h's SumBlockFn). Bit for bit the two calls'
// result; the fused call of the compiled graph (ops/linear_passes.cpp).
void act_backward_col_sum(ops::Activation act, const Tensor& dy, const Tensor& saved, Tensor& dx, Tensor& db,
                          void* scratch = nullptr);

// The rematerialize pass's activation made again where its backward runs:
// y = gelu(saved) and act_backward_col_sum's dx = dy ⊙ gelu'(saved), db = the
// column sums of dx, in one pass over saved and dy (kernels::gelu_fwd_bwd_f32:
// one exp for both). Bit for bit act_forward, then act_backward_col_sum;
// gelu only (the fused call of ops/linear_passes.cpp's remat_backward).
void gelu_remat_backward_col_sum(const Tensor& dy, const Tensor& saved, Tensor& y, Tensor& dx, Tensor& db,
                                 void* scratch = nullptr);

// y = act(x) elementwise (x, y f32 contiguous, same size; may alias).
void act_forward(ops::Activation act, const Tensor& x, Tensor& y);
// dx = dy ⊙ act'(·), where `saved` is the pre-activation for gelu and the
// output σ(·) for sigmoid (all f32 contiguous, same size; dx may alias dy).
void act_backward(ops::Activation act, const Tensor& dy, const Tensor& saved, Tensor& dx);

// dst = src converted between f32 and bf16 (round to nearest even; the
// Highway kernels of kernels/convert.h), both contiguous with the same
// number of elements.
void convert(const Tensor& src, Tensor& dst);

// A linear layer's weight pre-packed in oneDNN's blocked layout for one row
// count, with its primitive: for token-by-token generation, where the plain
// layout is much slower (8x512x512 on 1 thread: 38 µs packed, 62 µs plain
// through linear_fwd; bench linear_token). The
// packed copy is a snapshot of w: pack again after w changes. Thread-safe to
// run from several threads. Other row counts up to 64 (batched streams) run
// on the same packed copy when oneDNN picks the same layout for them (it does
// for the model's shapes); others fall back to linear_fwd. A weight of 64K
// elements or more (256 KiB in f32) packed while the threads knob is 2 or
// more is packed as two column halves that run as two oneTBB tasks, each half
// on one oneDNN thread (see packed_linear.cpp; parts() says which).
//   kernels::PackedLinear p(w, b, Activation::none, 8);   // once per weight
//   p.forward(x, y);                                       // x [8, K] -> y [8, N]
class PackedLinear {
 public:
  PackedLinear() = default;
  PackedLinear(const Tensor& w, const Tensor& b, ops::Activation act, int64_t rows);
  bool defined() const { return impl_ != nullptr; }
  int64_t rows() const;
  int64_t in_features() const;   // K
  int64_t out_features() const;  // N
  DType dtype() const;           // of the weight (x must match)
  int parts() const;             // column parts run as tasks: 1, or 2 (halves)
  // y[M, N] = act(x[M, K] · wᵀ + b); same contract as linear_fwd.
  void forward(const Tensor& x, Tensor& y) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

namespace ref {
void linear_fwd(const Tensor& x, const Tensor& w, const Tensor& b, ops::Activation act, Tensor& y);
void col_sum(const Tensor& dy, Tensor& db);
void act_backward(ops::Activation act, const Tensor& dy, const Tensor& saved, Tensor& dx);
}  // namespace ref

}  // namespace mmrec::kernels
