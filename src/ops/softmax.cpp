#include "ops/softmax.h"

#include "ops/common.h"
#include "ops/kernels/softmax.h"

namespace mmrec::ops {
namespace {
struct SoftmaxAttrs {
  int64_t mask_rows, rows, n;
};
void run_mask_u8(const SoftmaxAttrs& a, const Tensor* in, const Tensor* out) {
  const float* src = in[0].data<float>();
  uint8_t* dst = out[0].data<uint8_t>();
  for (int64_t i = 0; i < a.rows; ++i) dst[i] = src[i] != 0.0f;
}
void run_softmax(const SoftmaxAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::softmax_f32(in[0].data<float>(), in[1].defined() ? in[1].data<uint8_t>() : nullptr, a.mask_rows,
                       out[0].data<float>(), a.rows, a.n);
}
void run_softmax_bwd(const SoftmaxAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::softmax_bwd_f32(in[0].data<float>(), in[1].data<float>(), out[0].data<float>(), a.rows, a.n);
}

// The mask as contiguous u8 (non-zero = included): u8 masks are used as they
// are, f32 masks are converted (any non-zero value, NaN included, counts).
Tensor mask_u8(const Tensor& mask, const Shape& xs) {
  check(mask.dtype() == DType::u8 || mask.dtype() == DType::f32, "softmax: mask must be u8 or f32, got ",
        dtype_name(mask.dtype()), " of shape ", mask.shape());
  check(mask.dim() >= 1 && detail::is_suffix(mask.shape(), xs), "softmax: mask shape ", mask.shape(),
        " is not a suffix of x's shape ", xs);
  if (mask.dtype() == DType::u8) return mask.contiguous();
  const Tensor m = mask.contiguous();
  Tensor out = Tensor::empty(m.shape(), DType::u8);
  if (m.numel()) detail::dispatch<run_mask_u8>(detail::OpKind::mask_u8, SoftmaxAttrs{0, m.numel(), 0}, {m}, {out});
  return out;
}
}  // namespace

Tensor softmax(const Tensor& x_in, const Tensor& mask_in) {
  const Tensor x = detail::contig_f32("softmax", x_in);
  check(x.dim() >= 1, "softmax: input must have at least one axis, got shape ", x.shape());
  const Tensor mask = mask_in.defined() ? mask_u8(mask_in, x.shape()) : Tensor();
  const int64_t n = x.shape().back();
  const int64_t rows = n ? x.numel() / n : 0;
  Tensor out = Tensor::empty(x.shape());
  const SoftmaxAttrs attrs{mask.defined() && n ? mask.numel() / n : 0, rows, n};
  detail::dispatch<run_softmax>(detail::OpKind::softmax, attrs, {x, mask}, {out});
  if (autograd::needs_grad({x_in})) {
    const Tensor y = out.detach();
    autograd::record("softmax", {x_in}, {out}, [y, attrs](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dx = Tensor::empty(y.shape());
      detail::dispatch<run_softmax_bwd>(detail::OpKind::softmax_bwd, attrs, {y, go}, {dx});
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace mmrec::ops
