// The seam through which a graph capture (autograd/graph.h) sees the data
// work Tensor does itself: copies, fills, new buffers and host reads. Null
// (the default) outside a capture, where these paths run as before.
#pragma once
#include <cstdint>
#include <memory>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

class Tensor;
struct Storage;

class CaptureObserver {
 public:
  virtual ~CaptureObserver() = default;
  // Runs dst = src (via copy_raw) and records it.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  // Runs dst = value (via fill_raw) and records it.
  virtual void fill(const Tensor& dst, double value) = 0;
  // A buffer allocated inside the captured region.
  virtual void allocated(const std::shared_ptr<Storage>& storage) = 0;
  // Tensor data read or written on the host: an error while capturing.
  virtual void host_access(const char* what) = 0;
};

// This thread's observer, or nullptr.
CaptureObserver* capture_observer();
void set_capture_observer(CaptureObserver* o);

// The unobserved kernels behind Tensor::copy_from and Tensor::fill.
void copy_raw(const Tensor& dst, const Tensor& src);
void fill_raw(const Tensor& dst, double value);

}  // namespace mmrec

MMREC_API_END
