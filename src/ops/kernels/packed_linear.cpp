// kernels::PackedLinear (declared in linear.h): a linear layer's weight
// pre-packed in oneDNN's blocked layout for token-by-token calls, in one or
// two column halves. oneDNN runs these small products on one thread (below
// gemm_threads' bar its OpenMP team loses, and a late wake-up stalls a call
// for milliseconds); a large weight is packed as two halves instead, each
// its own single-threaded primitive writing its half of y, run as two oneTBB
// tasks: the two cores stream the weight together (bench
// linear_vector_token_60MiB: 1.23-1.30x one thread on the bench config's
// weights). Each output column is the same dot product either way.
// A token-by-token call runs on memory objects and arguments made once per
// part (a call then costs two pointer updates and the execution, not four
// memory objects, a map and a scratchpad query: mmrec-bench
// model_generate_compiled, median 379 against 347 tokens/s over six
// alternating pairs on a 2-vCPU EPYC); a second thread calling the
// same part meanwhile makes its own, as before.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "ops/kernels/dnnl_context.h"
#include "ops/kernels/linear.h"
#include "tensor/threads.h"

namespace mmrec::kernels {
namespace {
using dnnl::memory;
using dt = memory::data_type;

// Rows that may run through another row count's packed weights: the batched
// token calls of several streams. oneDNN 2.6 picks one layout for 1-64 rows
// of the model's shapes (f32 and bf16); prompts and training shapes keep
// their own path.
constexpr int64_t kOtherRows = 64;
// Weights of at least this many elements (256 KiB in f32) are split in two:
// the MDI's [128, 512] weights too (bench model_generate_compiled on a 2-vCPU
// EPYC, six alternating runs: median 455 tokens/s split against 404 with the
// bar at 1 MiB, which left those 16 calls a token on one core).
constexpr int64_t kSplitElems = 1 << 16;

dt dnnl_type(DType t) { return t == DType::f32 ? dt::f32 : dt::bf16; }
}  // namespace

// A part's arguments for its own row count, made on first use: one caller at
// a time holds them (busy), others make theirs per call.
struct Binding {
  std::atomic<bool> busy{false};
  bool made = false, direct = false;  // direct: no scratchpad, so executed on the arguments as they are
  memory xm, ym;
  std::unordered_map<int, memory> args;
};

struct PackedLinear::Impl {
  Tensor w, b;  // the originals (w widened to f32, see widen): the path for other row counts
  DType dtype = DType::f32;  // of the weight given, which x must match
  bool widen = false;        // bf16 on a CPU without bf16 matmuls: w and x run widened to f32
  ops::Activation act = ops::Activation::none;
  int64_t rows = 0, K = 0, N = 0;
  // Output columns [n0, n0 + n) of y, from rows [n0, n0 + n) of w.
  struct Part {
    int64_t n0 = 0, n = 0;
    int threads = 0;       // OpenMP threads the primitive was created for
    dnnl::matmul prim;     // empty when there is nothing to pack
    dnnl::memory packed;   // w's rows in the layout prim chose (format_tag::any)
    // Primitives for other row counts (up to kOtherRows) that read `packed`
    // as it is; empty where oneDNN wants another layout (then linear_fwd).
    mutable std::map<std::pair<int64_t, int>, std::optional<dnnl::matmul>> others;  // (rows, threads)
    std::shared_ptr<Binding> binding = std::make_shared<Binding>();
  };
  std::vector<Part> parts;  // one, or two halves run as two tasks
  mutable std::mutex mu;

  dnnl::matmul::primitive_desc make(const Part& part, int64_t M) const;
  const dnnl::matmul* for_rows(const Part& part, int64_t M) const;
  void run(const Part& part, const dnnl::matmul& prim, const Tensor& x, Tensor& y) const;
  bool run_bound(const Part& part, const Tensor& x, Tensor& y) const;
};

// Runs the part's own primitive on its binding; false when another thread
// holds it.
bool PackedLinear::Impl::run_bound(const Part& part, const Tensor& x, Tensor& y) const {
  Binding& bd = *part.binding;
  if (bd.busy.exchange(true, std::memory_order_acquire)) return false;
  struct Release {
    Binding& b;
    ~Release() { b.busy.store(false, std::memory_order_release); }
  } release{bd};
  auto& eng = dnnl_engine();
  if (!bd.made) {
    bd.xm = memory({{rows, K}, dnnl_type(x.dtype()), memory::format_tag::ab}, eng, x.raw_data());
    bd.ym = memory({{rows, part.n}, dt::f32, {N, 1}}, eng, y.data<float>() + part.n0);
    bd.args = {{DNNL_ARG_SRC, bd.xm}, {DNNL_ARG_WEIGHTS, part.packed}, {DNNL_ARG_DST, bd.ym}};
    if (b.defined())
      bd.args.emplace(DNNL_ARG_BIAS, memory({{1, part.n}, dt::f32, memory::format_tag::ab}, eng,
                                            const_cast<float*>(b.data<float>()) + part.n0));
    bd.direct = scratchpad_bytes(part.prim) == 0;
    bd.made = true;
  }
  bd.xm.set_data_handle(x.raw_data());
  bd.ym.set_data_handle(y.data<float>() + part.n0);
  DnnlThreads threads(part.threads);
  if (!bd.direct) {
    run_primitive(part.prim, bd.args);
    return true;
  }
  auto& s = dnnl_stream();
  part.prim.execute(s, bd.args);
  s.wait();
  return true;
}

dnnl::matmul::primitive_desc PackedLinear::Impl::make(const Part& part, int64_t M) const {
  const dt type = dnnl_type(w.dtype());
  const memory::desc xd({M, K}, type, memory::format_tag::ab), any({K, part.n}, type, memory::format_tag::any);
  const memory::desc bd({1, part.n}, dt::f32, memory::format_tag::ab), yd({M, part.n}, dt::f32, {N, 1});
  dnnl::primitive_attr attr = user_scratchpad();
  dnnl::post_ops po;
  if (act != ops::Activation::none)
    po.append_eltwise(1.0f, act == ops::Activation::gelu ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_logistic, 0.0f, 0.0f);
  attr.set_post_ops(po);
  auto d = b.defined() ? dnnl::matmul::desc(xd, any, bd, yd) : dnnl::matmul::desc(xd, any, yd);
  return dnnl::matmul::primitive_desc(d, attr, dnnl_engine());
}

const dnnl::matmul* PackedLinear::Impl::for_rows(const Part& part, int64_t M) const {
  if (M == rows) return &part.prim;
  if (M < 1 || M > kOtherRows) return nullptr;
  const int t = gemm_threads(M, K, part.n);
  std::lock_guard<std::mutex> lock(mu);
  auto [it, fresh] = part.others.try_emplace({M, t});
  if (fresh) {
    DnnlThreads scope(t);
    const auto pd = make(part, M);
    if (pd.weights_desc() == part.packed.get_desc()) it->second = dnnl::matmul(pd);
  }
  return it->second ? &*it->second : nullptr;  // std::map nodes stay put
}

void PackedLinear::Impl::run(const Part& part, const dnnl::matmul& prim, const Tensor& x, Tensor& y) const {
  const int64_t M = x.shape()[0];
  if (M == rows && run_bound(part, x, y)) return;
  DnnlThreads threads(M == rows ? part.threads : gemm_threads(M, K, part.n));
  auto& eng = dnnl_engine();
  memory xm({{M, K}, dnnl_type(x.dtype()), memory::format_tag::ab}, eng, x.raw_data());
  memory ym({{M, part.n}, dt::f32, {N, 1}}, eng, y.data<float>() + part.n0);
  if (b.defined()) {
    memory bm({{1, part.n}, dt::f32, memory::format_tag::ab}, eng, const_cast<float*>(b.data<float>()) + part.n0);
    run_primitive(prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, part.packed}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}});
  } else {
    run_primitive(prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, part.packed}, {DNNL_ARG_DST, ym}});
  }
}

PackedLinear::PackedLinear(const Tensor& w, const Tensor& b, ops::Activation act, int64_t rows) {
  check(w.dim() == 2 && (w.dtype() == DType::f32 || w.dtype() == DType::bf16),
        "PackedLinear: weight must be f32 or bf16 [Out, In], got ", dtype_name(w.dtype()), " ", w.shape());
  check(!b.defined() || (b.dtype() == DType::f32 && b.dim() == 1 && b.shape()[0] == w.shape()[0]),
        "PackedLinear: bias ", b.defined() ? b.shape() : Shape{}, " does not match weight ", w.shape());
  auto p = std::make_shared<Impl>();
  p->dtype = w.dtype();
  p->widen = w.dtype() == DType::bf16 && !dnnl_has_avx512();
  if (p->widen) p->w = w.to(DType::f32).detach();
  else p->w = w.strides()[0] == 1 || w.strides()[1] == 1 ? w.detach() : w.contiguous().detach();
  p->b = b.defined() ? b.contiguous().detach() : Tensor();
  p->act = act;
  p->rows = rows;
  p->N = w.shape()[0];
  p->K = w.shape()[1];
  if (rows > 0 && p->K > 0 && p->N > 0) {
    // Two halves where oneDNN would run the whole product on one thread and
    // the threads knob gives two or more.
    const bool halves = num_threads() >= 2 && gemm_threads(rows, p->K, p->N) == 1 && p->K * p->N >= kSplitElems &&
                        p->N % 32 == 0;
    const int64_t n = halves ? p->N / 2 : p->N;
    p->parts.resize(halves ? 2 : 1);
    const dt type = dnnl_type(p->w.dtype());
    auto& eng = dnnl_engine();
    for (size_t i = 0; i < p->parts.size(); ++i) {
      Impl::Part& part = p->parts[i];
      part.n0 = static_cast<int64_t>(i) * n, part.n = n;
      DnnlThreads threads(gemm_threads(rows, p->K, n));
      part.threads = dnnl_max_threads();
      const auto pd = p->make(part, rows);
      part.prim = dnnl::matmul(pd);
      // The user's Wᵀ [K, n] is a strided view of w's rows; one reorder packs it.
      const int64_t es = static_cast<int64_t>(dtype_size(p->w.dtype()));
      memory user({{p->K, n}, type, {p->w.strides()[1], p->w.strides()[0]}}, eng,
                  static_cast<char*>(p->w.raw_data()) + part.n0 * p->w.strides()[0] * es);
      part.packed = memory(pd.weights_desc(), eng);
      run_primitive(dnnl::reorder(user, part.packed, user_scratchpad()),
                    {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, part.packed}});
    }
  }
  impl_ = std::move(p);
}

int64_t PackedLinear::rows() const { return impl_ ? impl_->rows : 0; }
int64_t PackedLinear::in_features() const { return impl_ ? impl_->K : 0; }
int64_t PackedLinear::out_features() const { return impl_ ? impl_->N : 0; }
DType PackedLinear::dtype() const { return impl_ ? impl_->dtype : DType::f32; }
int PackedLinear::parts() const { return impl_ ? static_cast<int>(impl_->parts.size()) : 0; }

void PackedLinear::forward(const Tensor& x_in, Tensor& y) const {
  check(impl_ != nullptr, "PackedLinear: forward on an empty PackedLinear");
  const Impl& p = *impl_;
  check(x_in.dtype() == p.dtype, "PackedLinear: x is ", dtype_name(x_in.dtype()), ", the weight ",
        dtype_name(p.dtype));
  thread_local std::vector<float> wide;
  const Tensor x = p.widen && x_in.dim() == 2 ? widen_bf16(x_in, wide) : x_in;
  const int64_t M = x.dim() == 2 ? x.shape()[0] : -1;
  const bool dense_rows = x.dim() == 2 && x.strides()[1] == 1 && (M == 1 || x.strides()[0] == p.K);
  const dnnl::matmul* prims[2] = {};
  bool ok = dense_rows && !p.parts.empty();
  for (size_t i = 0; ok && i < p.parts.size(); ++i) ok = (prims[i] = p.for_rows(p.parts[i], M)) != nullptr;
  if (!ok) return linear_fwd(x, p.w, p.b, p.act, y);
  check(x.shape()[1] == p.K, "PackedLinear: x ", x.shape(), " does not match weight ", p.w.shape());
  if (p.parts.size() == 1) return p.run(p.parts[0], *prims[0], x, y);
  parallel_for(2, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) p.run(p.parts[static_cast<size_t>(i)], *prims[i], x, y);
  });
}

}  // namespace mmrec::kernels
