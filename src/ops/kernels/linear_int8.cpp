#include "ops/kernels/linear_int8.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "ops/kernels/activation.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/kernels/fake_quant.h"
#include "ops/kernels/matmul.h"

namespace mmrec::kernels {
namespace {
using dnnl::memory;
using dt = memory::data_type;
}  // namespace

// Without VNNI (dnnl_context.h) oneDNN's u8 x s8 products sum pairs of
// products in 16 bits with saturation: 255 * 127 * 2 overflows. There each
// call splits q_x into q_x >> 1 and q_x & 1 (both at most 127, and
// 2 * 127 * 128 fits), runs both halves as one product of twice the rows
// into s32, and makes y = act((2 hi + lo - zero-point term + bias) * scale)
// itself in the order oneDNN's epilogue uses: the same exact sums.
struct Int8Linear::Impl {
  Tensor w_q, bias;  // bias: folded (accumulator units) or b / (s_x s_w) for runtime mode
  std::vector<float> out_scales;  // s_x s_w[n]
  std::vector<int64_t> row_sums;  // Σ_k q_w[n, k]
  bool split = false;             // no VNNI: the 7-bit halves above
  float x_scale = 1;
  int32_t x_zp = 0;
  ops::Activation act = ops::Activation::none;
  ZeroPointMode mode = ZeroPointMode::folded;
  int64_t K = 0, N = 0;
  struct Entry {
    dnnl::matmul prim;
    memory weights;  // packed for prim
    int threads = 0;
  };
  std::mutex mu;
  std::map<std::pair<int64_t, int>, std::shared_ptr<Entry>> by_rows;  // (M, threads)
  std::vector<std::pair<memory::desc, memory>> packed;               // one per layout seen

  std::shared_ptr<Entry> entry(int64_t M);
  void run_split(const Entry& e, const Tensor& xq, Tensor& y) const;
};

void Int8Linear::Impl::run_split(const Entry& e, const Tensor& xq, Tensor& y) const {
  const int64_t M = xq.size(0), MK = M * K;
  thread_local std::vector<uint8_t> halves;  // [2M, K]: q_x >> 1, then q_x & 1
  thread_local std::vector<int32_t> acc;     // [2M, N]
  halves.resize(static_cast<size_t>(2 * MK));
  acc.resize(static_cast<size_t>(2 * M * N));
  const uint8_t* x = xq.data<uint8_t>();
  for (int64_t i = 0; i < MK; ++i) {
    halves[static_cast<size_t>(i)] = static_cast<uint8_t>(x[i] >> 1);
    halves[static_cast<size_t>(MK + i)] = static_cast<uint8_t>(x[i] & 1);
  }
  auto& eng = dnnl_engine();
  memory xm({{2 * M, K}, dt::u8, memory::format_tag::ab}, eng, halves.data());
  memory am({{2 * M, N}, dt::s32, memory::format_tag::ab}, eng, acc.data());
  run_primitive(e.prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, e.weights}, {DNNL_ARG_DST, am}});
  // oneDNN's order: the s32 sum (less the zero point's part in runtime mode)
  // to f32, plus the bias, times the output scale, then the activation.
  const int64_t zp = mode == ZeroPointMode::runtime ? x_zp : 0;
  const float* b = bias.data<float>();
  float* out = y.data<float>();
  for (int64_t m = 0; m < M; ++m) {
    const int32_t *hi = acc.data() + m * N, *lo = acc.data() + (M + m) * N;
    float* row = out + m * N;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t sum = 2 * static_cast<int64_t>(hi[n]) + lo[n] - zp * row_sums[static_cast<size_t>(n)];
      row[n] = (static_cast<float>(sum) + b[n]) * out_scales[static_cast<size_t>(n)];
    }
  }
  if (act != ops::Activation::none)
    activation_f32(act == ops::Activation::gelu ? Activation::gelu : Activation::sigmoid, out, out, M * N);
}

std::shared_ptr<Int8Linear::Impl::Entry> Int8Linear::Impl::entry(int64_t M) {
  const int threads = gemm_threads(M, K, N);
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(M, threads);
  if (auto it = by_rows.find(key); it != by_rows.end()) return it->second;
  DnnlThreads scope(threads);
  auto e = std::make_shared<Entry>();
  e->threads = dnnl_max_threads();
  auto& eng = dnnl_engine();
  const memory::desc wd({K, N}, dt::s8, memory::format_tag::any);
  const memory::desc bd({1, N}, dt::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr = user_scratchpad();
  const auto pd = [&] {
    if (split)  // both halves, s32 out; the epilogue is forward_quantized's
      return dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(memory::desc({2 * M, K}, dt::u8, memory::format_tag::ab), wd,
                             memory::desc({2 * M, N}, dt::s32, memory::format_tag::ab)),
          attr, eng);
    attr.set_output_scales(1 << 1, out_scales);
    if (mode == ZeroPointMode::runtime) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::post_ops po;
    if (act != ops::Activation::none)
      po.append_eltwise(1.0f, act == ops::Activation::gelu ? dnnl::algorithm::eltwise_gelu_tanh
                                                           : dnnl::algorithm::eltwise_logistic,
                        0.0f, 0.0f);
    attr.set_post_ops(po);
    return dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(memory::desc({M, K}, dt::u8, memory::format_tag::ab), wd, bd,
                           memory::desc({M, N}, dt::f32, memory::format_tag::ab)),
        attr, eng);
  }();
  e->prim = dnnl::matmul(pd);
  const memory::desc want = pd.weights_desc();
  for (auto& [d, m] : packed)
    if (d == want) e->weights = m;
  if (!e->weights) {
    // w_q [N, K] row-major is Wᵀ [K, N] with strides (1, K): one reorder packs it.
    memory user({{K, N}, dt::s8, {1, K}}, eng, w_q.raw_data());
    e->weights = memory(want, eng);
    run_primitive(dnnl::reorder(user, e->weights, user_scratchpad()), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, e->weights}});
    packed.emplace_back(want, e->weights);
  }
  by_rows.emplace(key, e);
  return e;
}

Int8Linear::Int8Linear(const Tensor& w_q, const Tensor& w_scale, const Tensor& b, float x_scale,
                       int32_t x_zero_point, ops::Activation act, ZeroPointMode mode) {
  const char* op = "Int8Linear";
  check(w_q.defined() && w_q.dtype() == DType::i8 && w_q.dim() == 2, op, ": weight must be i8 [Out, In], got ",
        w_q.defined() ? dtype_name(w_q.dtype()) : "undefined", " ", w_q.defined() ? w_q.shape() : Shape{});
  const int64_t N = w_q.size(0), K = w_q.size(1);
  check(w_scale.defined() && w_scale.dtype() == DType::f32 && w_scale.shape() == Shape{N}, op,
        ": weight scales must be f32 [", N, "]");
  check(!b.defined() || (b.dtype() == DType::f32 && b.shape() == Shape{N}), op, ": bias must be f32 [", N, "]");
  check(x_scale > 0 && std::isfinite(x_scale), op, ": input scale must be positive, got ", x_scale);
  check(x_zero_point >= 0 && x_zero_point <= 255, op, ": input zero point ", x_zero_point, " is outside [0, 255]");
  auto p = std::make_shared<Impl>();
  p->w_q = w_q.contiguous().detach();
  p->x_scale = x_scale;
  p->x_zp = x_zero_point;
  p->act = act;
  p->mode = mode;
  p->K = K;
  p->N = N;
  const Tensor ws = w_scale.contiguous();
  const float* s = ws.data<float>();
  const int8_t* q = p->w_q.data<int8_t>();
  const float* pb = b.defined() ? b.contiguous().data<float>() : nullptr;
  p->split = !dnnl_has_vnni();
  p->out_scales.resize(static_cast<size_t>(N));
  p->row_sums.resize(static_cast<size_t>(N));
  p->bias = Tensor::empty({N});
  float* bias = p->bias.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    check(s[n] > 0 && std::isfinite(s[n]), op, ": weight scale of row ", n, " must be positive, got ", s[n]);
    const float os = x_scale * s[n];
    p->out_scales[static_cast<size_t>(n)] = os;
    int64_t row_sum = 0;
    for (int64_t k = 0; k < K; ++k) row_sum += q[n * K + k];
    p->row_sums[static_cast<size_t>(n)] = row_sum;
    // oneDNN 2.x applies the output scale after adding the bias: the bias
    // lives in accumulator units.
    const double folded = mode == ZeroPointMode::folded ? static_cast<double>(x_zero_point) * row_sum : 0.0;
    bias[n] = static_cast<float>((pb ? pb[n] : 0.0) / os - folded);
  }
  impl_ = std::move(p);
}

int64_t Int8Linear::in_features() const { return impl_ ? impl_->K : 0; }
int64_t Int8Linear::out_features() const { return impl_ ? impl_->N : 0; }

void Int8Linear::forward(const Tensor& x, Tensor& y) const {
  check(impl_ != nullptr, "Int8Linear: forward on an empty Int8Linear");
  check(x.defined() && x.dim() == 2, "Int8Linear: x must be [M, ", impl_->K, "]");
  Tensor xq = Tensor::empty(x.shape(), DType::u8);
  quantize_input(x, xq);
  forward_quantized(xq, y);
}

void Int8Linear::quantize_input(const Tensor& x, Tensor& xq) const {
  check(impl_ != nullptr, "Int8Linear: quantize_input on an empty Int8Linear");
  const Impl& p = *impl_;
  check(x.dtype() == DType::f32 && x.dim() == 2 && x.size(1) == p.K && x.is_contiguous(), "Int8Linear: x ",
        x.shape(), " ", dtype_name(x.dtype()), " is not contiguous f32 [M, ", p.K, "]");
  check(xq.dtype() == DType::u8 && xq.shape() == x.shape() && xq.is_contiguous(), "Int8Linear: xq must be u8 ",
        x.shape());
  quantize_u8(x.data<float>(), xq.data<uint8_t>(), x.numel(), p.x_scale, p.x_zp);
}

void Int8Linear::forward_quantized(const Tensor& xq, Tensor& y) const {
  check(impl_ != nullptr, "Int8Linear: forward on an empty Int8Linear");
  Impl& p = *impl_;
  check(xq.dtype() == DType::u8 && xq.dim() == 2 && xq.size(1) == p.K && xq.is_contiguous(), "Int8Linear: xq ",
        xq.shape(), " ", dtype_name(xq.dtype()), " is not contiguous u8 [M, ", p.K, "]");
  const int64_t M = xq.size(0);
  if (M == 0 || p.N == 0) return;
  if (p.K == 0) {  // nothing to multiply: y = act(b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < p.N; ++n)
        y.data<float>()[m * p.N + n] =
            static_cast<float>(ref::activate(p.act, p.bias.data<float>()[n] * p.out_scales[static_cast<size_t>(n)]));
    return;
  }
  const auto e = p.entry(M);
  DnnlThreads threads(e->threads);
  auto& eng = dnnl_engine();
  if (p.split) return p.run_split(*e, xq, y);
  memory xm({{M, p.K}, dt::u8, memory::format_tag::ab}, eng, xq.raw_data());
  memory ym({{M, p.N}, dt::f32, memory::format_tag::ab}, eng, y.raw_data());
  memory bm({{1, p.N}, dt::f32, memory::format_tag::ab}, eng, p.bias.raw_data());
  if (p.mode == ZeroPointMode::runtime) {
    int32_t zp = p.x_zp;
    memory zm({{1}, dt::s32, memory::format_tag::a}, eng, &zp);
    run_primitive(e->prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, e->weights}, {DNNL_ARG_BIAS, bm},
                            {DNNL_ARG_DST, ym}, {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zm}});
  } else {
    run_primitive(e->prim, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, e->weights}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}});
  }
}

namespace ref {
void int8_linear(const Tensor& x, const Tensor& w_q, const Tensor& w_scale, const Tensor& b, float x_scale,
                 int32_t x_zero_point, ops::Activation act, Tensor& y) {
  const int64_t M = x.size(0), K = x.size(1), N = w_q.size(0);
  std::vector<uint8_t> xq(static_cast<size_t>(M * K));
  ref::quantize_u8(x.data<float>(), xq.data(), M * K, x_scale, x_zero_point);
  const int8_t* q = w_q.data<int8_t>();
  const float* s = w_scale.data<float>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += (static_cast<double>(xq[static_cast<size_t>(m * K + k)]) - x_zero_point) * q[n * K + k];
      const double v = acc * x_scale * s[n] + (b.defined() ? b.data<float>()[n] : 0.0);
      y.data<float>()[m * N + n] = static_cast<float>(activate(act, v));
    }
}
}  // namespace ref

}  // namespace mmrec::kernels
