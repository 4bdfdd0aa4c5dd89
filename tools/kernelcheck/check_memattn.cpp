// Rows for memory attention (kernels/memattn.h): forward (output and
// weights) and backward (dq, dkt, dv) against the double references on odd
// shapes, q a strided view, with and without a mask, then gradient checks
// of ops::memattn.
#include <cmath>
#include <string>

#include "autograd/gradcheck.h"
#include "kernelcheck/kernelcheck.h"
#include "ops/kernels/memattn.h"
#include "ops/memattn.h"
#include "ops/view.h"
#include "tensor/random.h"

using namespace mmrec;

KERNELCHECK_SUITE(memattn) {
  Generator g(61);
  struct Case {
    int64_t B, T, D, H, S;
  };
  // The last three: generation's slot buffers (84 columns rounded up to 96:
  // read in place), and a training chunk of the bench config reading 84.
  for (const Case& c : {Case{1, 1, 8, 2, 0}, Case{1, 1, 3, 1, 1}, Case{2, 5, 12, 3, 7}, Case{3, 17, 20, 4, 19},
                        Case{2, 3, 32, 2, 16}, Case{1, 1, 512, 8, 84}, Case{1, 1, 512, 8, 96}, Case{8, 128, 512, 8, 84}})
    for (bool masked : {false, true}) {
      const std::string tag = masked ? "_masked" : "";
      if (!ctx.wants("memattn" + tag) && !ctx.wants("memattn_bwd" + tag)) continue;
      const int64_t d = c.D / c.H, n_p = c.B * c.H * c.T * kernels::memattn_weight_row(c.S);
      const Shape shape{c.B, c.T, c.D, c.H, c.S};
      const Tensor wide = rand_uniform({c.B, c.T, 2 * c.D}, g, -1, 1), q = wide.slice(2, c.D, 2 * c.D);
      const Tensor kt = rand_uniform({c.B * c.H, d, c.S}, g, -1, 1), v = rand_uniform({c.B * c.H, c.S, d}, g, -1, 1);
      Tensor mask = Tensor::zeros({c.S});
      for (int64_t s = 1; masked && s < c.S; s += 3) mask.data<float>()[s] = -1e30f;
      const float* mp = masked ? mask.data<float>() : nullptr;
      // out and dout rows twice as wide (a chunk's place in a longer sequence)
      const kernels::MemattnShape s{c.B, c.T, c.D, c.H, c.S, q.strides()[0], q.strides()[1], c.T * 2 * c.D, 2 * c.D,
                                    kernels::memattn_weight_row(c.S)};
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      Tensor out = Tensor::zeros({c.B, c.T, 2 * c.D}), p = Tensor::empty({n_p}), out_r = Tensor::zeros(out.shape()),
             p_r = Tensor::empty({n_p});
      const double tk = kc::time_us([&] {
        kernels::memattn_f32(q.data<float>(), kt.data<float>(), v.data<float>(), mp, scale, out.data<float>(),
                             p.data<float>(), s);
      });
      const double tr = kc::time_us([&] {
        kernels::ref::memattn_f32(q.data<float>(), kt.data<float>(), v.data<float>(), mp, scale, out_r.data<float>(),
                                  p_r.data<float>(), s);
      }, 1);
      ctx.compare("memattn" + tag, shape, out, out_r, 2e-6, tk, tr);
      ctx.compare("memattn_weights" + tag, shape, p, p_r, 2e-6, tk, tr);
      const Tensor dout = rand_uniform({c.B, c.T, 2 * c.D}, g, -1, 1).slice(2, 0, c.D);
      Tensor dq = Tensor::empty({c.B, c.T, c.D}), dk = Tensor::empty(kt.shape()), dv = Tensor::empty(v.shape());
      Tensor dq_r = Tensor::empty(dq.shape()), dk_r = Tensor::empty(kt.shape()), dv_r = Tensor::empty(v.shape());
      const double tb = kc::time_us([&] {
        kernels::memattn_bwd_f32(q.data<float>(), kt.data<float>(), v.data<float>(), p.data<float>(),
                                 dout.data<float>(), scale, dq.data<float>(), dk.data<float>(), dv.data<float>(), s);
      });
      const double tbr = kc::time_us([&] {
        kernels::ref::memattn_bwd_f32(q.data<float>(), kt.data<float>(), v.data<float>(), p.data<float>(),
                                      dout.data<float>(), scale, dq_r.data<float>(), dk_r.data<float>(),
                                      dv_r.data<float>(), s);
      }, 1);
      ctx.compare("memattn_bwd_dq" + tag, shape, dq, dq_r, 1e-5, tb, tbr);
      ctx.compare("memattn_bwd_dkt" + tag, shape, dk, dk_r, 1e-5, tb, tbr);
      ctx.compare("memattn_bwd_dv" + tag, shape, dv, dv_r, 1e-5, tb, tbr);
    }
  if (ctx.wants("memattn_grad")) {
    const int64_t B = 2, T = 3, D = 8, H = 2, S = 5, d = D / H;
    kc::grad_row(ctx, "memattn_grad", {B, T, D, H, S},
                 [&](const std::vector<Tensor>& in) { return ops::memattn(ops::slice(in[0], 2, D, 2 * D), in[1], in[2], H); },
                 {rand_uniform({B, T, 2 * D}, g, -1, 1).set_requires_grad(),
                  rand_uniform({B * H, d, S}, g, -1, 1).set_requires_grad(),
                  rand_uniform({B * H, S, d}, g, -1, 1).set_requires_grad()});
  }
}
