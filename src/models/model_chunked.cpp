// Model::loss under "chunk" gradient checkpointing: the sequence runs in
// segments, each one autograd::checkpoint over the state carried into it, so
// that backward holds one segment's activations at a time while gradients
// flow through h, the memory slots and the chunk sums across segments.
#include <algorithm>

#include "autograd/checkpoint.h"
#include "autograd/tape.h"
#include "models/block.h"
#include "models/model.h"
#include "models/quant.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/shape.h"
#include "ops/view.h"

namespace mmrec {
namespace {

// One layer's state between segments. The memory is kept as the slots carried
// in from earlier calls (no history) and, after them, one tensor per segment
// that wrote slots: every slot is stored once, however many segments read it.
struct Carried {
  Tensor h, k_sum, v_sum;                // [B, D]
  Tensor base_k, base_v;                 // [B, S0, D]
  std::vector<Tensor> slots_k, slots_v;  // [B, n, D] each, oldest first
  // The newest slot tensors holding up to M slots (and the base's tail if they
  // hold fewer), oldest first.
  std::vector<Tensor> newest(const std::vector<Tensor>& slots, const Tensor& base, int64_t M) const {
    std::vector<Tensor> parts;
    int64_t rows = 0;
    for (size_t i = slots.size(); i-- > 0 && rows < M;) parts.push_back(slots[i]), rows += slots[i].size(1);
    if (rows < M && base.size(1) > 0) {
      const int64_t take = std::min(base.size(1), M - rows);
      parts.push_back(base.slice(1, base.size(1) - take, base.size(1)));
    }
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
};

// The newest M rows of the parts joined along axis 1 ([B, 0, D] when none).
Tensor join_newest(const std::vector<Tensor>& parts, int64_t B, int64_t D, int64_t M) {
  if (parts.empty()) return Tensor::zeros({B, 0, D});
  Tensor all = parts.size() == 1 ? parts[0] : ops::concat(parts, 1);
  const int64_t S = all.size(1);
  return S > M ? ops::slice(all, 1, S - M, S) : all;
}

}  // namespace

Tensor Model::chunked_loss(const Tensor& tokens, const Tensor& targets, State& state, int64_t ignore_index) const {
  const int64_t B = tokens.size(0), T = tokens.size(1), V = config_.vocab_size, D = config_.dim;
  const int64_t C = config_.chunk_size, M = config_.memory_slots, L = config_.layers;
  const int64_t seg = ckpt_.tokens > 0 ? ckpt_.tokens : C;
  const Tensor tok = tokens.contiguous();
  // Predicted tokens per segment, for the weights of the segments' mean losses.
  // With an ignore_index no token can take, they follow from the shape alone
  // (no host read of the targets: a captured step may replay this).
  const bool by_shape = ignore_index < 0 || ignore_index >= V;
  auto count_valid = [&](const Tensor& t, int64_t s0, int64_t n) {
    if (by_shape) return B * (s0 + n == T ? n - 1 : n);
    int64_t c = 0;
    const Tensor h = t.slice(1, s0, s0 + n).contiguous();
    for (int64_t i = 0; i < h.numel(); ++i) c += h.data<int64_t>()[i] != ignore_index;
    return c;
  };
  const int64_t valid = count_valid(targets, 0, T);

  std::vector<Carried> carried(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    const LayerState& s = state.layers[static_cast<size_t>(l)];
    carried[l] = {s.h, s.chunk_k_sum, s.chunk_v_sum, s.mem_keys, s.mem_values, {}, {}};
  }
  std::vector<Tensor> params;
  for (const auto& [name, p] : params_) params.push_back(p);

  // QAT: the observers move in a forward of their own over the whole call
  // (no grad, the layers in order, as without checkpointing), which records
  // each site call's scales; the segments and their recomputations replay
  // them in the same order, so that they quantize as the unsegmented step.
  ModelQuant* q = quant_.get();
  ModelQuant* replay = nullptr;
  bool moving = false;  // frozen observers give every call the same scales: nothing to record
  if (fake_quantizing(q))
    for (QuantSite* site : q->sites()) moving = moving || q->observers_enabled || !site->input.observed();
  if (moving) {
    autograd::NoGradGuard no_grad;
    const ops::TrainingActivations as_training;  // the activations' bits of the segments' training forwards
    q->clear_recorded();
    ObserverPassScope record(q, ModelQuant::ObserverPass::record);
    State probe = state;
    forward_call(tok, probe, nullptr, false);
    replay = q;
  }

  int64_t ct = state.layers.empty() ? 0 : state.layers[0].chunk_tokens;
  Tensor total;
  for (int64_t s0 = 0; s0 < T; s0 += seg) {
    const int64_t Ts = std::min(seg, T - s0);
    const Tensor seg_tokens = tok.slice(1, s0, s0 + Ts).contiguous();
    const Tensor seg_targets = targets.slice(1, s0, s0 + Ts).contiguous().reshape({B * Ts});
    const int64_t seg_valid = count_valid(targets, s0, Ts);
    // Each segment's mean loss weighted by its share of the predicted tokens.
    const float weight = valid ? static_cast<float>(seg_valid) / static_cast<float>(valid) : 0.0f;
    const int64_t written = M > 0 ? (ct + Ts) / C : 0;  // slots this segment writes
    std::vector<Tensor> inputs;
    std::vector<int64_t> parts;  // memory tensors per layer (keys; values alike)
    for (const Carried& c : carried) {
      const std::vector<Tensor> k = c.newest(c.slots_k, c.base_k, M), v = c.newest(c.slots_v, c.base_v, M);
      inputs.insert(inputs.end(), {c.h, c.k_sum, c.v_sum});
      inputs.insert(inputs.end(), k.begin(), k.end());
      inputs.insert(inputs.end(), v.begin(), v.end());
      parts.push_back(static_cast<int64_t>(k.size()));
    }
    // The replay positions this segment starts from (set by its first run).
    auto cursors = std::make_shared<std::vector<size_t>>();
    auto segment = [this, seg_tokens, seg_targets, parts, ct, weight, written, ignore_index, B, Ts, V, D, M, replay,
                    cursors](const std::vector<Tensor>& in) {
      ObserverPassScope scope(replay, ModelQuant::ObserverPass::replay);
      if (replay && cursors->empty()) *cursors = replay->replay_cursors();
      else if (replay) replay->set_replay_cursors(*cursors);
      State st;
      st.batch = B;
      size_t i = 0;
      for (int64_t n : parts) {
        LayerState ls;
        ls.h = in[i], ls.chunk_k_sum = in[i + 1], ls.chunk_v_sum = in[i + 2];
        i += 3;
        ls.mem_keys = join_newest({in.begin() + i, in.begin() + i + n}, B, D, M);
        i += n;
        ls.mem_values = join_newest({in.begin() + i, in.begin() + i + n}, B, D, M);
        i += n;
        ls.chunk_tokens = ct;
        st.layers.push_back(ls);
      }
      const Tensor logits = forward_call(seg_tokens, st, nullptr, /*state_graph=*/true);  // [B, Ts, V]
      std::vector<Tensor> out = {ops::scale(ops::cross_entropy(ops::reshape(logits, {B * Ts, V}), seg_targets,
                                                               ignore_index),
                                            weight)};
      for (const LayerState& ls : st.layers) {
        out.insert(out.end(), {ls.h, ls.chunk_k_sum, ls.chunk_v_sum});
        if (written == 0) continue;
        // The slots written here, as a copy of their own (scale by 1 is exact):
        // a view would keep the whole joined memory alive.
        const int64_t S = ls.mem_keys.size(1), n = std::min(written, S);
        out.push_back(ops::scale(ops::slice(ls.mem_keys, 1, S - n, S), 1.0f));
        out.push_back(ops::scale(ops::slice(ls.mem_values, 1, S - n, S), 1.0f));
      }
      return out;
    };
    // The last segment is backpropagated first, right after its forward:
    // it keeps its activations rather than run twice.
    const std::vector<Tensor> out =
        s0 + seg >= T ? segment(inputs) : autograd::checkpoint(segment, inputs, params, "checkpoint.chunk");
    total = total.defined() ? ops::add(total, out[0]) : out[0];
    size_t o = 1;
    for (Carried& c : carried) {
      c.h = out[o], c.k_sum = out[o + 1], c.v_sum = out[o + 2];
      o += 3;
      if (written == 0) continue;
      c.slots_k.push_back(out[o]);
      c.slots_v.push_back(out[o + 1]);
      o += 2;
    }
    ct = (ct + Ts) % C;
  }

  // The state after the call, detached as after any call.
  autograd::NoGradGuard no_grad;
  for (int64_t l = 0; l < L; ++l) {
    const Carried& c = carried[static_cast<size_t>(l)];
    LayerState& s = state.layers[static_cast<size_t>(l)];
    s.h = c.h.detach();
    s.chunk_k_sum = c.k_sum.detach();
    s.chunk_v_sum = c.v_sum.detach();
    s.mem_keys = join_newest(c.newest(c.slots_k, c.base_k, M), B, D, M).detach().contiguous();
    s.mem_values = join_newest(c.newest(c.slots_v, c.base_v, M), B, D, M).detach().contiguous();
    s.levels_kt = Tensor(), s.levels_v = Tensor();
    s.chunk_tokens = ct;
  }
  return total;
}

}  // namespace mmrec
