#include "ops/loss.h"

#include <vector>

#include "ops/common.h"
#include "ops/kernels/softmax.h"

namespace mmrec::ops {
namespace {
struct CeAttrs {
  int64_t ignore, rows, v;
};
void run_cross_entropy(const CeAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::cross_entropy_f32(in[0].data<float>(), in[1].data<int64_t>(), a.ignore, out[0].data<float>(),
                             out[1].data<float>(), a.rows, a.v);
}
// out = Σ loss / count (summed in row order in double: the same loss on any
// thread count); count [1] i64 = the rows not ignored.
void run_loss_mean(const CeAttrs& a, const Tensor* in, const Tensor* out) {
  const float* lr = in[0].data<float>();
  const int64_t* tg = in[1].data<int64_t>();
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    total += lr[r];
    count += tg[r] != a.ignore;
  }
  out[0].data<float>()[0] = static_cast<float>(count ? total / static_cast<double>(count) : 0.0);
  out[1].data<int64_t>()[0] = count;
}
void run_cross_entropy_bwd(const CeAttrs& a, const Tensor* in, const Tensor* out) {
  const int64_t count = in[3].data<int64_t>()[0];
  const float scale = count ? in[4].data<float>()[0] / static_cast<float>(count) : 0.0f;
  kernels::cross_entropy_bwd_f32(in[0].data<float>(), in[1].data<int64_t>(), a.ignore, in[2].data<float>(), scale,
                                 out[0].data<float>(), a.rows, a.v);
}
struct ShiftAttrs {
  int64_t B, T, ignore;
  bool from_i32;
};
void run_next_token_targets(const ShiftAttrs& a, const Tensor* in, const Tensor* out) {
  int64_t* dst = out[0].data<int64_t>();
  for (int64_t b = 0; b < a.B; ++b) {
    for (int64_t t = 0; t + 1 < a.T; ++t) {
      const int64_t i = b * a.T + t + 1;
      dst[b * a.T + t] = a.from_i32 ? in[0].data<int32_t>()[i] : in[0].data<int64_t>()[i];
    }
    dst[b * a.T + a.T - 1] = a.ignore;
  }
}
}  // namespace

Tensor next_token_targets(const Tensor& tokens_in, int64_t ignore_index) {
  detail::check_defined("next_token_targets", tokens_in, "tokens");
  check(tokens_in.dim() == 2 && (tokens_in.dtype() == DType::i32 || tokens_in.dtype() == DType::i64),
        "next_token_targets: tokens must be [B, T] i32 or i64, got ", dtype_name(tokens_in.dtype()), " of shape ",
        tokens_in.shape());
  const Tensor tokens = tokens_in.contiguous();
  const int64_t B = tokens.size(0), T = tokens.size(1);
  Tensor out = Tensor::empty({B, T}, DType::i64);
  if (B * T > 0)
    detail::dispatch<run_next_token_targets>(detail::OpKind::next_token_targets,
                                             ShiftAttrs{B, T, ignore_index, tokens.dtype() == DType::i32}, {tokens},
                                             {out});
  return out;
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets, int64_t ignore_index) {
  const Tensor logits = detail::contig_f32("cross_entropy", logits_in, "logits");
  detail::check_defined("cross_entropy", targets, "targets");
  check(logits.dim() == 2, "cross_entropy: logits must be [N, V], got shape ", logits.shape());
  check(targets.dtype() == DType::i32 || targets.dtype() == DType::i64,
        "cross_entropy: targets must be i32 or i64, got ", dtype_name(targets.dtype()), " of shape ",
        targets.shape());
  check(targets.dim() == 1 && targets.shape()[0] == logits.shape()[0], "cross_entropy: targets shape ",
        targets.shape(), " does not match logits ", logits.shape(), " (want [N])");
  const int64_t rows = logits.shape()[0], v = logits.shape()[1];
  const Tensor tg = detail::checked_ids("cross_entropy", targets, v, ignore_index);
  const CeAttrs attrs{ignore_index, rows, v};
  Tensor loss_rows = Tensor::empty({rows}), lse = Tensor::empty({rows});
  Tensor out = Tensor::empty({}), count = Tensor::empty({1}, DType::i64);
  detail::dispatch<run_cross_entropy>(detail::OpKind::cross_entropy, attrs, {logits, tg}, {loss_rows, lse});
  detail::dispatch<run_loss_mean>(detail::OpKind::loss_mean, attrs, {loss_rows, tg}, {out, count});

  if (autograd::needs_grad({logits_in})) {
    const Tensor ls = logits.detach();
    autograd::record("cross_entropy", {logits_in}, {out}, [ls, lse, tg, count, attrs](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dl = Tensor::empty(ls.shape());
      detail::dispatch<run_cross_entropy_bwd>(detail::OpKind::cross_entropy_bwd, attrs, {ls, tg, lse, count, go},
                                              {dl});
      return std::vector<Tensor>{dl};
    });
  }
  return out;
}

}  // namespace mmrec::ops
