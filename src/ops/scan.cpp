#include "ops/scan.h"

#include "ops/common.h"
#include "ops/kernels/scan.h"

namespace mmrec::ops {
namespace {

kernels::ScanShape shape3(const char* op, const Tensor& a) {
  check(a.dim() == 3, op, ": a must be 3-D [B, T, D], got shape ", a.shape());
  return {a.shape()[0], a.shape()[1], a.shape()[2]};
}

void check_options(const char* op, const ScanOptions& opt) {
  check(opt.block >= 0, op, ": block must be >= 0, got ", opt.block);
}

float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

}  // namespace

std::pair<Tensor, Tensor> linear_scan(const Tensor& a_in, const Tensor& b_in, const Tensor& h0_in,
                                      const ScanOptions& opt) {
  const char* op = "linear_scan";
  const Tensor a = detail::contig_f32(op, a_in, "a");
  const Tensor b = detail::contig_f32(op, b_in, "b");
  const kernels::ScanShape s = shape3(op, a);
  check(b.shape() == a.shape(), op, ": b shape ", b.shape(), " does not match a ", a.shape());
  Tensor h0;
  if (h0_in.defined()) {
    h0 = detail::contig_f32(op, h0_in, "h0");
    check(h0.shape() == Shape{s.B, s.D}, op, ": h0 shape ", h0.shape(), " does not match [B, D] = ",
          Shape{s.B, s.D}, " of a ", a.shape());
  }
  check_options(op, opt);

  Tensor h = Tensor::empty(a.shape()), h_last = Tensor::empty({s.B, s.D});
  kernels::linear_scan_f32(a.data<float>(), b.data<float>(), data_or_null(h0), h.data<float>(),
                           h_last.data<float>(), s, kernels::plan_scan(opt, s));

  std::vector<Tensor> inputs{a_in, b_in};
  if (h0_in.defined()) inputs.push_back(h0_in);
  if (!autograd::needs_grad(inputs)) return {h, h_last};
  const bool ga = a_in.requires_grad(), gb = b_in.requires_grad(), gh = h0_in.defined() && h0_in.requires_grad();
  const Tensor as = a.detach(), hs = h.detach(), h0s = h0.defined() ? h0.detach() : Tensor();
  autograd::record(op, inputs, {h, h_last}, [=](const std::vector<Tensor>& g) {
    const Tensor dh = g[0].contiguous(), dh_last = g[1].contiguous();
    Tensor da = ga ? Tensor::empty(as.shape()) : Tensor();
    Tensor db = gb ? Tensor::empty(as.shape()) : Tensor();
    Tensor dh0 = gh ? Tensor::empty({s.B, s.D}) : Tensor();
    kernels::linear_scan_bwd_f32(as.data<float>(), hs.data<float>(), data_or_null(h0s), dh.data<float>(),
                                 dh_last.data<float>(), data_or_null(da), data_or_null(db), data_or_null(dh0), s,
                                 kernels::plan_scan(opt, s));
    std::vector<Tensor> grads{da, db};
    if (h0s.defined()) grads.push_back(dh0);
    return grads;
  });
  return {h, h_last};
}

Tensor cumprod_scan(const Tensor& a_in, const ScanOptions& opt) {
  const char* op = "cumprod_scan";
  const Tensor a = detail::contig_f32(op, a_in, "a");
  const kernels::ScanShape s = shape3(op, a);
  check_options(op, opt);
  Tensor P = Tensor::empty(a.shape());
  kernels::cumprod_scan_f32(a.data<float>(), P.data<float>(), s, kernels::plan_scan(opt, s));
  if (!autograd::needs_grad({a_in})) return P;
  const Tensor as = a.detach(), ps = P.detach();
  autograd::record(op, {a_in}, {P}, [=](const std::vector<Tensor>& g) {
    const Tensor dP = g[0].contiguous();
    Tensor da = Tensor::empty(as.shape());
    kernels::cumprod_scan_bwd_f32(as.data<float>(), ps.data<float>(), dP.data<float>(), da.data<float>(), s,
                                  kernels::plan_scan(opt, s));
    return std::vector<Tensor>{da};
  });
  return P;
}

}  // namespace mmrec::ops
