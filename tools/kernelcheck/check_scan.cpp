// Rows for the associative scan: linear_scan and cumprod_scan, forward and
// backward, each algorithm (sequential, chunked with an odd block) against
// the double-precision reference over odd [B, T, D], then gradient checks.
#include <algorithm>
#include <cmath>
#include <functional>

#include "autograd/gradcheck.h"
#include "kernelcheck/kernelcheck.h"
#include "ops/kernels/scan.h"
#include "ops/scan.h"
#include "tensor/random.h"

using namespace mmrec;
using kc::grad_row;
using Fn = std::function<void()>;
using ops::ScanMode;

namespace {
// Decays spanning (1e-6, 1 - 1e-6): the sigmoid of a wide normal.
Tensor decays(const Shape& s, Generator& g) {
  Tensor a = randn(s, g, 0.0f, 6.0f);
  float* p = a.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) p[i] = std::clamp(1.0f / (1.0f + std::exp(-p[i])), 1e-6f, 1.0f - 1e-6f);
  return a;
}

void row(kc::Context& ctx, const std::string& name, const Shape& shape, const Fn& kernel, const Fn& ref,
         const Tensor& got, const Tensor& want, double tol) {
  const double tk = kc::time_us(kernel, 3), tr = kc::time_us(ref, 1);
  ctx.compare(name, shape, got, want, tol, tk, tr);
}


Tensor times(const Tensor& x, const Tensor& y) {  // x ⊙ y, for comparing a ⊙ da
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.data<float>()[i] = x.data<float>()[i] * y.data<float>()[i];
  return out;
}
}  // namespace

KERNELCHECK_SUITE(scan) {
  Generator g(21);
  // seq_stream: non-temporal stores, taken where D % 16 == 0.
  const std::pair<const char*, ops::ScanOptions> algos[] = {
      {"seq", {ScanMode::sequential, 0}}, {"chunked", {ScanMode::chunked, 13}}, {"seq_stream", {ScanMode::sequential, 0}}};
  for (Shape sh : {Shape{1, 1, 1}, Shape{3, 17, 3}, Shape{2, 1000, 17}, Shape{1, 33, 1000}, Shape{1, 4099, 16},
                   Shape{3, 0, 5}, Shape{0, 4, 3}}) {
    const kernels::ScanShape s{sh[0], sh[1], sh[2]};
    const Shape st{sh[0], sh[2]};
    const double tol = 1e-5 * (1.0 + static_cast<double>(s.T) / 1000.0);  // float sums drift ~T ulps
    Tensor a = decays(sh, g), b = randn(sh, g), h0 = randn(st, g), dh = randn(sh, g), dhl = randn(st, g);
    Tensor h_ref = Tensor::empty(sh), hl_ref = Tensor::empty(st), P_ref = Tensor::empty(sh);
    kernels::ref::linear_scan_f32(a.data<float>(), b.data<float>(), h0.data<float>(), h_ref.data<float>(),
                                  hl_ref.data<float>(), s);
    kernels::ref::cumprod_scan_f32(a.data<float>(), P_ref.data<float>(), s);
    for (auto& [algo, opt] : algos) {
      auto plan = kernels::plan_scan(opt, s);
      plan.stream = std::string(algo) == "seq_stream";
      const std::string sfx = std::string("_") + algo;
      if (ctx.wants("linear_scan_fwd" + sfx)) {
        Tensor h = Tensor::empty(sh), hl = Tensor::empty(st), want_h = Tensor::empty(sh), want_l = Tensor::empty(st);
        row(ctx, "linear_scan_fwd" + sfx, sh,
            [&] { kernels::linear_scan_f32(a.data<float>(), b.data<float>(), h0.data<float>(), h.data<float>(), hl.data<float>(), s, plan); },
            [&] { kernels::ref::linear_scan_f32(a.data<float>(), b.data<float>(), h0.data<float>(), want_h.data<float>(), want_l.data<float>(), s); },
            h, want_h, tol);
        ctx.compare("linear_scan_fwd_h_last" + sfx, st, hl, want_l, tol, 0, 0);
      }
      if (ctx.wants("linear_scan_bwd" + sfx)) {
        Tensor da = Tensor::empty(sh), db = Tensor::empty(sh), dh0 = Tensor::empty(st);
        Tensor wa = Tensor::empty(sh), wb = Tensor::empty(sh), wh0 = Tensor::empty(st);
        row(ctx, "linear_scan_bwd_da" + sfx, sh,
            [&] { kernels::linear_scan_bwd_f32(a.data<float>(), h_ref.data<float>(), h0.data<float>(), dh.data<float>(), dhl.data<float>(),
                                               da.data<float>(), db.data<float>(), dh0.data<float>(), s, plan); },
            [&] { kernels::ref::linear_scan_bwd_f32(a.data<float>(), h_ref.data<float>(), h0.data<float>(), dh.data<float>(), dhl.data<float>(),
                                                    wa.data<float>(), wb.data<float>(), wh0.data<float>(), s); },
            da, wa, tol);
        ctx.compare("linear_scan_bwd_db" + sfx, sh, db, wb, tol, 0, 0);
        ctx.compare("linear_scan_bwd_dh0" + sfx, st, dh0, wh0, tol, 0, 0);
      }
      if (ctx.wants("cumprod_scan_fwd" + sfx)) {
        Tensor P = Tensor::empty(sh), want = Tensor::empty(sh);
        row(ctx, "cumprod_scan_fwd" + sfx, sh,
            [&] { kernels::cumprod_scan_f32(a.data<float>(), P.data<float>(), s, plan); },
            [&] { kernels::ref::cumprod_scan_f32(a.data<float>(), want.data<float>(), s); }, P, want, tol);
      }
      if (ctx.wants("cumprod_scan_bwd" + sfx)) {
        // da = dL / a: compare a ⊙ da, which is not amplified where a is tiny.
        Tensor da = Tensor::empty(sh), want = Tensor::empty(sh);
        const double tk = kc::time_us([&] { kernels::cumprod_scan_bwd_f32(a.data<float>(), P_ref.data<float>(), dh.data<float>(), da.data<float>(), s, plan); }, 3);
        const double tr = kc::time_us([&] { kernels::ref::cumprod_scan_bwd_f32(a.data<float>(), P_ref.data<float>(), dh.data<float>(), want.data<float>(), s); }, 1);
        ctx.compare("cumprod_scan_bwd" + sfx + " (a*da)", sh, times(a, da), times(a, want), tol, tk, tr);
      }
    }
  }
  // Gradients of the ops (through h and h_last), both algorithms.
  for (auto& [algo, opt0] : algos) {
    if (std::string(algo) == "seq_stream") continue;
    const ops::ScanOptions opt{opt0.mode, 3};
    const std::string sfx = std::string("_") + algo;
    Tensor a = rand_uniform({2, 7, 3}, g, 0.2f, 0.95f).set_requires_grad();
    Tensor b = rand_uniform({2, 7, 3}, g, -1.0f, 1.0f).set_requires_grad();
    Tensor h0 = rand_uniform({2, 3}, g, -1.0f, 1.0f).set_requires_grad();
    grad_row(ctx, "linear_scan_grad_h" + sfx, {2, 7, 3},
             [opt](auto& in) { return ops::linear_scan(in[0], in[1], in[2], opt).first; }, {a, b, h0});
    grad_row(ctx, "linear_scan_grad_h_last" + sfx, {2, 7, 3},
             [opt](auto& in) { return ops::linear_scan(in[0], in[1], in[2], opt).second; }, {a, b, h0});
    grad_row(ctx, "cumprod_scan_grad" + sfx, {2, 7, 3}, [opt](auto& in) { return ops::cumprod_scan(in[0], opt); },
             {a});
  }
}
