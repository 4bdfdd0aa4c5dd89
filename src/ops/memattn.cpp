#include "ops/memattn.h"

#include <cmath>

#include "ops/common.h"
#include "ops/kernels/memattn.h"
#include "ops/memattn_attrs.h"

namespace mmrec::ops {
namespace {
using detail::MemattnAttrs;
void run_memattn(const MemattnAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::memattn_f32(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), detail::f32_or_null(in[3]),
                       a.scale, out[0].data<float>(), detail::f32_or_null(out[1]), a.s, detail::scratch_ptr(out[2]));
}
void run_memattn_bwd(const MemattnAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::memattn_bwd_f32(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[3].data<float>(),
                           in[4].data<float>(), a.scale, detail::f32_or_null(out[0]), detail::f32_or_null(out[1]),
                           detail::f32_or_null(out[2]), a.s, detail::scratch_ptr(out[3]));
}
}  // namespace

Tensor memattn(const Tensor& q_in, const Tensor& kt_in, const Tensor& v_in, int64_t heads, const Tensor& mask_in) {
  const char* op = "memattn";
  detail::check_f32(op, q_in, "q");
  check(q_in.dim() == 3, op, ": q must be [B, T, D], got shape ", q_in.shape());
  const int64_t B = q_in.size(0), T = q_in.size(1), D = q_in.size(2);
  check(heads >= 1 && D % heads == 0, op, ": dim ", D, " is not a multiple of heads ", heads);
  const int64_t H = heads, d = D / H;
  const Tensor kt = detail::contig_f32(op, kt_in, "kt"), v = detail::contig_f32(op, v_in, "v");
  check(kt.dim() == 3 && kt.size(0) == B * H && kt.size(1) == d, op, ": kt must be [B·H, d, S] = [", B * H, ", ", d,
        ", S], got ", kt.shape());
  const int64_t S = kt.size(2);
  check(v.shape() == Shape{B * H, S, d}, op, ": v must be [B·H, S, d] = ", Shape{B * H, S, d}, ", got ", v.shape());
  Tensor mask;
  if (mask_in.defined()) {
    mask = detail::contig_f32(op, mask_in, "mask");
    check(mask.shape() == Shape{S}, op, ": mask must be [S] = [", S, "], got ", mask.shape());
  }
  const Tensor q = q_in.strides()[2] == 1 || D <= 1 ? q_in : q_in.contiguous();
  const int64_t pr = kernels::memattn_weight_row(S);
  const MemattnAttrs a{{B, T, D, H, S, q.strides()[0], q.strides()[1], T * D, D, pr},
                       1.0f / std::sqrt(static_cast<float>(d))};
  const bool grad = autograd::needs_grad({q_in, kt_in, v_in});
  Tensor out = Tensor::empty({B, T, D}), p = grad ? Tensor::empty({B * H, T, pr}) : Tensor();
  detail::dispatch<run_memattn>(detail::OpKind::memattn, a, {q, kt, v, mask},
                                {out, p, detail::scratch(kernels::memattn_scratch_bytes(a.s, false))});
  if (!grad) return out;
  const bool gq = q_in.requires_grad(), gk = kt_in.requires_grad(), gv = v_in.requires_grad();
  const Tensor qs = q.detach(), ks = kt.detach(), vs = v.detach(), ps = p.detach();
  autograd::record(op, {q_in, kt_in, v_in}, {out}, [=](const std::vector<Tensor>& g) {
    // dout read in place where its rows are (a chunk's rows of the whole
    // sequence's gradient), as q is.
    const Tensor go = g[0].strides()[2] == 1 || D <= 1 ? g[0] : g[0].contiguous();
    MemattnAttrs ab = a;
    ab.s.o_batch = go.strides()[0], ab.s.o_row = go.strides()[1];
    Tensor dq = gq ? Tensor::empty({B, T, D}) : Tensor(), dk = gk ? Tensor::empty(ks.shape()) : Tensor();
    Tensor dv = gv ? Tensor::empty(vs.shape()) : Tensor();
    detail::dispatch<run_memattn_bwd>(detail::OpKind::memattn_bwd, ab, {qs, ks, vs, ps, go},
                                      {dq, dk, dv, detail::scratch(kernels::memattn_scratch_bytes(ab.s, true))});
    return std::vector<Tensor>{dq, dk, dv};
  });
  return out;
}

}  // namespace mmrec::ops
