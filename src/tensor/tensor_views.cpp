// Tensor views: reshape, slice, transpose, permute, squeeze and unsqueeze,
// all through as_strided, share the storage of the tensor they view
// (tensor.cpp has the factories, element access, copies, as_strided and
// autograd state).
#include "tensor/tensor.h"

namespace mmrec {

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      check(infer < 0, "reshape: more than one -1 in ", new_shape);
      infer = static_cast<int64_t>(i);
    } else {
      check(s[i] >= 0, "reshape: negative dimension in ", new_shape);
      known *= s[i];
    }
  }
  if (infer >= 0) {
    check(known != 0 && numel() % known == 0, "reshape: cannot reshape ", shape(), " into ", new_shape);
    s[static_cast<size_t>(infer)] = numel() / known;
  }
  check(numel_of(s) == numel(), "reshape: cannot reshape ", shape(), " (", numel(), " elements) into ",
        new_shape);
  Tensor c = contiguous();
  return c.as_strided(s, contiguous_strides(s), c.offset());
}

Tensor Tensor::slice(int64_t axis, int64_t start, int64_t end) const {
  const int64_t a = normalize_axis(axis, dim(), "slice");
  const int64_t n = shape()[a];
  check(0 <= start && start <= end && end <= n, "slice: range [", start, ", ", end, ") out of bounds for axis ",
        a, " of shape ", shape());
  Shape s = shape();
  s[a] = end - start;
  return as_strided(s, strides(), offset() + start * strides()[a]);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t a = normalize_axis(d0, dim(), "transpose"), b = normalize_axis(d1, dim(), "transpose");
  Shape s = shape(), st = strides();
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  return as_strided(s, st, offset());
}

Tensor Tensor::permute(const Shape& order) const {
  check(static_cast<int64_t>(order.size()) == dim(), "permute: order ", order, " does not match shape ",
        shape());
  std::vector<bool> seen(order.size(), false);
  Shape s(order.size()), st(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t a = normalize_axis(order[i], dim(), "permute");
    check(!seen[a], "permute: axis ", a, " repeated in ", order);
    seen[a] = true;
    s[i] = shape()[a];
    st[i] = strides()[a];
  }
  return as_strided(s, st, offset());
}

Tensor Tensor::squeeze(int64_t axis) const {
  const int64_t a = normalize_axis(axis, dim(), "squeeze");
  check(shape()[a] == 1, "squeeze: axis ", a, " of shape ", shape(), " is not 1");
  Shape s = shape(), st = strides();
  s.erase(s.begin() + a);
  st.erase(st.begin() + a);
  return as_strided(s, st, offset());
}

Tensor Tensor::unsqueeze(int64_t axis) const {
  const int64_t a = normalize_axis(axis, dim() + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  const int64_t stride = a < dim() ? strides()[a] * shape()[a] : 1;
  s.insert(s.begin() + a, 1);
  st.insert(st.begin() + a, stride);
  return as_strided(s, st, offset());
}

}  // namespace mmrec
