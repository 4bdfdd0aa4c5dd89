#include "ops/kernels/linear.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "ops/kernels/activation.h"
#include "ops/kernels/convert.h"
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

// gelu runs the Highway kernel of ops::gelu, 2.8x oneDNN's eltwise
// primitive on 8192x2048 (bench linear_act_gelu: fwd_gbps against
// fwd_dnnl_gbps). Its bits differ in the last place from the GEMM's gelu
// post-op of no-grad forwards (ops::TrainingActivations, ops/linear.h, gives
// a no-grad forward this path). sigmoid stays oneDNN's eltwise primitive, the
// twin of the post-op it is otherwise. The backward runs the Highway kernels
// of ops::gelu / ops::sigmoid (kernels/activation.h), 1.15-1.4x (sigmoid) and
// 2.1-2.4x (gelu) the eltwise primitive.
void act_forward(ops::Activation act, const Tensor& x, Tensor& y) {
  const int64_t n = x.numel();
  if (act == ops::Activation::none) {
    if (!x.same(y) && x.raw_data() != y.raw_data()) y.copy_from(x.reshape(y.shape()));
    return;
  }
  if (n == 0) return;
  if (act == ops::Activation::gelu) return activation_f32(Activation::gelu, x.data<float>(), y.data<float>(), n);
  DnnlThreads threads(eltwise_threads(n));
  PrimitiveKey key("eltwise_fwd");
  key.add(n).add(static_cast<int64_t>(act)).add(dnnl_max_threads());
  const memory::desc md = flat(n, dt::f32);
  auto prim = cached_primitive(key.str(), [&] {
    return dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_logistic, md, 0.0f,
                                    0.0f),
        user_scratchpad(), dnnl_engine()));
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

void act_backward_col_sum(ops::Activation act, const Tensor& dy, const Tensor& saved, Tensor& dx, Tensor& db,
                          void* scratch) {
  const int64_t M = dy.shape()[0], N = dy.shape()[1];
  if (act == ops::Activation::none) {  // no activation: a copy, then the sums
    act_backward(act, dy, saved, dx);
    col_sum(dx, db, scratch);
    return;
  }
  const Activation op = act == ops::Activation::gelu ? Activation::gelu : Activation::sigmoid;
  const float *g = dy.data<float>(), *sv = saved.data<float>();
  float* d = dx.data<float>();
  // The block of dx: rows [k0, k1), columns [c0, c1).
  auto make = [&](int64_t, int64_t k0, int64_t k1, int64_t c0, int64_t c1) {
    if (c0 == 0 && c1 == N) {  // whole rows: one contiguous run
      activation_bwd_f32(op, sv + k0 * N, g + k0 * N, d + k0 * N, (k1 - k0) * N);
      return;
    }
    for (int64_t k = k0; k < k1; ++k)
      activation_bwd_f32(op, sv + k * N + c0, g + k * N + c0, d + k * N + c0, c1 - c0);
  };
  sum_axis_f32(d, 1, M, N, 1.0f, db.data<float>(), scratch, make);
}

void gelu_remat_backward_col_sum(const Tensor& dy, const Tensor& saved, Tensor& y, Tensor& dx, Tensor& db,
                                 void* scratch) {
  const int64_t M = dy.shape()[0], N = dy.shape()[1];
  const float *g = dy.data<float>(), *sv = saved.data<float>();
  float *a = y.data<float>(), *d = dx.data<float>();
  // The blocks of y and dx: rows [k0, k1), columns [c0, c1).
  auto make = [&](int64_t, int64_t k0, int64_t k1, int64_t c0, int64_t c1) {
    if (c0 == 0 && c1 == N) {  // whole rows: one contiguous run
      gelu_fwd_bwd_f32(sv + k0 * N, g + k0 * N, a + k0 * N, d + k0 * N, (k1 - k0) * N);
      return;
    }
    for (int64_t k = k0; k < k1; ++k)
      gelu_fwd_bwd_f32(sv + k * N + c0, g + k * N + c0, a + k * N + c0, d + k * N + c0, c1 - c0);
  };
  sum_axis_f32(d, 1, M, N, 1.0f, db.data<float>(), scratch, make);
}

void convert(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  check((src.dtype() == DType::f32 || src.dtype() == DType::bf16) &&
            (dst.dtype() == DType::f32 || dst.dtype() == DType::bf16),
        "convert: only f32 and bf16, got ", dtype_name(src.dtype()), " -> ", dtype_name(dst.dtype()));
  if (src.dtype() == dst.dtype()) {
    if (src.raw_data() != dst.raw_data()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  if (src.dtype() == DType::f32) f32_to_bf16(src.data<float>(), static_cast<uint16_t*>(dst.raw_data()), n);
  else bf16_to_f32(static_cast<const uint16_t*>(src.raw_data()), dst.data<float>(), n);
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
