// The call representation: every kernel invocation, forward, backward, the
// tape's gradient accumulation, fills, copies, AdamW and clipping, goes
// through dispatch(), which runs it and, inside a capture, records it as a
// Call. A captured step is a Graph: a flat list of calls over values, which
// passes rewrite (dead calls, memory planning) and replay() re-executes with
// no checks, dispatch or allocation.
//
//   struct ScaleAttrs { int64_t n; float s; };
//   void run_scale(const ScaleAttrs& a, const Tensor* in, const Tensor* out) {
//     kernels::scale_f32(in[0].data<float>(), a.s, out[0].data<float>(), a.n);
//   }
//   autograd::dispatch<run_scale>(OpKind::affine, ScaleAttrs{n, s}, {x}, {y});
//
// Autograd defines the interface; the ops implement the kernels (`run_*`),
// so layering still points down. Attributes are small PODs copied into a
// fixed block: sizes, flags and the decisions a kernel takes per call (scan
// plan), frozen at capture.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::autograd {

// One value per kernel entry point.
enum class OpKind : uint16_t {
  copy, fill,                                             // Tensor data movement
  binary, unary, affine,                                  // elementwise
  activation, activation_bwd, clamp, clamp_bwd, sigmoid_mul, sigmoid_mul_bwd,
  sum_axis, expand_axis,                                  // reductions
  matmul, gemm, linear, linear_packed, act_forward, act_backward, col_sum, convert,
  rmsnorm, rmsnorm_bwd, softmax, softmax_bwd, mask_u8,
  cross_entropy, cross_entropy_bwd, loss_mean, next_token_targets, check_ids,
  embedding, embedding_bwd, copy_rows,
  linear_scan, linear_scan_bwd, cumprod_scan, cumprod_scan_bwd,
  grad_accumulate,                                        // the tape
  adamw, sum_squares, clip_coef, clip_scale,              // optimizer and clipping
  fake_quant, fake_quant_bwd, observe_min_max, quant_params, quantize_u8, linear_int8,  // quantization
  memory_update, memattn, memattn_bwd,                    // the memory: generation's slots, attention
  fused_pointwise,                                        // a fused chain of elementwise calls (ops/fuse_pointwise.cpp)
  count_
};
const char* op_kind_name(OpKind k);

// What a value is to the step: planning moves only temporaries.
enum class Role : uint8_t { input, parameter, output, temporary, constant };
const char* role_name(Role r);

// A kernel's attributes, copied into a fixed block (a trivially copyable
// struct of at most kAttrBytes bytes).
struct Attrs {
  static constexpr size_t kAttrBytes = 128;
  alignas(16) unsigned char bytes[kAttrBytes];
  template <class A> static Attrs of(const A& a) {
    static_assert(std::is_trivially_copyable_v<A> && sizeof(A) <= kAttrBytes, "attributes must be a small POD");
    Attrs r;
    std::memcpy(r.bytes, &a, sizeof(A));
    return r;
  }
};

// Runs one call: attributes, inputs, outputs (undefined tensors for absent
// optional arguments).
using KernelFn = void (*)(const void* attrs, const Tensor* in, const Tensor* out);

struct Call {
  OpKind kind;
  KernelFn run;
  Attrs attrs;
  std::vector<Tensor> in, out;        // views the kernel reads and writes
  std::vector<int32_t> in_ids, out_ids;  // their value ids in the graph (-1: undefined)
};

// A tensor view used by the graph, and the buffer (Storage) behind it.
struct Value {
  int32_t id = 0;
  int32_t buffer = 0;
  Shape shape;
  DType dtype = DType::f32;
  Role role = Role::temporary;
};

struct Buffer {
  std::shared_ptr<Storage> storage;
  Role role = Role::temporary;
  size_t bytes = 0;
  int64_t first = -1, last = -1;  // first and last call touching it
  bool written_first = false;     // its first touch is a write (else a host-made constant)
  int64_t offset = -1;            // in the arena, for planned temporaries
};

class Graph {
 public:
  // Re-executes every call on the captured buffers.
  void replay() const;
  size_t size() const { return calls_.size(); }
  const std::vector<Call>& calls() const { return calls_; }
  const std::vector<Value>& values() const { return values_; }
  const std::vector<Buffer>& buffers() const { return buffers_; }
  // Bytes of temporaries: allocated during capture, and in the planned arena.
  size_t captured_temp_bytes() const { return captured_bytes_; }
  size_t planned_bytes() const { return planned_bytes_; }
  // The most bytes of temporaries live during one call: no plan needs less.
  size_t live_peak_bytes() const { return live_peak_bytes_; }
  size_t removed_calls() const { return removed_; }
  size_t fused_calls() const { return fused_; }
  // One line per call (MMREC_DEBUG=3), or the summary line (=1).
  std::string summary(const std::string& name) const;
  std::string listing() const;
  // One line per fused call, naming what it fuses (MMREC_DEBUG=2):
  // "fused #12: binary.mul -> clamp (2 calls, 1 pass over 4.0 MiB)".
  std::string fusions() const;

 private:
  friend class Capture;
  std::vector<Call> calls_;
  std::vector<Value> values_;
  std::vector<Buffer> buffers_;
  std::shared_ptr<void> arena_;
  size_t captured_bytes_ = 0, planned_bytes_ = 0, live_peak_bytes_ = 0, removed_ = 0, fused_ = 0;
};

// True while this thread is inside a capture.
bool capturing();

// Runs a kernel now and, while capturing, records the call.
void dispatch_call(OpKind kind, KernelFn run, const Attrs& attrs, std::initializer_list<Tensor> in,
                   std::initializer_list<Tensor> out);

// Seconds this thread spent in kernel calls, by kind, eager and replayed
// alike, while it is set (benchmarks: the time a step spends in its GEMMs,
// measured inside the step). Copies and fills Tensor does itself outside a
// capture are not kernel calls and not counted.
struct KernelClock {
  double seconds[static_cast<size_t>(OpKind::count_)] = {};
  int64_t calls[static_cast<size_t>(OpKind::count_)] = {};
};
void set_kernel_clock(KernelClock* clock);  // this thread; nullptr stops
KernelClock* kernel_clock();
// Runs one call under the clock.
void run_clocked(KernelClock& clock, OpKind kind, KernelFn run, const void* attrs, const Tensor* in,
                 const Tensor* out);

template <class A, void (*F)(const A&, const Tensor*, const Tensor*)>
void kernel_thunk(const void* attrs, const Tensor* in, const Tensor* out) {
  F(*static_cast<const A*>(attrs), in, out);
}

template <auto F, class A>
inline void dispatch(OpKind kind, const A& attrs, std::initializer_list<Tensor> in, std::initializer_list<Tensor> out) {
  if (!capturing()) {
    // Eager: straight to the kernel.
    const Tensor* ip = in.begin();
    const Tensor* op = out.begin();
    if (KernelClock* k = kernel_clock()) [[unlikely]]
      return run_clocked(*k, kind, &kernel_thunk<A, F>, &attrs, ip, op);
    F(attrs, ip, op);
    return;
  }
  dispatch_call(kind, &kernel_thunk<A, F>, Attrs::of(attrs), in, out);
}

// A rewrite of the call list between dead-call elimination and memory
// planning (ops register theirs: see ops/linear.cpp, ops/fuse_pointwise.cpp, ops/copy_chains.cpp). `temporary` tells a
// buffer made and dropped inside the capture. Returns the calls it removed.
using GraphPass = size_t (*)(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary);
void register_pass(const char* name, GraphPass pass);
// While one is alive (on any thread), captures skip the registered passes:
// the replay runs the calls the eager run made (dead calls still removed,
// temporaries still planned). MMREC_PASSES=0 does the same for the whole
// process. For bisecting a suspected pass problem, and for measuring what
// the passes buy (mmrec-bench's unfused_* figures).
class PassesOff {
 public:
  PassesOff();
  ~PassesOff();
  PassesOff(const PassesOff&) = delete;
  PassesOff& operator=(const PassesOff&) = delete;
};
bool passes_enabled();
// A new buffer for a call a pass adds: a temporary of the graph being
// captured, planned with the others (only inside a pass).
Tensor pass_temporary(const Shape& shape, DType dtype);
// Removes the calls marked in `drop` (keeping the others' order); returns how many.
size_t erase_calls(std::vector<Call>& calls, const std::vector<bool>& drop);
// Which calls read and write a buffer (call indices in order, one entry per
// view: a call reading two views of it is listed twice).
struct BufferUses {
  std::vector<size_t> readers, writers;
  size_t uses() const { return readers.size() + writers.size(); }
  size_t first() const;  // the first call touching it
  size_t last() const;   // the last
};
// The uses of every buffer the calls touch: what a pass looks up.
using BufferIndex = std::unordered_map<const Storage*, BufferUses>;
BufferIndex index_buffers(const std::vector<Call>& calls);
// The view is its whole buffer: contiguous from the buffer's first byte to
// its last (a pass that re-places or drops a buffer needs it).
bool whole_buffer(const Tensor& t);

// What a call made by a pass fuses ("binary.mul -> clamp (2 calls, ...)"),
// or "" for a call of that kind that fuses nothing; the ops that fuse
// register one per kind. Graph::fusions() prints them.
using CallDescriber = std::string (*)(const Call& call);
void register_describer(OpKind kind, CallDescriber describe);

// Records every call `fn` makes while running it once, eagerly. `inputs`
// are the tensors the caller rewrites before each replay; buffers that
// existed before and are not inputs are parameters or state (kept in place).
// Reading tensor data on the host inside fn throws, naming the last op.
// Then: dead calls are removed and temporaries planned into one 64-byte
// aligned arena by liveness.
class Capture {
 public:
  static Graph run(const std::function<void()>& fn, const std::vector<Tensor>& inputs);
};

// MMREC_DEBUG from the environment (0 when unset).
int debug_level();

}  // namespace mmrec::autograd

MMREC_API_END
