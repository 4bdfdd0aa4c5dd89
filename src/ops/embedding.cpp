#include "ops/embedding.h"

#include <memory>
#include <vector>

#include "ops/common.h"
#include "ops/kernels/gather.h"

namespace mmrec::ops {

namespace {
struct IdsAttrs {
  const char* op;  // a string literal
  int64_t n, v, ignore;
  bool has_ignore, from_i32;
};
void run_check_ids(const IdsAttrs& a, const Tensor* in, const Tensor* out) {
  int64_t* dst = out[0].data<int64_t>();
  for (int64_t i = 0; i < a.n; ++i) {
    const int64_t id = a.from_i32 ? in[0].data<int32_t>()[i] : in[0].data<int64_t>()[i];
    if ((id < 0 || id >= a.v) && !(a.has_ignore && id == a.ignore))
      fail(a.op, ": ", a.has_ignore ? "target " : "id ", id, " at position ", i, " out of range for vocab ", a.v);
    dst[i] = id;
  }
}

struct EmbedAttrs {
  int64_t n, d, v;
};
void run_embedding(const EmbedAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::embedding_f32(in[0].data<float>(), a.d, in[1].data<int64_t>(), a.n, out[0].data<float>());
}
void run_embedding_bwd(const EmbedAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::embedding_bwd_f32(in[0].data<float>(), in[1].data<int64_t>(), a.n, a.d, a.v, out[0].data<float>(),
                             detail::scratch_ptr(out[1]));
}
}  // namespace

namespace detail {
Tensor checked_ids(const char* op, const Tensor& ids_in, int64_t v, std::optional<int64_t> ignore) {
  const Tensor ids = ids_in.contiguous();
  Tensor out = Tensor::empty(ids.shape(), DType::i64);
  const IdsAttrs attrs{op, ids.numel(), v, ignore.value_or(0), ignore.has_value(), ids.dtype() == DType::i32};
  if (ids.numel()) dispatch<run_check_ids>(OpKind::check_ids, attrs, {ids}, {out});
  return out;
}
}  // namespace detail

Tensor embedding(const Tensor& weight_in, const Tensor& ids_in) {
  const Tensor w = detail::contig_f32("embedding", weight_in, "weight");
  detail::check_defined("embedding", ids_in, "ids");
  check(w.dim() == 2, "embedding: weight must be [V, D], got shape ", w.shape());
  check(ids_in.dtype() == DType::i32 || ids_in.dtype() == DType::i64, "embedding: ids must be i32 or i64, got ",
        dtype_name(ids_in.dtype()), " of shape ", ids_in.shape());
  const int64_t v = w.shape()[0], d = w.shape()[1];
  const Tensor ids = detail::checked_ids("embedding", ids_in, v, std::nullopt);
  const int64_t n = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(d);
  Tensor out = Tensor::empty(out_shape);
  const EmbedAttrs attrs{n, d, v};
  detail::dispatch<run_embedding>(detail::OpKind::embedding, attrs, {w, ids}, {out});
  if (autograd::needs_grad({weight_in})) {
    autograd::record("embedding", {weight_in}, {out}, [ids, attrs](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dw = Tensor::empty({attrs.v, attrs.d});
      const Tensor scratch = detail::scratch(kernels::embedding_bwd_scratch_bytes(attrs.n, attrs.v));
      detail::dispatch<run_embedding_bwd>(detail::OpKind::embedding_bwd, attrs, {go, ids}, {dw, scratch});
      return std::vector<Tensor>{dw};
    });
  }
  return out;
}

}  // namespace mmrec::ops
