#include "models/block.h"

#include "autograd/tape.h"
#include "models/memory.h"
#include "models/profile.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/scan.h"
#include "ops/shape.h"
#include "ops/view.h"

namespace mmrec {
namespace {
using ops::Activation;

// ops::linear, through the quantization site when it is enabled, else
// through the packed weight when there is one and grad mode is off; x is cast
// to the weight's dtype (f32, or bf16 under Model::use_bf16).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Activation act, const kernels::PackedLinear* p,
              QuantSite* q = nullptr) {
  if (q && q->enabled) return quant_linear(*q, x, w, b, act);
  if (p && !autograd::grad_enabled()) return ops::linear(ops::cast(x, p->dtype()), *p);
  return ops::linear(ops::cast(x, w.dtype()), w, b, act);
}

QuantSite* site(BlockQuant* q, QuantSiteId id) { return q ? &(*q)[static_cast<size_t>(id)] : nullptr; }
}  // namespace

BlockPack pack_block(const BlockWeights& w, int64_t rows) {
  auto pk = [rows](const Tensor& wt, const Tensor& b, Activation act = Activation::none) {
    return kernels::PackedLinear(wt, b, act, rows);
  };
  return {pk(w.qkvz_w, w.qkvz_b),
          pk(w.gate_w, w.gate_b),
          pk(w.decay_fc1_w, w.decay_fc1_b, Activation::gelu),
          pk(w.decay_fc2_w, w.decay_fc2_b, Activation::sigmoid),
          pk(w.context_fc1_w, w.context_fc1_b, Activation::gelu),
          pk(w.context_fc2_w, w.context_fc2_b, Activation::sigmoid),
          pk(w.attn_out_w, w.attn_out_b),
          pk(w.ffn_fc1_w, w.ffn_fc1_b, Activation::gelu),
          pk(w.ffn_fc2_w, w.ffn_fc2_b)};
}

Tensor mdi_decay(const BlockWeights& w, const Tensor& z, const Tensor& k, const BlockPack* p, BlockQuant* q) {
  using Id = QuantSiteId;
  Tensor decay = linear(linear(z, w.decay_fc1_w, w.decay_fc1_b, Activation::gelu, p ? &p->decay_fc1 : nullptr,
                               site(q, Id::decay_fc1)),
                        w.decay_fc2_w, w.decay_fc2_b, Activation::sigmoid, p ? &p->decay_fc2 : nullptr,
                        site(q, Id::decay_fc2));
  Tensor context =
      linear(linear(k, w.context_fc1_w, w.context_fc1_b, Activation::gelu, p ? &p->context_fc1 : nullptr,
                    site(q, Id::context_fc1)),
             w.context_fc2_w, w.context_fc2_b, Activation::sigmoid, p ? &p->context_fc2 : nullptr,
             site(q, Id::context_fc2));
  return ops::clamp(ops::mul(decay, context), 1e-6f, 1.0f - 1e-6f);
}

std::pair<Tensor, Tensor> sequential_recurrence(const BlockWeights& w, const Tensor& z, const Tensor& gamma,
                                                const Tensor& h0, const BlockPack* pack, BlockQuant* quant) {
  const int64_t T = z.size(1);
  std::vector<Tensor> hs;
  hs.reserve(static_cast<size_t>(T));
  // One split node per input rather than T slices (whose backward would each
  // write a full [B, T, D] gradient).
  const std::vector<int64_t> ones(static_cast<size_t>(T), 1);
  const std::vector<Tensor> zs = ops::split(z, ones, 1), gs = ops::split(gamma, ones, 1);
  Tensor h = h0;  // [B, D]
  for (int64_t t = 0; t < T; ++t) {
    Tensor zt = ops::squeeze(zs[static_cast<size_t>(t)], 1);  // [B, D]
    Tensor gt = ops::squeeze(gs[static_cast<size_t>(t)], 1);  // [B, D]
    h = ops::add(ops::sigmoid_mul(linear(h, w.gate_w, w.gate_b, Activation::none, pack ? &pack->gate : nullptr,
                                         site(quant, QuantSiteId::gate)),
                                  zt),
                 ops::mul(gt, h));
    hs.push_back(ops::unsqueeze(h, 1));
  }
  return {T == 1 ? hs[0] : ops::concat(hs, 1), h};
}

Tensor block_forward(const BlockWeights& w, const ModelConfig& cfg, const Tensor& x, const LayerState& in,
                     LayerState& out, const BlockPack* pack, bool state_graph, BlockQuant* quant,
                     const ops::SlotMemory* slots) {
  using Id = QuantSiteId;
  const BlockPack* p = pack && !autograd::grad_enabled() ? pack : nullptr;
  Tensor xn, q, k, v, z;
  {
    prof::Scope s("fwd.norm_qkvz");
    QuantSite* sq = site(quant, Id::qkvz);
    // [B, T, D], in the GEMM weights' dtype (read by qkvz and the gate), or
    // f32 into a quantization site
    xn = ops::rmsnorm(x, w.norm1, cfg.norm_eps);
    if (!(sq && sq->enabled)) xn = ops::cast(xn, w.qkvz_w.dtype());
    if (p || (sq && sq->enabled)) {
      const int64_t D = cfg.dim;
      const Tensor y = sq && sq->enabled ? quant_linear(*sq, xn, w.qkvz_w, w.qkvz_b, Activation::none)
                                         : ops::linear(xn, p->qkvz);
      const std::vector<Tensor> qkvz = ops::split(y, {D, D, D, D}, -1);
      q = qkvz[0], k = qkvz[1], v = qkvz[2], z = qkvz[3];
    } else {
      auto qkvz = ops::qkvz(xn, w.qkvz_w, w.qkvz_b);
      q = qkvz[0], k = qkvz[1], v = qkvz[2], z = qkvz[3];
    }
  }
  Tensor gamma;
  {
    prof::Scope s("fwd.mdi");
    gamma = mdi_decay(w, z, k, p, quant);  // [B, T, D]
  }
  Tensor h, h_last;
  if (cfg.recurrence == "sequential") {
    prof::Scope s("fwd.recurrence_sequential");
    std::tie(h, h_last) = sequential_recurrence(w, z, gamma, in.h, p, quant);
  } else {
    prof::Scope s("fwd.recurrence_scan");
    // σ(gate(x̂)) ⊙ z
    Tensor u = ops::sigmoid_mul(
        linear(xn, w.gate_w, w.gate_b, Activation::none, p ? &p->gate : nullptr, site(quant, Id::gate)), z);
    std::tie(h, h_last) = ops::linear_scan(gamma, u, in.h);
  }
  Tensor c;
  {
    prof::Scope s("fwd.memory");
    const Tensor m = slots ? slot_memory_pass(q, k, v, *slots) : memory_pass(q, k, v, in, out, cfg, state_graph);
    c = linear(m, w.attn_out_w, w.attn_out_b, Activation::none,
               p ? &p->attn_out : nullptr, site(quant, Id::attn_out));
  }
  out.h = state_graph ? h_last : h_last.detach();
  prof::Scope s("fwd.ffn");
  Tensor x1 = ops::add(ops::add(x, h), c);
  Tensor f = linear(linear(ops::rmsnorm(x1, w.norm2, cfg.norm_eps), w.ffn_fc1_w, w.ffn_fc1_b, Activation::gelu,
                           p ? &p->ffn_fc1 : nullptr, site(quant, Id::ffn_fc1)),
                    w.ffn_fc2_w, w.ffn_fc2_b, Activation::none, p ? &p->ffn_fc2 : nullptr, site(quant, Id::ffn_fc2));
  return ops::add(x1, f);
}

}  // namespace mmrec
