#include "autograd/graph.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "autograd/plan.h"
#include "tensor/allocator.h"
#include "tensor/capture_hook.h"

namespace mmrec::autograd {
namespace {

struct FillAttrs {
  double value;
};
struct NoAttrs {};

void run_copy(const NoAttrs&, const Tensor* in, const Tensor* out) { copy_raw(out[0], in[0]); }
void run_fill(const FillAttrs& a, const Tensor*, const Tensor* out) { fill_raw(out[0], a.value); }

// The recording state of one capture on this thread; it also observes the
// data work Tensor does itself (copies, fills, new buffers, host reads).
struct Recorder final : CaptureObserver {
  std::vector<Call> calls;
  std::vector<std::shared_ptr<Storage>> created;
  // For each created buffer: the references the recording holds (created's
  // and the calls' views) and whether a call wrote it before any read it.
  struct Track {
    long refs = 1;
    bool touched = false, written_first = false;
  };
  std::unordered_map<const Storage*, Track> tracks;
  // Buffers whose memory went back to the allocator during the capture: a
  // call made them, and the function let go of them (its tape too), so only
  // the recording refers to them and nothing the function runs later can
  // read them. The capture then holds what the eager run holds, not every
  // temporary of the step; the plan gives them their place in the arena.
  std::unordered_set<const Storage*> released;
  bool in_kernel = false;
  bool has_last = false;
  OpKind last = OpKind::copy;

  void note(const Call& c) {
    for (const std::vector<Tensor>* v : {&c.in, &c.out})
      for (const Tensor& t : *v) {
        if (!t.defined()) continue;
        auto it = tracks.find(t.impl()->storage.get());
        if (it == tracks.end()) continue;
        ++it->second.refs;
        if (!it->second.touched) it->second.touched = true, it->second.written_first = v == &c.out;
      }
  }
  void release_unreferenced() {
    for (const std::shared_ptr<Storage>& s : created) {
      if (!s->data || s->owner) continue;
      const Track& t = tracks[s.get()];
      if (!t.written_first || s.use_count() != t.refs) continue;
      alloc::release(s->data, s->bytes);
      s->data = nullptr;
      released.insert(s.get());
    }
  }

  void copy(const Tensor& dst, const Tensor& src) override { dispatch<run_copy>(OpKind::copy, NoAttrs{}, {src}, {dst}); }
  void fill(const Tensor& dst, double value) override {
    dispatch<run_fill>(OpKind::fill, FillAttrs{value}, {}, {dst});
  }
  void allocated(const std::shared_ptr<Storage>& s) override {
    created.push_back(s);
    tracks[s.get()];
  }
  void host_access(const char* what) override {
    fail("capture: ", what, " reads or writes tensor data on the host inside a captured region (",
         has_last ? std::string("after op '") + op_kind_name(last) + "'" : std::string("before any op"),
         "): a replay would not repeat it; return the tensor from the step and read it after");
  }
};

thread_local Recorder* t_recorder = nullptr;
// Buffers made by the passes of the capture running on this thread.
thread_local std::vector<std::shared_ptr<Storage>>* t_pass_made = nullptr;

const char* const kKindNames[] = {
    "copy", "fill", "binary", "unary", "affine", "activation", "activation_bwd", "clamp", "clamp_bwd",
    "sigmoid_mul", "sigmoid_mul_bwd", "sum_axis", "expand_axis", "matmul", "gemm", "linear", "linear_packed",
    "act_forward", "act_backward", "col_sum", "convert", "rmsnorm", "rmsnorm_bwd", "softmax", "softmax_bwd",
    "mask_u8", "cross_entropy", "cross_entropy_bwd", "loss_mean", "next_token_targets", "check_ids", "embedding",
    "embedding_bwd", "copy_rows", "linear_scan", "linear_scan_bwd", "cumprod_scan", "cumprod_scan_bwd",
    "grad_accumulate", "adamw", "sum_squares", "clip_coef", "clip_scale",
    "fake_quant", "fake_quant_bwd", "observe_min_max", "quant_params", "quantize_u8", "linear_int8",
    "memory_update", "memattn", "memattn_bwd",
    "fused_pointwise"};
static_assert(std::size(kKindNames) == static_cast<size_t>(OpKind::count_), "one name per OpKind");

std::string mib(size_t b) {
  std::ostringstream os;
  os.precision(3);
  os << static_cast<double>(b) / (1024.0 * 1024.0) << " MiB";
  return os.str();
}

}  // namespace

const char* op_kind_name(OpKind k) {
  const auto i = static_cast<size_t>(k);
  return i < std::size(kKindNames) ? kKindNames[i] : "?";
}

const char* role_name(Role r) {
  switch (r) {
    case Role::input: return "input";
    case Role::parameter: return "parameter";
    case Role::output: return "output";
    case Role::temporary: return "temporary";
    case Role::constant: return "constant";
  }
  return "?";
}

int debug_level() {
  static const int level = [] {
    const char* e = std::getenv("MMREC_DEBUG");
    return e ? std::atoi(e) : 0;
  }();
  return level;
}

namespace {
std::vector<std::pair<const char*, GraphPass>>& passes() {
  static std::vector<std::pair<const char*, GraphPass>> p;
  return p;
}
}  // namespace

void register_pass(const char* name, GraphPass pass) { passes().emplace_back(name, pass); }

namespace {
std::atomic<int> g_passes_off{0};
}  // namespace

PassesOff::PassesOff() { g_passes_off.fetch_add(1); }
PassesOff::~PassesOff() { g_passes_off.fetch_sub(1); }

bool passes_enabled() {
  static const bool env_off = [] {
    const char* e = std::getenv("MMREC_PASSES");
    return e != nullptr && std::strcmp(e, "0") == 0;
  }();
  return !env_off && g_passes_off.load() == 0;
}

size_t BufferUses::first() const {
  if (readers.empty()) return writers.front();
  return writers.empty() ? readers.front() : std::min(readers.front(), writers.front());
}
size_t BufferUses::last() const {
  if (readers.empty()) return writers.back();
  return writers.empty() ? readers.back() : std::max(readers.back(), writers.back());
}

bool whole_buffer(const Tensor& t) {
  return t.defined() && t.is_contiguous() && t.offset() == 0 && t.nbytes() == t.impl()->storage->bytes;
}

BufferIndex index_buffers(const std::vector<Call>& calls) {
  BufferIndex ix;
  for (size_t i = 0; i < calls.size(); ++i) {
    for (const Tensor& t : calls[i].in)
      if (t.defined()) ix[t.impl()->storage.get()].readers.push_back(i);
    for (const Tensor& t : calls[i].out)
      if (t.defined()) ix[t.impl()->storage.get()].writers.push_back(i);
  }
  return ix;
}

size_t erase_calls(std::vector<Call>& calls, const std::vector<bool>& drop) {
  size_t w = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (drop[i]) continue;
    if (w != i) calls[w] = std::move(calls[i]);
    ++w;
  }
  const size_t removed = calls.size() - w;
  calls.resize(w);
  return removed;
}

namespace {
CallDescriber& describer(OpKind k) {
  static CallDescriber d[static_cast<size_t>(OpKind::count_)] = {};
  return d[static_cast<size_t>(k)];
}
}  // namespace

void register_describer(OpKind kind, CallDescriber describe) { describer(kind) = describe; }

bool capturing() { return t_recorder && !t_recorder->in_kernel; }

Tensor pass_temporary(const Shape& shape, DType dtype) {
  check(t_pass_made != nullptr, "pass_temporary: only a graph pass makes buffers this way");
  Tensor t = Tensor::empty(shape, dtype);
  t_pass_made->push_back(t.impl()->storage);
  return t;
}

void dispatch_call(OpKind kind, KernelFn run, const Attrs& attrs, std::initializer_list<Tensor> in,
                   std::initializer_list<Tensor> out) {
  Recorder* r = t_recorder;
  Call c{kind, run, attrs, {}, {}, {}, {}};
  // Detached views: the graph holds buffers, never autograd history.
  for (const Tensor& t : in) c.in.push_back(t.defined() ? t.detach() : Tensor());
  for (const Tensor& t : out) c.out.push_back(t.defined() ? t.detach() : Tensor());
  // A kernel's own helper copies and buffers are part of the kernel: not recorded.
  r->in_kernel = true;
  set_capture_observer(nullptr);
  struct Restore {
    Recorder* r;
    ~Restore() {
      r->in_kernel = false;
      set_capture_observer(r);
    }
  } restore{r};
  run(c.attrs.bytes, c.in.data(), c.out.data());
  r->last = kind;
  r->has_last = true;
  r->note(c);
  r->calls.push_back(std::move(c));
  r->release_unreferenced();
}

namespace {
thread_local KernelClock* t_clock = nullptr;
}

void set_kernel_clock(KernelClock* clock) { t_clock = clock; }
KernelClock* kernel_clock() { return t_clock; }

void run_clocked(KernelClock& clock, OpKind kind, KernelFn run, const void* attrs, const Tensor* in,
                 const Tensor* out) {
  const auto t0 = std::chrono::steady_clock::now();
  run(attrs, in, out);
  clock.seconds[static_cast<size_t>(kind)] +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++clock.calls[static_cast<size_t>(kind)];
}

void Graph::replay() const {
  if (KernelClock* k = t_clock) [[unlikely]] {
    for (const Call& c : calls_) run_clocked(*k, c.kind, c.run, c.attrs.bytes, c.in.data(), c.out.data());
    return;
  }
  for (const Call& c : calls_) c.run(c.attrs.bytes, c.in.data(), c.out.data());
}

namespace {

// Removes calls whose every output lands in a temporary buffer no kept call
// reads (buffer-level, so conservative for partial writes).
size_t remove_dead_calls(std::vector<Call>& calls, const std::unordered_set<const Storage*>& external) {
  std::unordered_set<const Storage*> read;
  std::vector<bool> dead(calls.size(), true);
  for (size_t i = calls.size(); i-- > 0;) {
    const Call& c = calls[i];
    bool k = false;
    for (const Tensor& t : c.out)
      if (t.defined() && (external.count(t.impl()->storage.get()) || read.count(t.impl()->storage.get()))) k = true;
    if (!k) continue;
    dead[i] = false;
    for (const Tensor& t : c.in)
      if (t.defined()) read.insert(t.impl()->storage.get());
  }
  return erase_calls(calls, dead);
}

}  // namespace

Graph Capture::run(const std::function<void()>& fn, const std::vector<Tensor>& inputs) {
  check(!t_recorder, "capture: already capturing on this thread (captures do not nest)");
  Recorder rec;
  t_recorder = &rec;
  set_capture_observer(&rec);
  struct Stop {
    ~Stop() {
      t_recorder = nullptr;
      set_capture_observer(nullptr);
    }
  } stop;
  fn();
  t_recorder = nullptr;
  set_capture_observer(nullptr);

  Graph g;
  g.calls_ = std::move(rec.calls);
  std::unordered_set<const Storage*> created;
  for (const auto& s : rec.created) created.insert(s.get());
  std::unordered_set<const Storage*> input_set;
  for (const Tensor& t : inputs)
    if (t.defined()) input_set.insert(t.impl()->storage.get());

  // Storage references held by the graph itself, to tell buffers that the
  // caller still holds (outputs, new gradients, state) from temporaries.
  std::unordered_map<const Storage*, long> graph_refs;
  for (const auto& s : rec.created) graph_refs[s.get()] += 1;
  for (const Call& c : g.calls_) {
    for (const Tensor& t : c.in)
      if (t.defined()) graph_refs[t.impl()->storage.get()] += 1;
    for (const Tensor& t : c.out)
      if (t.defined()) graph_refs[t.impl()->storage.get()] += 1;
  }
  std::unordered_set<const Storage*> external;
  for (const auto& s : rec.created)
    if (s.use_count() > graph_refs[s.get()]) external.insert(s.get());
  for (const Call& c : g.calls_)
    for (const std::vector<Tensor>* v : {&c.in, &c.out})
      for (const Tensor& t : *v)
        if (t.defined() && !created.count(t.impl()->storage.get())) external.insert(t.impl()->storage.get());
  g.removed_ = remove_dead_calls(g.calls_, external);
  const auto temporary = [&](const Storage* s) { return created.count(s) && !external.count(s); };
  std::vector<std::shared_ptr<Storage>> pass_made;
  t_pass_made = &pass_made;
  struct EndPasses {
    ~EndPasses() { t_pass_made = nullptr; }
  } end_passes;
  if (passes_enabled())
    for (const auto& [name, pass] : passes()) g.fused_ += pass(g.calls_, temporary);
  t_pass_made = nullptr;
  for (const auto& s : pass_made) created.insert(s.get());  // temporaries like the others
  pass_made.clear();

  // Values and buffers, in order of first use.
  std::unordered_map<const Storage*, int32_t> buffer_of;
  std::map<std::tuple<const Storage*, int64_t, Shape, Shape, int>, int32_t> value_of;
  auto intern = [&](const Tensor& t, int64_t call, bool write) -> int32_t {
    if (!t.defined()) return -1;
    const Storage* s = t.impl()->storage.get();
    auto [it, fresh] = buffer_of.try_emplace(s, static_cast<int32_t>(g.buffers_.size()));
    if (fresh) {
      Buffer b;
      b.storage = t.impl()->storage;
      b.bytes = s->bytes;
      b.first = call;
      b.written_first = write;
      b.role = input_set.count(s)     ? Role::input
               : !created.count(s)    ? Role::parameter
               : external.count(s)    ? Role::output
               : write                ? Role::temporary
                                      : Role::constant;
      g.buffers_.push_back(b);
    }
    Buffer& b = g.buffers_[static_cast<size_t>(it->second)];
    b.last = call;
    const auto key = std::make_tuple(s, t.offset(), t.shape(), t.strides(), static_cast<int>(t.dtype()));
    auto [vit, vfresh] = value_of.try_emplace(key, static_cast<int32_t>(g.values_.size()));
    if (vfresh) g.values_.push_back(Value{vit->second, it->second, t.shape(), t.dtype(), b.role});
    return vit->second;
  };
  for (size_t i = 0; i < g.calls_.size(); ++i) {
    Call& c = g.calls_[i];
    c.in_ids.clear();
    c.out_ids.clear();
    for (const Tensor& t : c.in) c.in_ids.push_back(intern(t, static_cast<int64_t>(i), false));
    for (const Tensor& t : c.out) c.out_ids.push_back(intern(t, static_cast<int64_t>(i), true));
  }
  rec.created.clear();  // buffers no call uses are freed here

  // Memory planning: every temporary into one arena by liveness.
  std::vector<Buffer*> temps;
  for (Buffer& b : g.buffers_) {
    Storage& s = *b.storage;
    if (b.role == Role::temporary && b.bytes > 0 && (s.data || rec.released.count(&s)) && !s.owner) {
      temps.push_back(&b);
      g.captured_bytes_ += b.bytes;
    }
  }
  const size_t total = detail::plan_offsets(temps, g.calls_);
  g.planned_bytes_ = total;
  g.live_peak_bytes_ = detail::live_peak(temps, g.calls_.size());
  // The captured temporaries' blocks go back to the system before the arena
  // is allocated: the two are never held at once.
  for (Buffer* b : temps) {
    Storage& s = *b->storage;
    alloc::release(s.data, s.bytes);
    s.data = nullptr;
  }
  alloc::empty_cache();
  if (total > 0) {
    void* base = alloc::allocate(total);
    g.arena_ = std::shared_ptr<void>(base, [total](void* p) { alloc::release(p, total); });
    for (Buffer* b : temps) {
      b->storage->data = static_cast<char*>(base) + b->offset;
      b->storage->owner = g.arena_;
    }
  }
  return g;
}

std::string Graph::summary(const std::string& name) const {
  std::ostringstream os;
  size_t counts[5] = {};
  for (const Buffer& b : buffers_) ++counts[static_cast<size_t>(b.role)];
  os << "graph " << name << ": " << calls_.size() << " calls (" << removed_ << " dead removed, " << fused_
     << " fused away), "
     << values_.size() << " values in " << buffers_.size() << " buffers (" << counts[0] << " input, " << counts[1]
     << " parameter/state, " << counts[2] << " output, " << counts[3] << " temporary, " << counts[4]
     << " constant); temporaries " << mib(captured_bytes_) << " as captured, planned arena " << mib(planned_bytes_)
     << " (at most " << mib(live_peak_bytes_) << " live at once)";
  return os.str();
}

std::string Graph::listing() const {
  std::ostringstream os;
  auto arg = [&](int32_t id) {
    if (id < 0) {
      os << " -";
      return;
    }
    const Value& v = values_[static_cast<size_t>(id)];
    os << " v" << id << shape_str(v.shape) << dtype_name(v.dtype) << ':' << role_name(v.role);
  };
  for (size_t i = 0; i < calls_.size(); ++i) {
    const Call& c = calls_[i];
    os << '#' << i << ' ' << op_kind_name(c.kind) << " (";
    for (int32_t id : c.in_ids) arg(id);
    os << " ) ->";
    for (int32_t id : c.out_ids) arg(id);
    os << '\n';
  }
  return os.str();
}

std::string Graph::fusions() const {
  std::ostringstream os;
  for (size_t i = 0; i < calls_.size(); ++i) {
    const CallDescriber d = describer(calls_[i].kind);
    if (!d) continue;
    const std::string what = d(calls_[i]);
    if (!what.empty()) os << "fused #" << i << ": " << what << '\n';
  }
  return os.str();
}

}  // namespace mmrec::autograd
