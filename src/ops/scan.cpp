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

using detail::f32_or_null;

// The scan plan is taken once per call and frozen in the attributes.
struct ScanAttrs {
  kernels::ScanShape s;
  kernels::ScanPlan plan;
};
void run_linear_scan(const ScanAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::linear_scan_f32(in[0].data<float>(), in[1].data<float>(), f32_or_null(in[2]), out[0].data<float>(),
                           out[1].data<float>(), a.s, a.plan, detail::scratch_ptr(out[2]));
}
void run_linear_scan_bwd(const ScanAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::linear_scan_bwd_f32(in[0].data<float>(), in[1].data<float>(), f32_or_null(in[2]), in[3].data<float>(),
                               in[4].data<float>(), f32_or_null(out[0]), f32_or_null(out[1]), f32_or_null(out[2]), a.s,
                               a.plan, detail::scratch_ptr(out[3]));
}
void run_cumprod_scan(const ScanAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::cumprod_scan_f32(in[0].data<float>(), out[0].data<float>(), a.s, a.plan, detail::scratch_ptr(out[1]));
}
void run_cumprod_scan_bwd(const ScanAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::cumprod_scan_bwd_f32(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), out[0].data<float>(),
                                a.s, a.plan, detail::scratch_ptr(out[1]));
}

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
  const ScanAttrs fwd{s, kernels::plan_scan(opt, s)};
  detail::dispatch<run_linear_scan>(detail::OpKind::linear_scan, fwd, {a, b, h0},
                                    {h, h_last, detail::scratch(kernels::scan_scratch_bytes(s, fwd.plan))});

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
    const ScanAttrs bwd{s, kernels::plan_scan(opt, s)};
    detail::dispatch<run_linear_scan_bwd>(detail::OpKind::linear_scan_bwd, bwd, {as, hs, h0s, dh, dh_last},
                                          {da, db, dh0, detail::scratch(kernels::scan_scratch_bytes(s, bwd.plan))});
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
  const ScanAttrs fwd{s, kernels::plan_scan(opt, s)};
  detail::dispatch<run_cumprod_scan>(detail::OpKind::cumprod_scan, fwd, {a},
                                     {P, detail::scratch(kernels::scan_scratch_bytes(s, fwd.plan))});
  if (!autograd::needs_grad({a_in})) return P;
  const Tensor as = a.detach(), ps = P.detach();
  autograd::record(op, {a_in}, {P}, [=](const std::vector<Tensor>& g) {
    const Tensor dP = g[0].contiguous();
    Tensor da = Tensor::empty(as.shape());
    const ScanAttrs bwd{s, kernels::plan_scan(opt, s)};
    detail::dispatch<run_cumprod_scan_bwd>(detail::OpKind::cumprod_scan_bwd, bwd, {as, ps, dP},
                                           {da, detail::scratch(kernels::scan_scratch_bytes(s, bwd.plan))});
    return std::vector<Tensor>{da};
  });
  return P;
}

}  // namespace mmrec::ops
