// The copy-chain pass: see copy_chains.h.
#include "ops/copy_chains.h"

#include <array>
#include <sstream>
#include <unordered_map>

#include "ops/common.h"
#include "ops/elementwise_attrs.h"
#include "ops/fuse_pointwise.h"
#include "ops/kernels/fused.h"
#include "ops/memattn_attrs.h"
#include "tensor/capture_hook.h"

namespace mmrec::ops::detail {
namespace {
using autograd::Call;
using autograd::OpKind;

// The two kinds a collapsed copy stands for (for its describer).
struct ChainAttrs {
  OpKind first, second;
};
void run_chain_copy(const ChainAttrs&, const Tensor* in, const Tensor* out) { copy_raw(out[0], in[0]); }
constexpr autograd::KernelFn kChainRun = &autograd::kernel_thunk<ChainAttrs, run_chain_copy>;


// A copy_rows side (its source or destination) as a view of rows x elements.
std::optional<ElemView> rows_view(const Tensor& t, int64_t off, int64_t stride, const RowsAttrs& a) {
  const auto es = static_cast<int64_t>(dtype_size(t.dtype()));
  if (off % es || stride % es || a.row_bytes % es) return std::nullopt;
  return ElemView{t.offset() + off / es, {a.rows, a.row_bytes / es}, {stride / es, 1}};
}

// What call c reads of its input 0, and what it writes, as views; nullopt
// for a call that is not a plain copy between buffers of one dtype.
struct CopySides {
  ElemView src, dst;
};
std::optional<CopySides> sides(const Call& c) {
  if ((c.kind != OpKind::copy && c.kind != OpKind::copy_rows) || c.in.size() != 1 || c.out.size() != 1) return {};
  const Tensor &s = c.in[0], &d = c.out[0];
  if (!s.defined() || !d.defined() || s.dtype() != d.dtype()) return {};
  if (c.kind == OpKind::copy) return CopySides{view_of(s), view_of(d)};
  const RowsAttrs a = attrs_of_call<RowsAttrs>(c);
  const auto sv = rows_view(s, a.src_off, a.src_stride, a), dv = rows_view(d, a.dst_off, a.dst_stride, a);
  if (!sv || !dv) return {};
  return CopySides{*sv, *dv};
}

// The view covers its whole buffer, contiguously from element 0.
bool whole(const ElemView& v, const Tensor& t) {
  int64_t expect = 1;
  for (size_t k = v.shape.size(); k-- > 0;) {
    if (v.shape[k] != 1 && v.strides[k] != expect) return false;
    expect *= v.shape[k];
  }
  return v.offset == 0 && static_cast<size_t>(expect) * dtype_size(t.dtype()) == t.impl()->storage->bytes;
}

bool writes(const Call& c, const Storage* s) {
  for (const Tensor& t : c.out)
    if (t.defined() && storage_of(t) == s) return true;
  return false;
}
}  // namespace

std::optional<CopyViews> compose_views(const ElemView& v, const ElemView& d, const ElemView& w) {
  // w without its unit axes, and the row-major strides of its shape.
  Shape ws, wst, cs;
  for (size_t j = 0; j < w.shape.size(); ++j)
    if (w.shape[j] != 1) ws.push_back(w.shape[j]), wst.push_back(w.strides[j]);
  int64_t n = 1;
  cs.resize(ws.size());
  for (size_t j = ws.size(); j-- > 0;) cs[j] = n, n *= ws[j];
  if (v.shape != d.shape || v.offset < 0 || v.offset >= std::max<int64_t>(n, 1)) return std::nullopt;
  // The offset's digits in w's shape.
  std::vector<int64_t> digit(ws.size()), used(ws.size(), 0);
  for (size_t j = 0, rem = static_cast<size_t>(v.offset); j < ws.size(); ++j)
    digit[j] = static_cast<int64_t>(rem) / cs[j], rem %= static_cast<size_t>(cs[j]);
  CopyViews r{{w.offset, {}, {}}, {d.offset, {}, {}}};
  for (size_t j = 0; j < ws.size(); ++j) r.src.offset += digit[j] * wst[j];
  // Each axis of v placed on one axis j of w (its stride m times j's block),
  // split where it runs on from j into the axes before it (a row of a
  // concatenation spanning a permuted copy's axes); the destination's axis
  // split alike. Sub-axes are built innermost first.
  std::vector<std::array<int64_t, 3>> axes;  // size, src stride, dst stride
  for (size_t k = v.shape.size(); k-- > 0;) {
    int64_t size = v.shape[k], sv = v.strides[k], sd = d.strides[k];
    while (size > 1) {
      if (sv == 0) {  // a broadcast axis reads one element
        axes.push_back({size, 0, sd});
        break;
      }
      size_t j = 0;
      while (j < ws.size() && !(sv > 0 && sv % cs[j] == 0 && sv / cs[j] < ws[j])) ++j;
      if (j == ws.size()) return std::nullopt;
      const int64_t m = sv / cs[j];
      if (m * (size - 1) < ws[j]) {
        used[j] += m * (size - 1);
        axes.push_back({size, m * wst[j], sd});
        break;
      }
      const int64_t fit = ws[j] / m;  // the part of the axis that stays on j
      if (ws[j] % m || size % fit || digit[j] != 0) return std::nullopt;
      used[j] += m * (fit - 1);
      axes.push_back({fit, m * wst[j], sd});
      size /= fit, sv *= fit, sd *= fit;
    }
  }
  for (size_t j = 0; j < ws.size(); ++j)
    if (digit[j] + used[j] >= ws[j]) return std::nullopt;
  for (size_t k = axes.size(); k-- > 0;) {
    r.src.shape.push_back(axes[k][0]), r.src.strides.push_back(axes[k][1]);
    r.dst.shape.push_back(axes[k][0]), r.dst.strides.push_back(axes[k][2]);
  }
  if (axes.empty()) r.src.shape = r.dst.shape = {1}, r.src.strides = r.dst.strides = {1};
  return r;
}

size_t collapse_copy_chains(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const auto p = sides(calls[i]);
    if (!p) continue;
    const Tensor src = calls[i].in[0], mid = calls[i].out[0];
    const Storage *ss = storage_of(src), *ts = storage_of(mid);
    // t: a temporary this call alone writes, whole, and only later copies read.
    if (ss == ts || !temporary(ts) || ix[ts].writers.size() != 1 || !whole(p->dst, mid)) continue;
    const std::vector<size_t>& rd = ix[ts].readers;
    std::vector<std::pair<size_t, CopyViews>> plan;
    for (size_t r : rd) {
      const auto q = r > i && !drop[r] ? sides(calls[r]) : std::nullopt;
      if (!q || storage_of(calls[r].in[0]) != ts || calls[r].in[0].dtype() != mid.dtype() || writes(calls[r], ss))
        break;
      // Reading the source at r instead of i: nothing in between may write it.
      bool clear = true;
      for (size_t k : ix[ss].writers) clear &= k < i || k >= r;
      const auto v = clear ? compose_views(q->src, q->dst, p->src) : std::nullopt;
      if (!v) break;
      plan.emplace_back(r, *v);
    }
    if (rd.empty() || plan.size() != rd.size()) continue;
    for (const auto& [r, v] : plan) {
      Call& c = calls[r];
      Call n{OpKind::copy, kChainRun, autograd::Attrs::of(ChainAttrs{calls[i].kind, c.kind}), {}, {}, {}, {}};
      n.in.push_back(src.as_strided(v.src.shape, v.src.strides, v.src.offset));
      n.out.push_back(c.out[0].as_strided(v.dst.shape, v.dst.strides, v.dst.offset));
      c = std::move(n);
    }
    drop[i] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::optional<int64_t> uniform_rows(const ElemView& v, int64_t inner) {
  Shape sh, st;
  for (size_t k = 0; k < v.shape.size(); ++k)
    if (v.shape[k] != 1) sh.push_back(v.shape[k]), st.push_back(v.strides[k]);
  size_t j = sh.size();
  int64_t p = 1;
  while (j > 0 && p < inner) {
    if (st[--j] != p) return std::nullopt;
    p *= sh[j];
  }
  if (p != inner) return std::nullopt;
  if (j == 0) return inner;
  const int64_t ld = st[j - 1];
  for (int64_t k = static_cast<int64_t>(j) - 1, expect = ld; k >= 0; expect *= sh[static_cast<size_t>(k)], --k)
    if (st[static_cast<size_t>(k)] != expect) return std::nullopt;
  return ld >= inner ? std::optional<int64_t>(ld) : std::nullopt;
}

namespace {

// uniform_rows for each index of v's leading axis, whose step may differ
// (rows of a slice that skips rows between batches): {groups, their stride,
// the row stride}; nullopt where that does not hold either.
struct GroupedRows {
  int64_t groups, group_stride, ld;
};
std::optional<GroupedRows> grouped_rows(const ElemView& v, int64_t inner) {
  size_t a = 0;
  while (a < v.shape.size() && v.shape[a] == 1) ++a;
  if (a + 1 >= v.shape.size()) return std::nullopt;
  const ElemView rest{v.offset, Shape(v.shape.begin() + static_cast<std::ptrdiff_t>(a) + 1, v.shape.end()),
                      Shape(v.strides.begin() + static_cast<std::ptrdiff_t>(a) + 1, v.strides.end())};
  const std::optional<int64_t> ld = uniform_rows(rest, inner);
  if (!ld) return std::nullopt;
  const int64_t rows = numel_of(rest.shape) / inner;
  if (v.strides[a] < rows * *ld) return std::nullopt;  // groups overlap
  return GroupedRows{v.shape[a], v.strides[a], *ld};
}

// The elements of v's innermost contiguous run (1 if its last axis is strided).
int64_t contiguous_run(const ElemView& v) {
  int64_t p = 1;
  for (size_t k = v.shape.size(); k-- > 0;) {
    if (v.shape[k] == 1) continue;
    if (v.strides[k] != p) break;
    p *= v.shape[k];
  }
  return p;
}
}  // namespace

bool f32_copy_to_temporary(const Call& c, const std::function<bool(const Storage*)>& temporary) {
  if (c.kind != OpKind::copy || c.in.size() != 1 || c.out.size() != 1) return false;
  const Tensor &src = c.in[0], &mid = c.out[0];
  return storage_of(src) != storage_of(mid) && src.dtype() == DType::f32 && mid.dtype() == DType::f32 &&
         temporary(storage_of(mid)) && whole(view_of(mid), mid);
}

size_t fuse_strided_sum(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const Call& c = calls[i];
    if (!f32_copy_to_temporary(c, temporary)) continue;
    const Tensor src = c.in[0], mid = c.out[0];
    const Storage *ss = storage_of(src), *ts = storage_of(mid);
    if (ix[ts].uses() != 2) continue;
    const size_t j = ix[ts].last();
    Call& sum = calls[j];
    if (j <= i || sum.kind != OpKind::sum_axis || storage_of(sum.in[0]) != ts) continue;
    AxisAttrs a = attrs_of_call<AxisAttrs>(sum);
    if (a.ld != 0 || a.inner < 2 || !whole(view_of(sum.in[0]), mid)) continue;
    const std::optional<int64_t> ld = uniform_rows(view_of(src), a.inner);
    // Else rows uniform within each batch, whose slabs a group holds.
    std::optional<GroupedRows> gr = ld ? std::nullopt : grouped_rows(view_of(src), a.inner);
    if (gr && (a.outer % gr->groups != 0 || (a.outer / gr->groups) * a.n * a.inner * gr->groups != mid.numel()))
      gr.reset();
    bool clear = ld.has_value() || gr.has_value();  // the source is read at j instead of i
    for (size_t k : ix[ss].writers) clear &= k < i || k >= j;
    for (const Tensor& o : sum.out) clear &= !o.defined() || storage_of(o) != ss;
    if (!clear) continue;
    if (ld) {
      a.ld = *ld;
      sum.in[0] = src.as_strided({a.outer * a.n, a.inner}, {a.ld, 1}, src.offset());
    } else {
      a.ld = gr->ld, a.group = a.outer / gr->groups, a.group_stride = gr->group_stride;
      sum.in[0] = src.as_strided({gr->groups, a.group * a.n, a.inner}, {a.group_stride, a.ld, 1}, src.offset());
    }
    sum.attrs = autograd::Attrs::of(a);
    drop[i] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::string describe_strided_sum(const Call& c) {
  const AxisAttrs a = attrs_of_call<AxisAttrs>(c);
  if (a.ld == 0) return "";
  std::ostringstream os;
  os << "copy -> sum_axis (2 calls, the sum reads the copy's source in place: "
     << size_text(static_cast<size_t>(a.outer * a.n * a.inner) * sizeof(float)) << ", rows " << a.ld
     << " floats apart";
  if (a.group > 0) os << ", in groups of " << a.group * a.n << " rows " << a.group_stride << " floats apart";
  os << ")";
  return os.str();
}

std::string describe_copy_chain(const Call& c) {
  if (c.run != kChainRun) return "";
  const ChainAttrs a = attrs_of_call<ChainAttrs>(c);
  std::ostringstream os;
  os.precision(3);
  os << autograd::op_kind_name(a.first) << " -> " << autograd::op_kind_name(a.second) << " (2 calls, 1 pass over "
     << static_cast<double>(c.out[0].nbytes()) / 1024.0 << " KiB)";
  return os.str();
}

}  // namespace mmrec::ops::detail

namespace mmrec::ops::detail {
namespace {
// Where a write_in_place copy puts its source: rows of `width` elements `ld`
// apart from `offset` (ld 0: not rows; then only [lo, hi) is known).
struct Region {
  int64_t offset = 0, width = 0, ld = 0, lo = 0, hi = 0;
};
Region region_of(const ElemView& v) {
  Region r{v.offset, contiguous_run(v), 0, v.offset, v.offset + 1};
  for (size_t k = 0; k < v.shape.size(); ++k) {
    if (v.shape[k] == 0) return Region{};
    if (v.strides[k] > 0) r.hi += (v.shape[k] - 1) * v.strides[k];
    if (v.strides[k] < 0) r.lo += (v.shape[k] - 1) * v.strides[k];
  }
  if (const auto ld = uniform_rows(v, r.width); ld && v.offset % *ld + r.width <= *ld) r.ld = *ld;
  return r;
}
bool disjoint(const Region& a, const Region& b) {
  if (a.hi <= b.lo || b.hi <= a.lo) return true;
  if (a.ld == 0 || a.ld != b.ld) return false;
  const int64_t ca = a.offset % a.ld, cb = b.offset % b.ld;
  return ca + a.width <= cb || cb + b.width <= ca;
}

// Element `flat` (row-major) of view v, as an offset from v's buffer start.
int64_t offset_at(const ElemView& v, int64_t flat) {
  int64_t off = v.offset;
  for (size_t k = v.shape.size(); k-- > 0;) {
    off += flat % v.shape[k] * v.strides[k];
    flat /= v.shape[k];
  }
  return off;
}

// The view v of B·T rows of D elements (row-major, as memattn writes them)
// as rows (b, t) at b ob + t or, each D contiguous elements: {ob, or}, or
// nullopt where v is not that.
std::optional<std::pair<int64_t, int64_t>> memattn_rows(const ElemView& v, int64_t B, int64_t T, int64_t D) {
  if (B * T * D == 0 || contiguous_run(v) % D != 0) return std::nullopt;
  const int64_t base = offset_at(v, 0);
  const int64_t ob = B > 1 ? offset_at(v, T * D) - base : T * D, orow = T > 1 ? offset_at(v, D) - base : D;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      if (offset_at(v, (b * T + t) * D) != base + b * ob + t * orow) return std::nullopt;
  return std::make_pair(ob, orow);
}

// Call w, which writes (part of) the temporary s, rewritten to write the same
// elements where copy c (reading all of s) puts them: `to`, c's destination.
std::optional<Call> retarget(const Call& w, const Storage* s, const Call& c, const ElemView& to) {
  // (memattn's second output is the weights it keeps for backward.)
  if ((w.out.size() != 1 && w.kind != OpKind::memattn) || storage_of(w.out[0]) != s) return std::nullopt;
  if (w.out[0].numel() == 0) return w;  // writes nothing, wherever
  const Tensor& d = c.out[0];
  if (const auto ws = sides(w)) {  // a copy: one strided copy from its source to there
    const auto v = compose_views(ws->dst, ws->src, to);
    if (!v) return std::nullopt;
    Call n{OpKind::copy, kChainRun, autograd::Attrs::of(ChainAttrs{w.kind, c.kind}), {}, {}, {}, {}};
    n.in.push_back(w.in[0].as_strided(v->dst.shape, v->dst.strides, v->dst.offset));
    n.out.push_back(d.as_strided(v->src.shape, v->src.strides, v->src.offset));
    return n;
  }
  if (w.out[0].dtype() != DType::f32 || d.dtype() != DType::f32 || !whole(view_of(w.out[0]), w.out[0]))
    return std::nullopt;
  Call n = w;
  n.out[0] = d.as_strided(to.shape, to.strides, to.offset);
  if (w.kind == OpKind::fused_pointwise) {  // the kernel writes rows of the run's width
    auto p = attrs_of_call<kernels::PointwiseProgram>(w);
    const int64_t width = contiguous_run(to);
    const auto ld = uniform_rows(to, width);
    if (p.out_ld != 0 || !ld || p.n % width) return std::nullopt;
    if (*ld != width) p.out_row = width, p.out_ld = *ld;
    n.attrs = autograd::Attrs::of(p);
    return n;
  }
  if (w.kind == OpKind::memattn) {  // rows (b, t) of D floats at b o_batch + t o_row
    MemattnAttrs a = attrs_of_call<MemattnAttrs>(w);
    const auto rows = memattn_rows(to, a.s.B, a.s.T, a.s.D);
    if (!rows) return std::nullopt;
    a.s.o_batch = rows->first, a.s.o_row = rows->second;
    n.attrs = autograd::Attrs::of(a);
    return n;
  }
  if (w.kind == OpKind::expand_axis) {  // rows of the expanded axis' inner elements
    AxisAttrs a = attrs_of_call<AxisAttrs>(w);
    const auto ld = uniform_rows(to, a.inner);
    if (a.ld != 0 || !ld) return std::nullopt;
    a.ld = *ld == a.inner ? 0 : *ld;
    n.attrs = autograd::Attrs::of(a);
    return n;
  }
  return std::nullopt;
}
}  // namespace

size_t write_in_place(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  // The calls this pass made write a destination, with where they write.
  std::unordered_map<const Storage*, std::vector<std::pair<size_t, Region>>> moved;
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const auto p = sides(calls[i]);
    if (!p) continue;
    const Call& c = calls[i];
    const Storage *s = storage_of(c.in[0]), *d = storage_of(c.out[0]);
    const autograd::BufferUses& su = ix[s];
    // s: a temporary only c reads, all of it, after every call writing it.
    if (s == d || !temporary(s) || !whole(p->src, c.in[0]) || su.readers.size() != 1 || su.writers.empty() ||
        su.writers.back() >= i || moved.count(s))
      continue;
    std::vector<Call> plan;
    for (size_t w : su.writers) {
      auto n = drop[w] ? std::nullopt : retarget(calls[w], s, c, p->dst);
      if (!n) break;
      plan.push_back(std::move(*n));
    }
    if (plan.size() != su.writers.size()) continue;
    // Writing c's destination from the first writer on instead of at c:
    // nothing in between may read or write it there.
    const size_t first = su.writers.front();
    const Region to = region_of(p->dst);
    const autograd::BufferUses& du = ix[d];
    bool clear = to.hi > to.lo;
    // A copy in between reading or writing another part of the destination
    // (the other chunks of a concatenation) leaves it clear.
    auto elsewhere = [&](size_t k) {
      const auto ks = sides(calls[k]);
      if (!ks) return false;
      for (const auto& [t, v] : {std::pair{&calls[k].in[0], &ks->src}, std::pair{&calls[k].out[0], &ks->dst}}) {
        if (storage_of(*t) != d) continue;
        const Region r = region_of(*v);
        if (r.hi <= r.lo || !disjoint(r, to)) return false;
      }
      return true;
    };
    for (const auto* list : {&du.readers, &du.writers})
      for (size_t k : *list) clear &= k == i || k < first || k > i || drop[k] || elsewhere(k);
    for (const auto& [k, r] : moved[d]) clear &= k < first || disjoint(r, to);
    if (!clear) continue;
    for (size_t j = 0; j < plan.size(); ++j) {
      calls[su.writers[j]] = std::move(plan[j]);
      moved[d].emplace_back(su.writers[j], to);
    }
    drop[i] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::string describe_memattn_in_place(const Call& c) {
  const MemattnAttrs a = attrs_of_call<MemattnAttrs>(c);
  if (a.s.o_row == a.s.D && a.s.o_batch == a.s.T * a.s.D) return "";
  std::ostringstream os;
  os << "memattn -> copy_rows (2 calls, written in place: rows of " << a.s.D << " floats, " << a.s.o_row
     << " apart, batches " << a.s.o_batch << " apart)";
  return os.str();
}

std::string describe_expand_in_place(const Call& c) {
  const AxisAttrs a = attrs_of_call<AxisAttrs>(c);
  if (a.ld == 0) return "";
  std::ostringstream os;
  os << "expand_axis -> copy_rows (2 calls, written in place: rows of " << a.inner << " floats, " << a.ld
     << " apart)";
  return os.str();
}

}  // namespace mmrec::ops::detail
