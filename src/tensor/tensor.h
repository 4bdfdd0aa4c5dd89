// Tensor: refcounted storage + offset + shape + strides + dtype.
//
//   Tensor x = Tensor::zeros({2, 3});          // f32
//   x.set({0, 1}, 5.0);
//   Tensor t = x.transpose(0, 1);              // a view: shares storage
//   Tensor c = t.contiguous();                 // a copy in row-major order
//
// The view and copy methods here do not record autograd nodes; the ops in
// src/ops (ops::reshape, ops::transpose, ...) are the differentiable ones.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

namespace autograd {
struct Node;
}

// A block of memory from the caching allocator (or borrowed from elsewhere,
// e.g. a memory-mapped file, in which case `owner` keeps it alive).
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<void> owner;  // set for borrowed memory; empty when allocated here

  explicit Storage(size_t nbytes);
  Storage(void* borrowed, size_t nbytes, std::shared_ptr<void> keep_alive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::f32;
  uint64_t id = 0;  // unique per impl; autograd keys gradients by it

  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;           // accumulated by backward (leaves)
  std::shared_ptr<autograd::Node> grad_fn;    // the node that produced this tensor
  bool retains_grad = false;                  // keep .grad on a non-leaf too
};

int64_t numel_of(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (row-major, contiguous) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor arange(int64_t n, DType dtype = DType::f32);
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int32_t>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape);
  // Wraps memory owned elsewhere (kept alive by keep_alive), no copy.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype,
                          std::shared_ptr<void> keep_alive);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return numel_of(impl_->shape); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  bool is_contiguous() const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- data ----
  // Pointer to the first element; checks the dtype.
  template <class T> T* data() const {
    check_dtype(dtype_of<T>(), "data");
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;
  // Element access for tests and tools (any dtype, converted to/from double).
  double at(std::initializer_list<int64_t> index) const;
  void set(std::initializer_list<int64_t> index, double value);
  double flat_at(int64_t i) const;   // i-th element in row-major order
  float item() const;                // a one-element tensor's value
  std::vector<float> to_vector() const;  // all elements in row-major order, as f32
  std::string str(int64_t max_per_dim = 6) const;

  // ---- copies and views (no autograd) ----
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;       // always a new contiguous copy
  Tensor to(DType dtype) const;  // cast (f32->bf16 rounds to nearest even)
  Tensor reshape(const Shape& shape) const;  // a view if contiguous, else a copy; one -1 allowed
  Tensor slice(int64_t axis, int64_t start, int64_t end) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const Shape& order) const;
  Tensor squeeze(int64_t axis) const;
  Tensor unsqueeze(int64_t axis) const;
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  void copy_from(const Tensor& src);  // same shape; casts dtype
  void fill(double value);

  // ---- autograd state ----
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  Tensor& set_requires_grad(bool r = true);
  bool is_leaf() const { return !impl_->grad_fn; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }
  void retain_grad() { impl_->retains_grad = true; }
  // A tensor sharing this storage with no autograd history.
  Tensor detach() const;

  void check_dtype(DType want, const char* op) const;

 private:
  friend void copy_raw(const Tensor& dst, const Tensor& src);
  friend void fill_raw(const Tensor& dst, double value);
  void copy_raw_from(const Tensor& src) const;
  void fill_raw_with(double value) const;
  int64_t linear_index(std::initializer_list<int64_t> index) const;
  std::shared_ptr<TensorImpl> impl_;
};

// Normalises an axis that may be negative; throws naming `op` when out of range.
int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op);

}  // namespace mmrec

MMREC_API_END
