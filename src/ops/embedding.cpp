#include "ops/embedding.h"

#include <memory>
#include <vector>

#include "ops/common.h"
#include "ops/kernels/gather.h"

namespace mmrec::ops {

Tensor embedding(const Tensor& weight_in, const Tensor& ids_in) {
  const Tensor w = detail::contig_f32("embedding", weight_in, "weight");
  detail::check_defined("embedding", ids_in, "ids");
  check(w.dim() == 2, "embedding: weight must be [V, D], got shape ", w.shape());
  check(ids_in.dtype() == DType::i32 || ids_in.dtype() == DType::i64, "embedding: ids must be i32 or i64, got ",
        dtype_name(ids_in.dtype()), " of shape ", ids_in.shape());
  const int64_t v = w.shape()[0], d = w.shape()[1];
  const Tensor ids = ids_in.contiguous();
  const int64_t n = ids.numel();
  auto idv = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids.dtype() == DType::i32 ? ids.data<int32_t>()[i] : ids.data<int64_t>()[i];
    if (id < 0 || id >= v) fail("embedding: id ", id, " at position ", i, " out of range for vocab ", v);
    (*idv)[static_cast<size_t>(i)] = id;
  }
  Shape out_shape = ids.shape();
  out_shape.push_back(d);
  Tensor out = Tensor::empty(out_shape);
  kernels::embedding_f32(w.data<float>(), d, idv->data(), n, out.data<float>());
  if (autograd::needs_grad({weight_in})) {
    autograd::record("embedding", {weight_in}, {out}, [idv, n, v, d](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dw = Tensor::empty({v, d});
      kernels::embedding_bwd_f32(go.data<float>(), idv->data(), n, d, v, dw.data<float>());
      return std::vector<Tensor>{dw};
    });
  }
  return out;
}

}  // namespace mmrec::ops
