// The attribute blocks of the elementwise, activation and reduction calls
// (internal to src/ops): written by their builders, read back from captured
// calls by the graph passes (fuse_pointwise.cpp, copy_chains.cpp).
#pragma once
#include <cstdint>
#include <cstring>

#include "autograd/graph.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/elementwise.h"

namespace mmrec::ops::detail {

struct BinaryAttrs {
  kernels::BinaryOp op;
  int64_t na, nb, n;
};
struct UnaryAttrs {
  kernels::UnaryOp op;
  int64_t n;
};
struct AffineAttrs {
  float s, t;
  int64_t n;
};
// activation, clamp and sigmoid_mul (and their backward)
struct ActAttrs {
  kernels::Activation op;
  float lo, hi;  // clamp's bounds
  int64_t n;
  // sigmoid_mul and its backward: y read as rows of `cols` floats `ld` apart
  // (0: contiguous; the strided_operand pass sets them).
  int64_t cols = 0, ld = 0;
};

// sum_axis and expand_axis over x viewed as [outer, n, inner]; sum_axis
// reads rows `ld` elements apart (0: inner; the strided_sum pass sets it),
// expand_axis writes them so (the write_in_place pass).
struct AxisAttrs {
  int64_t outer, n, inner;
  float scale;
  int64_t ld = 0;
  int64_t group = 0, group_stride = 0;  // sum_axis: slabs in groups (kernels::sum_axis_f32)
};

// A captured call's attributes as the struct its builder wrote.
template <class A>
A attrs_of_call(const autograd::Call& c) {
  A a;
  std::memcpy(&a, c.attrs.bytes, sizeof a);
  return a;
}

}  // namespace mmrec::ops::detail
