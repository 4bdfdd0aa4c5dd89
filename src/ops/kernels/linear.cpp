#include "ops/kernels/linear.h"

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "ops/kernels/activation.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/kernels/reduce.h"

namespace mmrec::kernels {
namespace {
using dnnl::memory;
using dt = memory::data_type;

// Elementwise passes under this many elements stay on the calling thread:
// waking the second OpenMP thread costs more than it saves.
constexpr int64_t kSerialElems = 1 << 16;

int eltwise_threads(int64_t n) { return n < kSerialElems ? 1 : 0; }

memory::desc flat(int64_t n, dt type) { return memory::desc({n}, type, memory::format_tag::a); }
}  // namespace

void linear_fwd(const Tensor& x, const Tensor& w, const Tensor& b, ops::Activation act, Tensor& y) {
  gemm(x, w.transpose(0, 1), y, b, act);  // [M, K] · [K, N] with Wᵀ a strided view of w
}

size_t col_sum_scratch_bytes(int64_t M, int64_t N) { return sum_axis_scratch_bytes(1, M, N); }

void col_sum(const Tensor& dy, Tensor& db, void* scratch, ColSum method) {
  const int64_t M = dy.shape()[0], N = dy.shape()[1];
  if (N == 0) return;
  if (method == ColSum::sum_axis) {  // M = 0 gives zeros
    sum_axis_f32(dy.data<float>(), 1, M, N, 1.0f, db.data<float>(), scratch);
    return;
  }
  if (M <= 1) {  // oneDNN rejects a reduction that reduces nothing
    if (M == 0) db.fill(0.0);
    else std::memcpy(db.raw_data(), dy.raw_data(), static_cast<size_t>(N) * sizeof(float));
    return;
  }
  if (method == ColSum::matmul) {
    // db[1, N] = ones[1, M] · dy[M, N]; the ones live per thread and only grow.
    thread_local std::vector<float> ones;
    if (static_cast<int64_t>(ones.size()) < M) ones.assign(static_cast<size_t>(M), 1.0f);
    Tensor o = Tensor::from_blob(ones.data(), {1, M}, DType::f32, nullptr);
    Tensor out = db.reshape({1, N});
    gemm(o, dy, out);
    return;
  }
  DnnlThreads threads(eltwise_threads(M * N));
  PrimitiveKey key("reduction");
  key.add(M).add(N).add(dnnl_max_threads());
  const memory::desc src({M, N}, dt::f32, memory::format_tag::ab), dst({1, N}, dt::f32, memory::format_tag::ab);
  auto prim = cached_primitive(key.str(), [&] {
    return dnnl::reduction(dnnl::reduction::primitive_desc(
        dnnl::reduction::desc(dnnl::algorithm::reduction_sum, src, dst, 0.0f, 0.0f), user_scratchpad(), dnnl_engine()));
  });
  memory sm(src, dnnl_engine(), dy.raw_data()), dm(dst, dnnl_engine(), db.raw_data());
  run_primitive(prim, {{DNNL_ARG_SRC, sm}, {DNNL_ARG_DST, dm}});
}

// The forward activation pass stays on oneDNN's eltwise primitive: it gives
// the same bits as the GEMM's gelu post-op of no-grad forwards (inference,
// checkpointing's first pass, QAT observers), which a Highway gelu would
// not. The backward has no such twin: it runs the Highway kernel of
// ops::gelu / ops::sigmoid (kernels/activation.h), 1.2x (sigmoid) to 2.1x
// (gelu) the eltwise primitive on 8192x2048 (bench linear_act_*).
void act_forward(ops::Activation act, const Tensor& x, Tensor& y) {
  const int64_t n = x.numel();
  if (act == ops::Activation::none) {
    if (!x.same(y) && x.raw_data() != y.raw_data()) y.copy_from(x.reshape(y.shape()));
    return;
  }
  if (n == 0) return;
  const auto alg = act == ops::Activation::gelu ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_logistic;
  DnnlThreads threads(eltwise_threads(n));
  PrimitiveKey key("eltwise_fwd");
  key.add(n).add(static_cast<int64_t>(act)).add(dnnl_max_threads());
  const memory::desc md = flat(n, dt::f32);
  auto prim = cached_primitive(key.str(), [&] {
    return dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, alg, md, 0.0f, 0.0f), user_scratchpad(),
        dnnl_engine()));
  });
  memory xm(md, dnnl_engine(), x.raw_data()), ym(md, dnnl_engine(), y.raw_data());
  run_primitive(prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}});
}

void act_backward(ops::Activation act, const Tensor& dy, const Tensor& saved, Tensor& dx) {
  if (act == ops::Activation::none) {
    if (dx.raw_data() != dy.raw_data()) dx.copy_from(dy.reshape(dx.shape()));
    return;
  }
  // gelu's derivative needs its input; σ' = y (1 - y) needs only the output.
  if (dy.numel() > 0)
    activation_bwd_f32(act == ops::Activation::gelu ? Activation::gelu : Activation::sigmoid, saved.data<float>(),
                       dy.data<float>(), dx.data<float>(), dy.numel());
}

void convert(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  check((src.dtype() == DType::f32 || src.dtype() == DType::bf16) &&
            (dst.dtype() == DType::f32 || dst.dtype() == DType::bf16),
        "convert: only f32 and bf16, got ", dtype_name(src.dtype()), " -> ", dtype_name(dst.dtype()));
  const dt st = src.dtype() == DType::f32 ? dt::f32 : dt::bf16, dtt = dst.dtype() == DType::f32 ? dt::f32 : dt::bf16;
  DnnlThreads threads(eltwise_threads(n));
  PrimitiveKey key("reorder");
  key.add(n).add(static_cast<int64_t>(st)).add(static_cast<int64_t>(dtt)).add(dnnl_max_threads());
  auto& eng = dnnl_engine();
  const memory::desc smd = flat(n, st), dmd = flat(n, dtt);
  auto prim = cached_primitive(
      key.str(), [&] { return dnnl::reorder(dnnl::reorder::primitive_desc(eng, smd, eng, dmd, user_scratchpad())); });
  memory sm(smd, eng, src.raw_data()), dm(dmd, eng, dst.raw_data());
  run_primitive(prim, {{DNNL_ARG_FROM, sm}, {DNNL_ARG_TO, dm}});
}

struct PackedLinear::Impl {
  Tensor w, b;  // the originals: the path for other row counts
  ops::Activation act = ops::Activation::none;
  int64_t rows = 0, K = 0, N = 0;
  int threads = 0;       // OpenMP threads the primitive was created for
  dnnl::matmul prim;     // empty when there is nothing to pack
  dnnl::memory packed;   // w in the layout prim chose (format_tag::any)
  // Primitives for other row counts (up to kOtherRows) that read `packed`
  // as it is; empty where oneDNN wants another layout (then linear_fwd).
  mutable std::mutex mu;
  mutable std::map<std::pair<int64_t, int>, std::optional<dnnl::matmul>> others;  // (rows, threads)

  dnnl::matmul::primitive_desc make(int64_t M) const;
  const dnnl::matmul* for_rows(int64_t M) const;
};

namespace {
// Rows that may run through another row count's packed weights: the batched
// token calls of several streams. oneDNN 2.6 picks one layout for 1-64 rows
// of the model's shapes (f32 and bf16); prompts and training shapes keep
// their own path.
constexpr int64_t kOtherRows = 64;
}  // namespace

dnnl::matmul::primitive_desc PackedLinear::Impl::make(int64_t M) const {
  const dt type = w.dtype() == DType::f32 ? dt::f32 : dt::bf16;
  const memory::desc xd({M, K}, type, memory::format_tag::ab), any({K, N}, type, memory::format_tag::any);
  const memory::desc bd({1, N}, dt::f32, memory::format_tag::ab), yd({M, N}, dt::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr = user_scratchpad();
  dnnl::post_ops po;
  if (act != ops::Activation::none)
    po.append_eltwise(1.0f, act == ops::Activation::gelu ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_logistic, 0.0f, 0.0f);
  attr.set_post_ops(po);
  auto d = b.defined() ? dnnl::matmul::desc(xd, any, bd, yd) : dnnl::matmul::desc(xd, any, yd);
  return dnnl::matmul::primitive_desc(d, attr, dnnl_engine());
}

const dnnl::matmul* PackedLinear::Impl::for_rows(int64_t M) const {
  if (M == rows) return &prim;
  if (M < 1 || M > kOtherRows) return nullptr;
  const int t = gemm_threads(M, K, N);
  std::lock_guard<std::mutex> lock(mu);
  auto [it, fresh] = others.try_emplace({M, t});
  if (fresh) {
    DnnlThreads scope(t);
    const auto pd = make(M);
    if (pd.weights_desc() == packed.get_desc()) it->second = dnnl::matmul(pd);
  }
  return it->second ? &*it->second : nullptr;  // std::map nodes stay put
}

PackedLinear::PackedLinear(const Tensor& w, const Tensor& b, ops::Activation act, int64_t rows) {
  check(w.dim() == 2 && (w.dtype() == DType::f32 || w.dtype() == DType::bf16),
        "PackedLinear: weight must be f32 or bf16 [Out, In], got ", dtype_name(w.dtype()), " ", w.shape());
  check(!b.defined() || (b.dtype() == DType::f32 && b.dim() == 1 && b.shape()[0] == w.shape()[0]),
        "PackedLinear: bias ", b.defined() ? b.shape() : Shape{}, " does not match weight ", w.shape());
  auto p = std::make_shared<Impl>();
  p->w = w.strides()[0] == 1 || w.strides()[1] == 1 ? w.detach() : w.contiguous().detach();
  p->b = b.defined() ? b.contiguous().detach() : Tensor();
  p->act = act;
  p->rows = rows;
  p->N = w.shape()[0];
  p->K = w.shape()[1];
  if (rows > 0 && p->K > 0 && p->N > 0) {
    DnnlThreads threads(gemm_threads(rows, p->K, p->N));
    p->threads = dnnl_max_threads();
    const dt type = w.dtype() == DType::f32 ? dt::f32 : dt::bf16;
    auto& eng = dnnl_engine();
    const auto pd = p->make(rows);
    p->prim = dnnl::matmul(pd);
    // The user's Wᵀ [K, N] is a strided view of w [N, K]; one reorder packs it.
    memory user({{p->K, p->N}, type, {p->w.strides()[1], p->w.strides()[0]}}, eng, p->w.raw_data());
    p->packed = memory(pd.weights_desc(), eng);
    run_primitive(dnnl::reorder(user, p->packed, user_scratchpad()), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, p->packed}});
  }
  impl_ = std::move(p);
}

int64_t PackedLinear::rows() const { return impl_ ? impl_->rows : 0; }
int64_t PackedLinear::in_features() const { return impl_ ? impl_->K : 0; }
int64_t PackedLinear::out_features() const { return impl_ ? impl_->N : 0; }
DType PackedLinear::dtype() const { return impl_ ? impl_->w.dtype() : DType::f32; }

void PackedLinear::forward(const Tensor& x, Tensor& y) const {
  check(impl_ != nullptr, "PackedLinear: forward on an empty PackedLinear");
  const Impl& p = *impl_;
  const int64_t M = x.dim() == 2 ? x.shape()[0] : -1;
  const bool dense_rows = x.dim() == 2 && x.strides()[1] == 1 && (M == 1 || x.strides()[0] == p.K);
  const dnnl::matmul* prim = p.prim && dense_rows ? p.for_rows(M) : nullptr;
  if (!prim) return linear_fwd(x, p.w, p.b, p.act, y);
  check(x.dtype() == p.w.dtype() && x.shape()[1] == p.K, "PackedLinear: x ", x.shape(), " ", dtype_name(x.dtype()),
        " does not match weight ", p.w.shape(), " ", dtype_name(p.w.dtype()));
  DnnlThreads threads(M == p.rows ? p.threads : gemm_threads(M, p.K, p.N));
  const dt type = x.dtype() == DType::f32 ? dt::f32 : dt::bf16;
  auto& eng = dnnl_engine();
  memory xm({{M, p.K}, type, memory::format_tag::ab}, eng, x.raw_data());
  memory ym({{M, p.N}, dt::f32, memory::format_tag::ab}, eng, y.raw_data());
  if (p.b.defined()) {
    memory bm({{1, p.N}, dt::f32, memory::format_tag::ab}, eng, p.b.raw_data());
    run_primitive(*prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, p.packed}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}});
  } else {
    run_primitive(*prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, p.packed}, {DNNL_ARG_DST, ym}});
  }
}

namespace ref {
void linear_fwd(const Tensor& x, const Tensor& w, const Tensor& b, ops::Activation act, Tensor& y) {
  gemm(x, w.transpose(0, 1), y, b, act);
}

void col_sum(const Tensor& dy, Tensor& db) {
  const int64_t M = dy.shape()[0], N = dy.shape()[1];
  const float* p = dy.data<float>();
  float* out = db.data<float>();
  for (int64_t j = 0; j < N; ++j) {
    double s = 0;
    for (int64_t i = 0; i < M; ++i) s += p[i * N + j];
    out[j] = static_cast<float>(s);
  }
}

void act_backward(ops::Activation act, const Tensor& dy, const Tensor& saved, Tensor& dx) {
  const float* g = dy.data<float>();
  const float* sv = saved.data<float>();
  float* out = dx.data<float>();
  const double c = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0, n = dy.numel(); i < n; ++i) {
    const double x = sv[i];
    double d = 1.0;
    if (act == ops::Activation::sigmoid) {
      d = x * (1.0 - x);  // saved is σ
    } else if (act == ops::Activation::gelu) {
      const double u = c * (x + 0.044715 * x * x * x), t = std::tanh(u);
      d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
    }
    out[i] = static_cast<float>(g[i] * d);
  }
}
}  // namespace ref

}  // namespace mmrec::kernels
