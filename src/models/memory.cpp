#include "models/memory.h"

#include <algorithm>
#include <optional>

#include "autograd/tape.h"
#include "models/profile.h"
#include "ops/elementwise.h"
#include "ops/memattn.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/view.h"

namespace mmrec {
namespace {

int64_t groups_of(int64_t slots, int64_t level) {
  int64_t g = 1;
  for (int64_t l = 0; l < level; ++l) g *= 4;
  return (slots + g - 1) / g;
}

Tensor concat_nonempty(const std::vector<Tensor>& xs, int64_t axis) {
  std::vector<Tensor> parts;
  for (const Tensor& x : xs)
    if (x.defined() && x.size(axis) > 0) parts.push_back(x);
  if (parts.empty()) return xs[0];
  if (parts.size() == 1) return parts[0];
  return ops::concat(parts, axis);
}

// A piece of the call inside one chunk: tokens [s, e); `completes` when the
// chunk ends with it (then a slot is written after the piece).
struct Piece {
  int64_t s, e;
  bool completes;
};

// The state after a call with its history kept ("chunk" checkpointing): the
// newest M slots of all_k/all_v [B, avail, D] and the running chunk sums.
void write_state_with_graph(const Tensor& k, const Tensor& v, const LayerState& in, LayerState& out,
                            const Tensor& all_k, const Tensor& all_v, int64_t avail, int64_t M, const Piece& last,
                            bool one_piece) {
  const int64_t B = k.size(0), D = k.size(2), lo = std::max<int64_t>(0, avail - M);
  out.mem_keys = ops::slice(all_k, 1, lo, avail);
  out.mem_values = ops::slice(all_v, 1, lo, avail);
  out.levels_kt = Tensor(), out.levels_v = Tensor();
  if (last.completes) {
    out.chunk_k_sum = Tensor::zeros({B, D});
    out.chunk_v_sum = Tensor::zeros({B, D});
    out.chunk_tokens = 0;
    return;
  }
  const Tensor ks = ops::sum(ops::slice(k, 1, last.s, last.e), 1), vs = ops::sum(ops::slice(v, 1, last.s, last.e), 1);
  out.chunk_k_sum = one_piece ? ops::add(in.chunk_k_sum, ks) : ks;
  out.chunk_v_sum = one_piece ? ops::add(in.chunk_v_sum, vs) : vs;
  out.chunk_tokens = (one_piece ? in.chunk_tokens : 0) + (last.e - last.s);
}

}  // namespace

int64_t hds_total_slots(int64_t slots, int64_t levels) {
  int64_t n = 0;
  for (int64_t l = 0; l < levels; ++l) n += groups_of(slots, l);
  return n;
}

Tensor hds_pooling(int64_t slots, int64_t levels) {
  // Built on the host and copied in once: a constant of a captured graph.
  const int64_t cols = hds_total_slots(slots, levels);
  std::vector<float> p(static_cast<size_t>(slots * cols), 0.0f);
  int64_t col = 0, group = 1;
  for (int64_t l = 0; l < levels; ++l, group *= 4) {
    for (int64_t lo = 0; lo < slots; lo += group, ++col) {
      const int64_t hi = std::min(slots, lo + group);
      for (int64_t s = lo; s < hi; ++s) p[static_cast<size_t>(s * cols + col)] = 1.0f / static_cast<float>(hi - lo);
    }
  }
  return Tensor::from_vector(p, {slots, cols});
}

MemoryLevels memory_levels(const Tensor& mem_k, const Tensor& mem_v, int64_t heads, int64_t levels) {
  const int64_t B = mem_k.size(0), S = mem_k.size(1), D = mem_k.size(2), H = heads, d = D / H;
  // Levels in the transposed layout [B, D, St]: viewed as [B*H, d, St] this
  // is already Kᵀ per head.
  Tensor kt, vt;
  int64_t St = S;
  if (levels == 1) {
    kt = ops::reshape(ops::transpose(mem_k, 1, 2), {B * H, d, S});
    vt = ops::reshape(ops::transpose(mem_v, 1, 2), {B * H, d, S});
  } else {
    const Tensor pt = hds_pooling(S, levels);  // [S, St]
    St = pt.size(1);
    kt = ops::reshape(ops::matmul(ops::transpose(mem_k, 1, 2), pt), {B * H, d, St});
    vt = ops::reshape(ops::matmul(ops::transpose(mem_v, 1, 2), pt), {B * H, d, St});
  }
  return {kt, ops::contiguous(ops::transpose(vt, 1, 2))};
}

Tensor memory_read(const Tensor& q, const MemoryLevels& mem, int64_t heads, const Tensor& mask) {
  return ops::memattn(q, mem.kt, mem.v, heads, mask);  // [B, Tc, D], q's heads read in place
}

Tensor memory_attention(const Tensor& q, const Tensor& mem_k, const Tensor& mem_v, int64_t heads,
                        int64_t levels) {
  return memory_read(q, memory_levels(mem_k, mem_v, heads, levels), heads);
}

Tensor slot_memory_pass(const Tensor& q, const Tensor& k, const Tensor& v, const ops::SlotMemory& mem) {
  const int64_t T = q.size(1), C = mem.chunk;
  check(T == 1 || T % C == 0, "slot_memory_pass: a call is one token or whole chunks of ", C, ", got ", T,
        " tokens");
  auto read = [&](const Tensor& qp) {
    return mem.mask.size(0) == 0 ? Tensor::zeros(qp.shape()) : memory_read(qp, {mem.kt, mem.v}, mem.heads, mem.mask);
  };
  if (T == 1) {
    const Tensor out = read(q);
    ops::memory_slots_update(mem, k, v);
    return out;
  }
  // Chunk by chunk: each reads the memory as it stood when it began.
  std::vector<Tensor> outs;
  for (int64_t s = 0; s < T; s += C) {
    outs.push_back(read(ops::slice(q, 1, s, s + C)));
    ops::memory_slots_update(mem, k.slice(1, s, s + C), v.slice(1, s, s + C));
  }
  return outs.size() == 1 ? outs[0] : ops::concat(outs, 1);
}

Tensor memory_pass(const Tensor& q, const Tensor& k, const Tensor& v, const LayerState& in, LayerState& out,
                   const ModelConfig& cfg, bool state_graph) {
  const int64_t B = q.size(0), T = q.size(1), D = q.size(2);
  const int64_t C = cfg.chunk_size, M = cfg.memory_slots, ct = in.chunk_tokens;
  check(T >= 1, "memory_pass: empty call");

  std::vector<Piece> pieces;
  for (int64_t pos = 0, fill = ct; pos < T;) {
    const int64_t len = std::min(T - pos, C - fill);
    pieces.push_back({pos, pos + len, fill + len == C});
    fill = (fill + len) % C;
    pos += len;
  }

  // Slots written in this call (differentiable), after the carried ones.
  // k and v are split once (one autograd node each, not one per piece).
  std::vector<Tensor> keys = {in.mem_keys}, values = {in.mem_values};
  if (M > 0) {
    prof::Scope scope("fwd.memory.write");
    const int64_t first = ct > 0 ? pieces[0].e : 0;  // tokens finishing the chunk begun in an earlier call
    const int64_t n_full = (T - first) / C;
    const std::vector<int64_t> sizes = {first, n_full * C, T - first - n_full * C};
    const auto kp = ops::split(k, sizes, 1), vp = ops::split(v, sizes, 1);
    if (ct > 0 && pieces[0].completes) {
      const float inv = 1.0f / static_cast<float>(C);
      keys.push_back(ops::unsqueeze(ops::scale(ops::add(in.chunk_k_sum, ops::sum(kp[0], 1)), inv), 1));
      values.push_back(ops::unsqueeze(ops::scale(ops::add(in.chunk_v_sum, ops::sum(vp[0], 1)), inv), 1));
    }
    if (n_full > 0) {
      keys.push_back(ops::mean(ops::reshape(kp[1], {B, n_full, C, D}), 2));
      values.push_back(ops::mean(ops::reshape(vp[1], {B, n_full, C, D}), 2));
    }
  }
  const Tensor all_k = concat_nonempty(keys, 1), all_v = concat_nonempty(values, 1);  // [B, S0 + W, D]

  std::vector<int64_t> piece_sizes;
  for (const Piece& p : pieces) piece_sizes.push_back(p.e - p.s);
  const std::vector<Tensor> qp = pieces.size() == 1 ? std::vector<Tensor>{q} : ops::split(q, piece_sizes, 1);
  // The levels of the carried memory (constants: the state is detached), from
  // the state's cache when it has them; generation reads them every token.
  const int64_t S0 = in.mem_keys.size(1), H = cfg.heads;
  const int64_t St0 = hds_total_slots(S0, cfg.hds_levels);
  MemoryLevels carried;
  if (S0 > 0 && in.levels_kt.defined() && in.levels_v.defined() && in.levels_kt.shape() == Shape{B * H, D / H, St0} &&
      in.levels_v.shape() == Shape{B * H, St0, D / H}) {
    carried = {in.levels_kt, in.levels_v};
  } else if (S0 > 0) {
    const bool constant = !in.mem_keys.requires_grad() && !in.mem_values.requires_grad();
    std::optional<autograd::NoGradGuard> no_grad;
    if (constant) no_grad.emplace();
    carried = memory_levels(in.mem_keys, in.mem_values, H, cfg.hds_levels);
  }
  std::vector<Tensor> outs;
  int64_t avail = S0;  // slots of all_k that exist when the piece begins
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    const int64_t lo = std::max<int64_t>(0, avail - M);
    if (avail - lo == 0) {
      outs.push_back(Tensor::zeros({B, p.e - p.s, D}));
    } else {
      prof::Scope scope("fwd.memory.attention");
      if (avail == S0)
        outs.push_back(memory_read(qp[i], carried, H));
      else
        outs.push_back(memory_attention(qp[i], ops::slice(all_k, 1, lo, avail), ops::slice(all_v, 1, lo, avail),
                                        H, cfg.hds_levels));
    }
    if (p.completes && M > 0) ++avail;
  }

  Tensor result = outs.size() == 1 ? outs[0] : ops::concat(outs, 1);  // [B, T, D]

  if (state_graph) {
    write_state_with_graph(k, v, in, out, all_k, all_v, avail, M, pieces.back(), pieces.size() == 1);
    return result;
  }
  // The state after the call, detached.
  autograd::NoGradGuard no_grad;
  const int64_t lo = std::max<int64_t>(0, avail - M);
  out.mem_keys = all_k.detach().slice(1, lo, avail).contiguous();
  out.mem_values = all_v.detach().slice(1, lo, avail).contiguous();
  if (avail == S0) {
    out.levels_kt = carried.kt, out.levels_v = carried.v;  // the memory did not change
  } else {
    const MemoryLevels next = memory_levels(out.mem_keys, out.mem_values, H, cfg.hds_levels);
    out.levels_kt = next.kt, out.levels_v = next.v;
  }
  const Piece last = pieces.back();
  if (last.completes) {
    out.chunk_k_sum = Tensor::zeros({B, D});
    out.chunk_v_sum = Tensor::zeros({B, D});
    out.chunk_tokens = 0;
  } else {
    const bool carried = pieces.size() == 1;  // the call never finished the chunk it began in
    Tensor ks = ops::sum(k.detach().slice(1, last.s, last.e), 1);
    Tensor vs = ops::sum(v.detach().slice(1, last.s, last.e), 1);
    out.chunk_k_sum = carried ? ops::add(in.chunk_k_sum, ks) : ks;
    out.chunk_v_sum = carried ? ops::add(in.chunk_v_sum, vs) : vs;
    out.chunk_tokens = (carried ? ct : 0) + (last.e - last.s);
  }
  return result;
}

}  // namespace mmrec
