// The copy-chain pass (internal to src/ops): a copy into a temporary that
// only further copies read (a view made contiguous, then permuted; a head
// permutation, then concatenated into its chunk's rows; a split, then
// permuted) becomes one strided copy per reader, straight from the first
// copy's source: one pass over the data instead of two, and no buffer for
// the intermediate. Copies move bits, so the replay is unchanged bit for bit.
// linear.cpp registers it first.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "autograd/graph.h"

namespace mmrec::ops::detail {

// A strided view, in elements, of one buffer.
struct ElemView {
  int64_t offset = 0;
  Shape shape, strides;
};

inline ElemView view_of(const Tensor& t) { return {t.offset(), t.shape(), t.strides()}; }

// The row stride of v read as rows of `inner` elements in row-major order:
// its trailing axes hold exactly `inner` contiguous elements and its leading
// axes step by one stride; nullopt otherwise.
std::optional<int64_t> uniform_rows(const ElemView& v, int64_t inner);

// t is a contiguous buffer whose element l is element l (row-major) of w, a
// view of a buffer s. Copying the view v of t into the view d (same shape)
// is copying `src` of s into `dst`, both of one shape (v's axes, some split
// in two where they run across axes of w), when that is a strided view: no
// index of v carries from one axis of w into the next; nullopt otherwise.
struct CopyViews {
  ElemView src, dst;
};
std::optional<CopyViews> compose_views(const ElemView& v, const ElemView& d, const ElemView& w);

size_t collapse_copy_chains(std::vector<autograd::Call>& calls,
                            const std::function<bool(const Storage*)>& temporary);
// "copy -> copy_rows (2 calls, 1 pass over 2.0 MiB)" for a collapsed copy.
std::string describe_copy_chain(const autograd::Call& call);

// The strided_sum pass: a copy into a temporary that only a sum_axis reads
// (a strided view made contiguous to be reduced, e.g. the chunk means of k
// and v, column slices of one GEMM's output) is dropped, and the sum reads
// the copy's source in place when its rows of `inner` elements are one
// stride apart (kernels::sum_axis_f32's row_stride): the same additions in
// the same order, so the replay is unchanged bit for bit.
size_t fuse_strided_sum(std::vector<autograd::Call>& calls, const std::function<bool(const Storage*)>& temporary);
// "copy -> sum_axis (...)" for a sum reading a strided source.
std::string describe_strided_sum(const autograd::Call& call);

// A copy of f32 from another buffer into the whole of a temporary (what
// strided_sum and strided_operand drop where its readers read the source).
bool f32_copy_to_temporary(const autograd::Call& c, const std::function<bool(const Storage*)>& temporary);

// The strided_operand pass (strided_operand.cpp): a copy into a temporary
// that only sigmoid_mul and its backward read as their y (the recurrence's
// input σ(gate) ⊙ z, z a column slice of the qkvz projection) is dropped,
// and they read the copy's source in place, rows a stride apart (ActAttrs'
// cols and ld): the same lanes, so the replay is unchanged bit for bit.
size_t fuse_strided_operand(std::vector<autograd::Call>& calls,
                            const std::function<bool(const Storage*)>& temporary);
// "copy -> sigmoid_mul (...)" for a call reading y in place.
std::string describe_strided_operand(const autograd::Call& call);

// The write_in_place pass: a copy of a whole temporary that only it reads
// (a part copied into its place in a concatenation: the qkvz gradient joined
// from dq, dk, dv and dz) is dropped when every call writing the temporary
// can write the copy's destination instead: copies (one strided copy each),
// fused_pointwise, expand_axis and memattn (rows a stride apart:
// PointwiseProgram's out_ld, AxisAttrs' ld, MemattnShape's o_row and
// o_batch). Nothing between the first such write and the copy may touch the
// destination there, but for copies of other parts of it (a concatenation's
// other chunks). Registered after pointwise fusion.
size_t write_in_place(std::vector<autograd::Call>& calls, const std::function<bool(const Storage*)>& temporary);
// "expand_axis -> copy_rows (...)" for an expand writing rows in place.
std::string describe_expand_in_place(const autograd::Call& call);
std::string describe_memattn_in_place(const autograd::Call& call);

}  // namespace mmrec::ops::detail
