// The linear layer's graph passes: see linear_passes.h.
#include "ops/linear_passes.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "ops/common.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/elementwise_attrs.h"
#include "ops/fuse_pointwise.h"

namespace mmrec::ops::detail {
namespace {

// The sum post-op fusions take f32 GEMMs only: on AMX cores oneDNN's bf16
// brgemm adds a few-row, long-K product into dst in another order with the
// sum post-op than without (2.3e-5 apart at [8, 4096, 1024]), and a replay
// must equal the eager run bit for bit.
bool f32_operands(const autograd::Call& c) {
  return c.in.size() >= 2 && c.in[0].dtype() == DType::f32 && c.in[1].dtype() == DType::f32;
}

// The sum post-op (dst += a · b) rounds as the unfused add does only where
// oneDNN 2.6 runs f32 matmuls on its AVX-512 brgemm kernels, which add dst
// after the whole K reduction (kernelcheck linear_dx_accumulate_*,
// linear_dw_accumulate_*). On AVX2 its gemm kernels start the K loop from dst
// (beta = 1): dY·W and dYᵀ·X land 1e-6 to 1e-2 away from the chain. There
// gemm_accumulate leaves the add alone and gemm_residual uses the binary
// post-op (the product's rounding, then the add's) instead.
bool sum_post_op_exact() { return kernels::dnnl_has_avx512(); }

// A whole buffer of f32.
bool whole_f32(const Tensor& t) { return t.dtype() == DType::f32 && autograd::whole_buffer(t); }

// The fused bias gradient: act_backward's inputs (dy, saved), its output dx,
// then col_sum's outputs (db, its scratch).
struct BiasGradAttrs {
  Activation act;
};
void run_bias_grad(const BiasGradAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor dx = out[0], db = out[1];
  kernels::act_backward_col_sum(a.act, in[0], in[1], dx, db, scratch_ptr(out[2]));
}
constexpr autograd::KernelFn kBiasGradRun = &autograd::kernel_thunk<BiasGradAttrs, run_bias_grad>;

// The rematerialized gelu made with its backward: inputs (dy, saved),
// outputs (y, dx, and with `sums` db and its scratch).
struct RematBackwardAttrs {
  bool sums;
};
void run_remat_backward(const RematBackwardAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor y = out[0], dx = out[1];
  if (!a.sums) {
    kernels::gelu_fwd_bwd_f32(in[1].data<float>(), in[0].data<float>(), y.data<float>(), dx.data<float>(),
                              in[0].numel());
    return;
  }
  Tensor db = out[2];
  kernels::gelu_remat_backward_col_sum(in[0], in[1], y, dx, db, scratch_ptr(out[3]));
}
constexpr autograd::KernelFn kRematBackwardRun = &autograd::kernel_thunk<RematBackwardAttrs, run_remat_backward>;

bool same_view(const Tensor& a, const Tensor& b) {
  return storage_of(a) == storage_of(b) && a.offset() == b.offset() && a.shape() == b.shape() &&
         a.strides() == b.strides() && a.dtype() == b.dtype();
}

}  // namespace

// Graph pass: a GEMM into a temporary that only feeds a gradient
// accumulation (g += t, the tape summing a weight's per-use gradients)
// becomes one GEMM with oneDNN's sum post-op into g (g += a · b): one pass
// over g instead of writing t and reading t and g.
size_t fuse_gemm_accumulate(std::vector<autograd::Call>& calls, const TemporaryFn& temporary) {
  if (!sum_post_op_exact()) return 0;
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i + 1 < calls.size(); ++i) {
    autograd::Call& c = calls[i];
    if (c.kind != OpKind::gemm || !f32_operands(c)) continue;
    const Tensor& t = c.out[0];
    const Storage* ts = t.impl()->storage.get();
    if (!temporary(ts) || ix[ts].uses() != 2 || t.offset() != 0 || !t.is_contiguous()) continue;
    // The accumulation reading t, with nothing touching its target in between.
    size_t j = i + 1;
    for (; j < calls.size(); ++j) {
      const autograd::Call& d = calls[j];
      if (d.kind == OpKind::grad_accumulate && d.in[0].impl()->storage.get() == ts) break;
    }
    if (j == calls.size()) continue;
    const Tensor& g = calls[j].out[0];
    const Storage* gs = g.impl()->storage.get();
    if (g.shape() != t.shape() || !g.is_contiguous() || g.dtype() != DType::f32 || calls[j].in[0].shape() != t.shape())
      continue;
    const autograd::BufferUses& gu = ix[gs];
    bool clear = true;
    for (const std::vector<size_t>* v : {&gu.readers, &gu.writers})
      for (size_t k : *v) clear &= k <= i || k >= j;
    if (!clear) continue;
    LinearAttrs a;
    std::memcpy(&a, c.attrs.bytes, sizeof a);
    if (a.act != Activation::none || a.accumulate) continue;
    a.accumulate = true;
    c.attrs = autograd::Attrs::of(a);
    c.out[0] = g;
    drop[j] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}


// Graph pass: a linear (or gemm) call into a temporary t whose only reader is
// a residual add(r, t) (or add(t, r); in backward the tape's g = copy(r);
// g += t, fused), r a temporary that dies there, becomes the GEMM
// accumulating into r by oneDNN's sum post-op (r += x wᵀ + b), run where the
// add ran; later readers of the add's output read r. One write of the
// product instead of writing t, then reading t and r and writing the sum.
// Where r stays live (training's FFN residual: the second norm's backward
// reads it), the GEMM writes the add's output o = (x wᵀ + b) + r with
// oneDNN's binary post-op reading r: the same two roundings, one pass less.
size_t fuse_gemm_residual(std::vector<autograd::Call>& calls, const TemporaryFn& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    if ((calls[i].kind != OpKind::linear && calls[i].kind != OpKind::gemm) || drop[i] || !f32_operands(calls[i]))
      continue;
    LinearAttrs a;
    std::memcpy(&a, calls[i].attrs.bytes, sizeof a);
    const Tensor t = calls[i].out[0];
    const Storage* ts = t.impl()->storage.get();
    // K = 0 sums the bias in double (gemm_k0): not the add's rounding.
    if (a.act != Activation::none || a.accumulate || a.residual != 0 || calls[i].in[0].shape().back() == 0) continue;
    if (!temporary(ts) || ix[ts].uses() != 2 || !whole_f32(t)) continue;
    const size_t j = ix[ts].last();
    autograd::Call& add = calls[j];
    if (j <= i || !adds_two(add)) continue;
    const Tensor r = add.in[0].impl()->storage.get() == ts ? add.in[1] : add.in[0], o = add.out[0];
    const Storage *rs = r.impl()->storage.get(), *os = o.impl()->storage.get();
    if (rs == ts || !temporary(os) || ix[os].first() != j) continue;
    if (!whole_f32(r) || !whole_f32(o) || r.numel() != t.numel() || o.numel() != t.numel()) continue;
    // The GEMM reads its inputs at j instead of i: nothing in between may
    // write them. It may write r (the sum post-op) where r dies at the add
    // and is none of them; else it reads r (the binary post-op).
    bool clear = true, reads_r = false;
    for (const Tensor& x : calls[i].in) {
      if (!x.defined()) continue;
      const Storage* xs = x.impl()->storage.get();
      reads_r |= xs == rs;
      for (size_t k : ix[xs].writers) clear &= k <= i || k >= j;
    }
    if (!clear) continue;
    const bool dies = temporary(rs) && ix[rs].last() == j && !reads_r && sum_post_op_exact();
    autograd::Call gemm = std::move(calls[i]);
    drop[i] = true;
    if (!dies) {
      a.residual = add.kind == OpKind::binary ? 3 : 4;
      gemm.attrs = autograd::Attrs::of(a);
      gemm.in.push_back(r.as_strided(t.shape(), t.strides(), 0));  // value ids: renumbered after the passes
      gemm.out[0] = o.as_strided(t.shape(), t.strides(), 0);
      add = std::move(gemm);
      ++fused;
      continue;
    }
    a.accumulate = true;
    a.residual = add.kind == OpKind::binary ? 1 : 2;
    gemm.attrs = autograd::Attrs::of(a);
    gemm.out[0] = r.as_strided(t.shape(), t.strides(), 0);
    add = std::move(gemm);
    for (size_t k = j + 1; k < calls.size(); ++k)
      for (std::vector<Tensor>* v : {&calls[k].in, &calls[k].out})
        for (Tensor& x : *v)
          if (x.defined() && x.impl()->storage.get() == os) x = r.as_strided(x.shape(), x.strides(), x.offset());
    // r takes over o's uses (all at j or later: r's lists stay in order).
    autograd::BufferUses &ru = ix[rs], &ou = ix[os];
    ru.readers.insert(ru.readers.end(), ou.readers.begin(), ou.readers.end());
    ru.writers.insert(ru.writers.end(), ou.writers.begin(), ou.writers.end());
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::string describe_gemm(const autograd::Call& c) {
  LinearAttrs a;
  std::memcpy(&a, c.attrs.bytes, sizeof a);
  const std::string kind = c.kind == OpKind::gemm ? "gemm" : "linear";
  if (a.residual == 3) return kind + " -> binary.add (2 calls, oneDNN's binary post-op adding the residual)";
  if (a.residual == 4)
    return kind + " -> copy -> grad_accumulate (3 calls, oneDNN's binary post-op adding the gradient it is added to)";
  if (!a.accumulate) return "";
  if (a.residual == 2)
    return kind + " -> copy -> grad_accumulate (3 calls, oneDNN's sum post-op into the gradient it is added to)";
  if (a.residual == 1) return kind + " -> binary.add (2 calls, oneDNN's sum post-op into the residual)";
  return "gemm -> grad_accumulate (2 calls, oneDNN's sum post-op into the gradient)";
}
// Graph pass: act_backward writing dx, a temporary it alone writes, and the
// col_sum of that dx (a linear layer's bias gradient) become one call at
// act_backward's place that makes each block of dx and adds it to db while
// it is in cache: one read of dx less. The GEMMs that read dx (dX, dW) still
// find it whole. db and col_sum's scratch are made earlier than they were,
// so nothing before col_sum may touch them.
size_t fuse_bias_grad(std::vector<autograd::Call>& calls, const TemporaryFn& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    autograd::Call& c = calls[i];
    if (c.kind != OpKind::act_backward || c.run == kBiasGradRun || c.out.size() != 1) continue;
    const Tensor dx = c.out[0];
    const Storage* gs = storage_of(dx);
    const Activation act = attrs_of_call<LinearAttrs>(c).act;
    if (act == Activation::none || !temporary(gs) || ix[gs].writers.size() != 1 || !whole_f32(dx) || dx.dim() != 2)
      continue;
    size_t j = 0;
    for (size_t r : ix[gs].readers)
      if (r > i && calls[r].kind == OpKind::col_sum && calls[r].in[0].shape() == dx.shape() &&
          calls[r].in[0].offset() == 0 && calls[r].in[0].is_contiguous())
        j = r;
    if (j == 0 || drop[j]) continue;
    const autograd::Call& s = calls[j];
    bool clear = true;  // db and the scratch: col_sum touches them first
    for (const Tensor& t : s.out)
      if (t.defined()) clear &= ix[storage_of(t)].first() >= j;
    if (!clear) continue;
    autograd::Call n{OpKind::act_backward, kBiasGradRun, autograd::Attrs::of(BiasGradAttrs{act}), c.in, {}, {}, {}};
    n.out = {dx, s.out[0], s.out.size() > 1 ? s.out[1] : Tensor()};  // value ids: renumbered after the passes
    c = std::move(n);
    drop[j] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::string describe_bias_grad(const autograd::Call& c) {
  std::ostringstream os;
  os.precision(3);
  if (c.run == kRematBackwardRun) {
    os << "act_forward -> act_backward" << (attrs_of_call<RematBackwardAttrs>(c).sums ? " -> col_sum (3" : " (2")
       << " calls, the rematerialized activation made with its backward: 1 pass over "
       << static_cast<double>(c.out[0].nbytes()) / 1048576.0 << " MiB no longer live from forward to backward)";
    return os.str();
  }
  if (c.run != kBiasGradRun) return "";
  os << "act_backward -> col_sum (2 calls, 1 pass over " << static_cast<double>(c.out[0].nbytes()) / 1024.0
     << " KiB)";
  return os.str();
}


// Graph pass: an activation a = act(u) (act_forward into a temporary only it
// writes) whose readers include some long after the first (training: the
// next linear reads a in forward, its weight gradient in backward) is made
// again from u just before the first of those late readers, which then read
// the new copy: a lives through the forward only. Taken where u stays live
// until then anyway (the activation's own backward reads it) and nothing
// writes u in between: one more pass over u and a, and the step's peak of
// live temporaries drops by one [M, N] a linear (the FFN's [8192, 2048] a
// layer in the bench step). The same kernel on the same input: the same bits.
size_t rematerialize_activations(std::vector<autograd::Call>& calls, const TemporaryFn& temporary) {
  constexpr size_t kLate = 16;  // calls between two reads that make the second "late"
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<std::pair<size_t, autograd::Call>> inserts;  // (before call, the recomputation)
  for (size_t i = 0; i < calls.size(); ++i) {
    const autograd::Call& c = calls[i];
    if (c.kind != OpKind::act_forward || c.out.size() != 1 || c.in.size() != 1) continue;
    LinearAttrs a = attrs_of_call<LinearAttrs>(c);
    const Tensor out = c.out[0], u = c.in[0];
    const Storage *os = storage_of(out), *us = storage_of(u);
    if (a.act == Activation::none || a.remat || os == us || !temporary(os) || !whole_f32(out)) continue;
    const autograd::BufferUses& ou = ix[os];
    if (ou.writers.size() != 1 || ou.readers.size() < 2) continue;
    size_t k = 1;
    while (k < ou.readers.size() && ou.readers[k] - ou.readers[k - 1] < kLate) ++k;
    if (k == ou.readers.size()) continue;
    const size_t late = ou.readers[k];
    // u is read at `late` instead of at i: live until then, unchanged since.
    const autograd::BufferUses& uu = ix[us];
    bool ok = !temporary(us) || uu.last() >= late;
    for (size_t w : uu.writers) ok = ok && (w < i || w > late);
    if (!ok) continue;
    const Tensor again = autograd::pass_temporary(out.shape(), out.dtype());
    autograd::Call r = c;
    r.out[0] = again;
    a.remat = true;
    r.attrs = autograd::Attrs::of(a);
    for (size_t j = k; j < ou.readers.size(); ++j)
      for (Tensor& t : calls[ou.readers[j]].in)
        if (t.defined() && storage_of(t) == os) t = again.as_strided(t.shape(), t.strides(), t.offset());
    inserts.emplace_back(late, std::move(r));
  }
  if (inserts.empty()) return 0;
  std::sort(inserts.begin(), inserts.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<autograd::Call> merged;
  merged.reserve(calls.size() + inserts.size());
  size_t n = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    for (; n < inserts.size() && inserts[n].first == i; ++n) merged.push_back(std::move(inserts[n].second));
    merged.push_back(std::move(calls[i]));
  }
  calls = std::move(merged);
  return 0;  // no call removed: one added for each
}

std::string describe_remat(const autograd::Call& c) {
  if (!attrs_of_call<LinearAttrs>(c).remat) return "";
  std::ostringstream os;
  os.precision(3);
  os << "act_forward recomputed for its late readers (rematerialized: "
     << static_cast<double>(c.out[0].nbytes()) / 1048576.0 << " MiB no longer live from forward to backward)";
  return os.str();
}


// Graph pass: a rematerialized gelu a = gelu(u) (act_forward at i) and the
// activation's own backward dx = dy ⊙ gelu'(u) (at j > i, with or without
// the bias gradient's column sums fused in) become one call at i, where dy
// is already made (the linear after the activation computes its dX before
// its dW, which reads a): one pass over u and dy writing a and dx
// (kernels::gelu_remat_backward_col_sum), one exp per element for both, and
// u and dy die at i instead of j. Taken where nothing writes u or dy from i
// to j and the backward's outputs are first touched at j.
size_t fuse_remat_backward(std::vector<autograd::Call>& calls, const TemporaryFn& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const autograd::Call& r = calls[i];
    if (r.kind != OpKind::act_forward || r.out.size() != 1 || r.in.size() != 1) continue;
    const LinearAttrs la = attrs_of_call<LinearAttrs>(r);
    if (!la.remat || la.act != Activation::gelu || !whole_f32(r.in[0]) || r.in[0].dim() != 2) continue;
    const Tensor u = r.in[0];
    size_t j = 0;
    for (size_t k : ix[storage_of(u)].readers)
      if (k > i && calls[k].kind == OpKind::act_backward && calls[k].in.size() == 2 && !drop[k]) {
        j = k;
        break;
      }
    if (j == 0) continue;
    const autograd::Call& b = calls[j];
    const bool sums = b.run == kBiasGradRun;
    if (!sums && b.out.size() != 1) continue;
    if (attrs_of_call<LinearAttrs>(b).act != Activation::gelu || !same_view(b.in[1], u)) continue;
    const Tensor dy = b.in[0];
    if (!whole_f32(dy) || dy.shape() != u.shape() || !whole_f32(b.out[0]) || b.out[0].shape() != u.shape()) continue;
    bool clear = true;  // dy made before i, u unchanged until j, the outputs first touched at j
    for (size_t w : ix[storage_of(dy)].writers) clear &= w < i;
    for (size_t w : ix[storage_of(u)].writers) clear &= w < i || w > j;
    for (const Tensor& t : b.out)
      if (t.defined()) clear &= temporary(storage_of(t)) && ix[storage_of(t)].first() == j;
    if (!clear) continue;
    autograd::Call n{OpKind::act_backward, kRematBackwardRun, autograd::Attrs::of(RematBackwardAttrs{sums}),
                     b.in, {}, {}, {}};
    n.out = {r.out[0]};  // value ids: renumbered after the passes
    n.out.insert(n.out.end(), b.out.begin(), b.out.end());
    calls[i] = std::move(n);
    drop[j] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

}  // namespace mmrec::ops::detail
