#include "ops/loss.h"

#include <vector>

#include "ops/common.h"
#include "ops/kernels/softmax.h"

namespace mmrec::ops {
namespace {
// Targets as int64, each checked against [0, v) unless ignored.
std::vector<int64_t> read_targets(const Tensor& t_in, int64_t v, int64_t ignore_index) {
  const Tensor t = t_in.contiguous();
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t id = t.dtype() == DType::i32 ? t.data<int32_t>()[i] : t.data<int64_t>()[i];
    if (id != ignore_index && (id < 0 || id >= v))
      fail("cross_entropy: target ", id, " at position ", i, " out of range for vocab ", v);
    out[static_cast<size_t>(i)] = id;
  }
  return out;
}
}  // namespace

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
  auto tg = std::make_shared<std::vector<int64_t>>(read_targets(targets, v, ignore_index));
  int64_t count = 0;
  for (int64_t t : *tg) count += t != ignore_index;

  Tensor loss_rows = Tensor::empty({rows}), lse = Tensor::empty({rows});
  kernels::cross_entropy_f32(logits.data<float>(), tg->data(), ignore_index, loss_rows.data<float>(),
                             lse.data<float>(), rows, v);
  // Summed in row order in double: the same loss on any thread count.
  double total = 0;
  const float* lr = loss_rows.data<float>();
  for (int64_t r = 0; r < rows; ++r) total += lr[r];
  Tensor out = Tensor::full({}, count ? total / static_cast<double>(count) : 0.0);

  if (autograd::needs_grad({logits_in})) {
    const Tensor ls = logits.detach();
    autograd::record("cross_entropy", {logits_in}, {out},
                     [ls, lse, tg, ignore_index, count, rows, v](const std::vector<Tensor>& g) {
                       const float scale = count ? g[0].item() / static_cast<float>(count) : 0.0f;
                       Tensor dl = Tensor::empty(ls.shape());
                       kernels::cross_entropy_bwd_f32(ls.data<float>(), tg->data(), ignore_index, lse.data<float>(),
                                                      scale, dl.data<float>(), rows, v);
                       return std::vector<Tensor>{dl};
                     });
  }
  return out;
}

}  // namespace mmrec::ops
