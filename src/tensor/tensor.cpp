#include "tensor/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include "tensor/allocator.h"
#include "tensor/capture_hook.h"
#include "tensor/threads.h"

namespace mmrec {

namespace {
std::atomic<uint64_t> g_next_id{1};

std::shared_ptr<TensorImpl> make_impl(std::shared_ptr<Storage> st, const Shape& shape,
                                      const Shape& strides, int64_t offset, DType dt) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(st);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dt;
  impl->id = g_next_id.fetch_add(1, std::memory_order_relaxed);
  return impl;
}

// Also bounds the element count (empty dimensions count as 1, as in the
// strides) so that neither strides nor byte sizes can overflow.
void check_shape(const Shape& s, const char* op) {
  int64_t n = 1;
  for (int64_t d : s) {
    check(d >= 0, op, ": negative dimension in shape ", s);
    const int64_t m = std::max<int64_t>(d, 1);
    check(n <= (INT64_MAX / 16) / m, op, ": shape ", s, " has too many elements");
    n *= m;
  }
}

double load(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::bf16: return bf16_bits_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::i8: return static_cast<const int8_t*>(base)[i];
    case DType::u8: return static_cast<const uint8_t*>(base)[i];
    case DType::i32: return static_cast<const int32_t*>(base)[i];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[i]);
  }
  return 0;
}

template <class T>
T saturate(double v) {
  if (std::isnan(v)) return 0;
  const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
  const double hi = static_cast<double>(std::numeric_limits<T>::max());
  return static_cast<T>(std::nearbyint(std::clamp(v, lo, hi)));
}

void store(void* base, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::bf16:
      static_cast<uint16_t*>(base)[i] = f32_to_bf16_bits(static_cast<float>(v));
      break;
    case DType::i8: static_cast<int8_t*>(base)[i] = saturate<int8_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(base)[i] = saturate<uint8_t>(v); break;
    case DType::i32: static_cast<int32_t*>(base)[i] = saturate<int32_t>(v); break;
    case DType::i64: static_cast<int64_t*>(base)[i] = static_cast<int64_t>(std::nearbyint(v)); break;
  }
}

// Calls f(storage_index) for each element in row-major order of `shape`.
template <class F>
void for_each_strided(const Shape& shape, const Shape& strides, int64_t offset, F&& f) {
  const int64_t n = numel_of(shape);
  if (n == 0) return;
  const size_t nd = shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t pos = offset;
  for (int64_t k = 0; k < n; ++k) {
    f(pos);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        pos += strides[d];
        break;
      }
      pos -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}
}  // namespace

Storage::Storage(size_t nbytes) : data(alloc::allocate(nbytes)), bytes(nbytes) {}
Storage::Storage(void* borrowed, size_t nbytes, std::shared_ptr<void> keep_alive)
    : data(borrowed), bytes(nbytes), owner(std::move(keep_alive)) {}
Storage::~Storage() {
  if (!owner) alloc::release(data, bytes);
}

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op) {
  const int64_t a = axis < 0 ? axis + ndim : axis;
  check(a >= 0 && a < ndim, op, ": axis ", axis, " out of range for a tensor of rank ", ndim);
  return a;
}

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  check_shape(shape, "empty");
  const size_t bytes = static_cast<size_t>(numel_of(shape)) * dtype_size(dtype);
  std::shared_ptr<Storage> storage;
  try {
    storage = std::make_shared<Storage>(bytes);
  } catch (const std::bad_alloc&) {
    const alloc::Stats st = alloc::stats();
    throw OutOfMemory("out of memory: a " + std::string(dtype_name(dtype)) + " tensor " + shape_str(shape) +
                      " needs " + mib_str(static_cast<double>(bytes)) + " (" +
                      mib_str(static_cast<double>(st.current_bytes)) + " already in use by tensors)");
  }
  if (CaptureObserver* o = capture_observer()) o->allocated(storage);
  return Tensor(make_impl(std::move(storage), shape, contiguous_strides(shape), 0, dtype));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (CaptureObserver* o = capture_observer()) {
    o->fill(t, 0.0);
  } else if (t.nbytes()) {
    std::memset(t.raw_data(), 0, t.nbytes());
  }
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  check(n >= 0, "arange: negative length ", n);
  Tensor t = empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) store(t.raw_data(), dtype, i, static_cast<double>(i));
  return t;
}

template <class T>
static Tensor from_vec(const std::vector<T>& v, const Shape& shape) {
  check(numel_of(shape) == static_cast<int64_t>(v.size()), "from_vector: ", v.size(),
        " values do not fill shape ", shape);
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  if (!v.empty()) std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(T));
  return t;
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s) { return from_vec(v, s); }
Tensor Tensor::from_vector(const std::vector<int32_t>& v, const Shape& s) { return from_vec(v, s); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s) { return from_vec(v, s); }

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keep_alive) {
  check_shape(shape, "from_blob");
  const size_t bytes = static_cast<size_t>(numel_of(shape)) * dtype_size(dtype);
  auto st = std::make_shared<Storage>(data, bytes, keep_alive ? std::move(keep_alive)
                                                               : std::shared_ptr<void>(data, [](void*) {}));
  return Tensor(make_impl(std::move(st), shape, contiguous_strides(shape), 0, dtype));
}

// ---------------------------------------------------------------- metadata

int64_t Tensor::size(int64_t d) const { return shape()[normalize_axis(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to be out of place
  int64_t expect = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expect) return false;
    expect *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  if (!impl_->storage->data) return nullptr;
  return static_cast<char*>(impl_->storage->data) +
         impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}

void Tensor::check_dtype(DType want, const char* op) const {
  check(dtype() == want, op, ": expected dtype ", dtype_name(want), ", got ", dtype_name(dtype()),
        " for tensor of shape ", shape());
}

int64_t Tensor::linear_index(std::initializer_list<int64_t> index) const {
  check(static_cast<int64_t>(index.size()) == dim(), "at: ", index.size(),
        " indices for a tensor of shape ", shape());
  int64_t pos = 0, d = 0;
  for (int64_t i : index) {
    check(i >= 0 && i < shape()[d], "at: index ", i, " out of range for axis ", d, " of shape ", shape());
    pos += i * strides()[d];
    ++d;
  }
  return pos;
}

namespace {
thread_local CaptureObserver* t_observer = nullptr;
void host_access(const char* what) {
  if (t_observer) t_observer->host_access(what);
}
}  // namespace

CaptureObserver* capture_observer() { return t_observer; }
void set_capture_observer(CaptureObserver* o) { t_observer = o; }

double Tensor::at(std::initializer_list<int64_t> index) const {
  host_access("Tensor::at");
  return load(raw_data(), dtype(), linear_index(index));
}

void Tensor::set(std::initializer_list<int64_t> index, double value) {
  host_access("Tensor::set");
  store(raw_data(), dtype(), linear_index(index), value);
}

double Tensor::flat_at(int64_t i) const {
  host_access("Tensor::flat_at");
  check(i >= 0 && i < numel(), "flat_at: index ", i, " out of range for shape ", shape());
  int64_t pos = 0;
  for (size_t d = shape().size(); d-- > 0;) {
    pos += (i % shape()[d]) * strides()[d];
    i /= shape()[d];
  }
  return load(raw_data(), dtype(), pos);
}

float Tensor::item() const {
  host_access("Tensor::item");
  check(numel() == 1, "item: tensor of shape ", shape(), " has ", numel(), " elements, expected 1");
  return static_cast<float>(flat_at(0));
}

std::vector<float> Tensor::to_vector() const {
  host_access("Tensor::to_vector");
  Tensor c = contiguous().to(DType::f32);
  const float* p = c.data<float>();
  return std::vector<float>(p, p + c.numel());
}

std::string Tensor::str(int64_t max_per_dim) const {
  host_access("Tensor::str");
  std::ostringstream os;
  os << "Tensor(" << dtype_name(dtype()) << ", " << shape() << ")";
  if (numel() == 0) return os.str() + " []";
  Tensor c = contiguous();
  os << " ";
  // Recursive printer that elides the middle of long axes with "...".
  auto rec = [&](auto&& self, int64_t d, int64_t base) -> void {
    if (d == dim()) {
      os << load(c.raw_data(), dtype(), base);
      return;
    }
    os << "[";
    const int64_t n = shape()[d], stride = c.strides()[d];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        os << "..., ";
        i = n - max_per_dim / 2 - 1;
        continue;
      }
      self(self, d + 1, base + i * stride);
      if (i + 1 < n) os << ", ";
    }
    os << "]";
  };
  rec(rec, 0, 0);
  return os.str();
}

// ---------------------------------------------------------------- copies and views

namespace {
// dst = src for one dtype and any strides: one innermost row at a time
// (memcpy when both rows are unit-stride), rows in parallel. The general
// element-by-element path below is ~100x slower on views such as q of qkvz.
template <class T>
void copy_rows(const Shape& shape, const Shape& ss, const Shape& ds, const T* sp, T* dp) {
  const size_t nd = shape.size();
  const int64_t inner = shape[nd - 1], sin = ss[nd - 1], din = ds[nd - 1];
  const int64_t rows = numel_of(shape) / inner;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t so = 0, dof = 0;
      for (int64_t d = static_cast<int64_t>(nd) - 2, rem = r; d >= 0; --d) {
        const int64_t i = rem % shape[static_cast<size_t>(d)];
        rem /= shape[static_cast<size_t>(d)];
        so += i * ss[static_cast<size_t>(d)];
        dof += i * ds[static_cast<size_t>(d)];
      }
      const T* s = sp + so;
      T* o = dp + dof;
      if (sin == 1 && din == 1) {
        std::memcpy(o, s, static_cast<size_t>(inner) * sizeof(T));
      } else {
        for (int64_t i = 0; i < inner; ++i) o[i * din] = s[i * sin];
      }
    }
  });
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  check(src.shape() == shape(), "copy_from: shapes differ: ", src.shape(), " into ", shape());
  if (numel() == 0) return;
  if (CaptureObserver* o = capture_observer()) return o->copy(*this, src);
  copy_raw(*this, src);
}

void copy_raw(const Tensor& dst, const Tensor& src) {
  dst.copy_raw_from(src);
}

void Tensor::copy_raw_from(const Tensor& src) const {
  if (numel() == 0) return;
  if (src.dtype() == dtype() && src.is_contiguous() && is_contiguous()) {
    std::memmove(raw_data(), src.raw_data(), nbytes());
    return;
  }
  if (src.is_contiguous() && is_contiguous() && src.dtype() == DType::f32 && dtype() == DType::bf16) {
    const float* s = src.data<float>();
    auto* d = static_cast<uint16_t*>(raw_data());
    for (int64_t i = 0, n = numel(); i < n; ++i) d[i] = f32_to_bf16_bits(s[i]);
    return;
  }
  if (src.is_contiguous() && is_contiguous() && src.dtype() == DType::bf16 && dtype() == DType::f32) {
    const auto* s = static_cast<const uint16_t*>(src.raw_data());
    float* d = data<float>();
    for (int64_t i = 0, n = numel(); i < n; ++i) d[i] = bf16_bits_to_f32(s[i]);
    return;
  }
  if (src.dtype() == dtype() && dim() > 0) {
    switch (dtype_size(dtype())) {
      case 1: copy_rows(shape(), src.strides(), strides(), static_cast<const uint8_t*>(src.raw_data()), static_cast<uint8_t*>(raw_data())); return;
      case 2: copy_rows(shape(), src.strides(), strides(), static_cast<const uint16_t*>(src.raw_data()), static_cast<uint16_t*>(raw_data())); return;
      case 4: copy_rows(shape(), src.strides(), strides(), static_cast<const uint32_t*>(src.raw_data()), static_cast<uint32_t*>(raw_data())); return;
      case 8: copy_rows(shape(), src.strides(), strides(), static_cast<const uint64_t*>(src.raw_data()), static_cast<uint64_t*>(raw_data())); return;
    }
  }
  // General path: walk both in row-major order.
  std::vector<int64_t> src_pos;
  src_pos.reserve(static_cast<size_t>(numel()));
  for_each_strided(src.shape(), src.strides(), 0, [&](int64_t p) { src_pos.push_back(p); });
  size_t k = 0;
  const void* sb = src.raw_data();
  void* db = raw_data();
  const DType st = src.dtype(), dt = dtype();
  for_each_strided(shape(), strides(), 0, [&](int64_t p) { store(db, dt, p, load(sb, st, src_pos[k++])); });
}

void Tensor::fill(double value) {
  if (CaptureObserver* o = capture_observer()) return o->fill(*this, value);
  fill_raw(*this, value);
}

void fill_raw(const Tensor& dst, double value) { dst.fill_raw_with(value); }

void Tensor::fill_raw_with(double value) const {
  if (dtype() == DType::f32 && is_contiguous()) {
    std::fill_n(data<float>(), numel(), static_cast<float>(value));
    return;
  }
  void* b = raw_data();
  const DType dt = dtype();
  for_each_strided(shape(), strides(), 0, [&](int64_t p) { store(b, dt, p, value); });
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor t = empty(shape(), dt);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  check(shape.size() == strides.size(), "as_strided: shape ", shape, " and strides ", strides,
        " differ in rank");
  return Tensor(make_impl(impl_->storage, shape, strides, offset, dtype()));
}

// ---------------------------------------------------------------- autograd state

Tensor& Tensor::set_requires_grad(bool r) {
  check(!r || dtype() == DType::f32 || dtype() == DType::bf16,
        "set_requires_grad: only floating tensors can require grad (got ", dtype_name(dtype()), ")");
  check(is_leaf(), "set_requires_grad: only leaf tensors can change requires_grad");
  impl_->requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const { return as_strided(shape(), strides(), offset()); }

}  // namespace mmrec
