// Shared argument checks and small helpers for op builders (internal to src/ops).
#pragma once
#include <optional>

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "tensor/tensor.h"

namespace mmrec::ops::detail {

using autograd::dispatch;
using autograd::OpKind;

// An optional f32 argument of a kernel: its data or nullptr.
inline float* f32_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

inline void check_defined(const char* op, const Tensor& t, const char* what = "input") {
  check(t.defined(), op, ": ", what, " is undefined");
}

inline void check_f32(const char* op, const Tensor& t, const char* what = "input") {
  check_defined(op, t, what);
  check(t.dtype() == DType::f32, op, ": ", what, " must be f32, got ", dtype_name(t.dtype()), " of shape ",
        t.shape());
}

// Kernels need row-major memory; views are made contiguous by the builder.
inline Tensor contig_f32(const char* op, const Tensor& t, const char* what = "input") {
  check_f32(op, t, what);
  return t.contiguous();
}

// Token ids (i32 or i64, any shape) as a contiguous i64 tensor, each checked
// against [0, v) (ids equal to `ignore` pass) by a kernel, so that a replay
// checks them too; the error names `op`, the id and its position.
Tensor checked_ids(const char* op, const Tensor& ids, int64_t v, std::optional<int64_t> ignore);

// Copies `rows` rows of row_bytes bytes from src's data + src_off bytes (rows
// src_stride bytes apart) to dst's + dst_off (dst_stride apart): concat,
// split and the joined qkvz gradient.
void copy_block(const Tensor& dst, int64_t dst_off, int64_t dst_stride, const Tensor& src, int64_t src_off,
                int64_t src_stride, int64_t rows, int64_t row_bytes);
// The buffer behind a view (graph passes compare them).
inline const Storage* storage_of(const Tensor& t) { return t.impl()->storage.get(); }

// The attributes of its copy_rows call (read by the copy-chain pass).
struct RowsAttrs {
  int64_t dst_off, dst_stride, src_off, src_stride, rows, row_bytes;
};

// A kernel's scratch: memory it needs only during the call. The kernel
// declares its size (kernels::x_scratch_bytes), the builder makes it and
// passes it as the call's last output, so that a capture plans it in the
// arena like any temporary (it dies with the call) and a replay allocates
// nothing. Undefined when the kernel needs none.
inline Tensor scratch(size_t bytes) {
  if (bytes == 0) return Tensor();
  return Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)});  // f32 words; the kernel reinterprets them
}
inline void* scratch_ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// True if `small` is a suffix of `big` (broadcast over leading axes).
inline bool is_suffix(const Shape& small, const Shape& big) {
  if (small.size() > big.size()) return false;
  return std::equal(small.begin(), small.end(), big.end() - static_cast<std::ptrdiff_t>(small.size()));
}

// Output shape of a binary op broadcasting over leading axes: one shape must
// be a suffix of the other, or hold a single element (a scalar).
inline Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  if (is_suffix(b, a)) return a;
  if (is_suffix(a, b)) return b;
  if (numel_of(b) == 1 && b.size() <= a.size()) return a;
  if (numel_of(a) == 1 && a.size() <= b.size()) return b;
  fail(op, ": shapes ", a, " and ", b, " do not broadcast (one must be a suffix of the other)");
}

// Sums a gradient of shape `g.shape()` down to its suffix `shape` (the
// backward of broadcasting over leading axes).
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace mmrec::ops::detail
