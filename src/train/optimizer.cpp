#include "train/optimizer.h"

#include <cmath>
#include <cstring>

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "train/kernels/optim.h"

namespace mmrec {
namespace {
using autograd::dispatch;
using autograd::OpKind;

struct AdamWAttrs {
  int64_t n;
  int which;  // 0: decayed, 1: not decayed (the row of the staged scalars)
};
// in: g, scalars; out: p, m, v (updated in place).
void run_adamw(const AdamWAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::AdamWScalars s;
  std::memcpy(&s, in[1].data<uint8_t>() + a.which * sizeof(s), sizeof(s));
  kernels::adamw_f32(out[0].data<float>(), in[0].data<float>(), out[1].data<float>(), out[2].data<float>(), a.n, s);
}

struct ClipAttrs {
  int64_t n, slot;
  double max_norm;
  double inv_scale;     // a loss scaler's 1 / scale (1 without one)
  bool scale_in_input;  // clip_coef: inv_scale is read from in[1] at run time instead
};
double load_f64(const Tensor& t, int64_t i) {
  double d;
  std::memcpy(&d, t.data<int64_t>() + i, sizeof d);
  return d;
}
void store_f64(const Tensor& t, int64_t i, double d) { std::memcpy(t.data<int64_t>() + i, &d, sizeof d); }
// out: slot `slot` of the i64 [k] partial sums, a double's bits.
void run_sum_squares(const ClipAttrs& a, const Tensor* in, const Tensor* out) {
  store_f64(out[0], a.slot, kernels::sum_squares_f32(in[0].data<float>(), a.n));
}
// The global norm from the partial sums, added in parameter order; then the
// coefficient exactly as torch.nn.utils.clip_grad_norm_ (double precision).
// With a loss scale the norm is the unscaled gradients' and the coefficient
// unscales too; a non-finite norm scales nothing (the step is skipped).
void run_clip_coef(const ClipAttrs& a, const Tensor* in, const Tensor* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < a.n; ++i) ss += load_f64(in[0], i);
  const double inv_scale = a.scale_in_input ? load_f64(in[1], 0) : a.inv_scale;
  const double norm = std::sqrt(ss) * inv_scale;
  const bool finite = std::isfinite(norm);
  const double clip = a.max_norm > 0.0 && finite ? a.max_norm / (norm + 1e-6) : 1.0;
  const double coef = clip < 1.0 ? clip * inv_scale : inv_scale;
  store_f64(out[0], 0, norm);
  store_f64(out[0], 1, coef);
  out[0].data<int64_t>()[2] = finite && coef != 1.0;
}
void run_clip_scale(const ClipAttrs& a, const Tensor* in, const Tensor* out) {
  if (in[0].data<int64_t>()[2]) kernels::scale_inplace_f32(out[0].data<float>(), a.n, static_cast<float>(load_f64(in[0], 1)));
}
}  // namespace

bool wants_weight_decay(const std::string& name, const Tensor& t, const OptimConfig& c) {
  auto ends_with = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (name.find("embed") != std::string::npos) return c.decay_embeddings;
  if (t.dim() < 2 || ends_with(".bias") || name.find("norm") != std::string::npos) return c.decay_norms_and_biases;
  return true;
}

std::vector<bool> decay_mask(const std::vector<NamedTensor>& params, const OptimConfig& c) {
  std::vector<bool> m;
  m.reserve(params.size());
  for (const auto& [name, t] : params) m.push_back(wants_weight_decay(name, t, c));
  return m;
}

AdamW::AdamW(std::vector<NamedTensor> params, std::vector<bool> decay, double beta1, double beta2, double eps,
             double weight_decay)
    : params_(std::move(params)), decay_(std::move(decay)), beta1_(beta1), beta2_(beta2), eps_(eps), wd_(weight_decay) {
  check(decay_.size() == params_.size(), "AdamW: ", decay_.size(), " decay flags for ", params_.size(),
        " parameters");
  for (const auto& [name, p] : params_) {
    check(p.defined() && p.dtype() == DType::f32 && p.is_contiguous(), "AdamW: parameter ", name,
          " must be a contiguous f32 tensor");
    m_.push_back(Tensor::zeros(p.shape()));
    v_.push_back(Tensor::zeros(p.shape()));
  }
  scalars_ = Tensor::zeros({2 * static_cast<int64_t>(sizeof(kernels::AdamWScalars))}, DType::u8);
}

void AdamW::step(double lr) {
  stage(lr);
  apply();
}

void AdamW::stage(double lr) {
  ++t_;
  const kernels::AdamWScalars s[2] = {kernels::adamw_scalars(lr, beta1_, beta2_, eps_, wd_, t_),
                                      kernels::adamw_scalars(lr, beta1_, beta2_, eps_, 0.0, t_)};
  std::memcpy(scalars_.data<uint8_t>(), s, sizeof s);
}

void AdamW::apply() {
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    check(g.shape() == p.shape(), "AdamW: gradient of ", name, " has shape ", g.shape(), ", parameter ", p.shape());
    const Tensor gc = g.contiguous();
    dispatch<run_adamw>(OpKind::adamw, AdamWAttrs{p.numel(), decay_[i] ? 0 : 1}, {gc, scalars_}, {p, m_[i], v_[i]});
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

void AdamW::zero_grad_in_place() {
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) {
      p.grad().fill(0.0);
    } else {
      Tensor(p).set_grad(Tensor::zeros(p.shape()));
    }
  }
}

std::vector<NamedTensor> AdamW::state_tensors() const {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back("exp_avg." + params_[i].first, m_[i]);
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back("exp_avg_sq." + params_[i].first, v_[i]);
  return out;
}

void AdamW::load_state(const std::vector<NamedTensor>& tensors, int64_t steps) {
  auto find = [&](const std::string& name) -> const Tensor& {
    for (const auto& [n, t] : tensors)
      if (n == name) return t;
    fail("optimizer state: missing tensor ", name);
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    for (int k = 0; k < 2; ++k) {
      const std::string name = (k ? "exp_avg_sq." : "exp_avg.") + params_[i].first;
      const Tensor& t = find(name);
      check(t.shape() == params_[i].second.shape() && t.dtype() == DType::f32, "optimizer state: ", name,
            " has shape ", t.shape(), " (", dtype_name(t.dtype()), "), parameter ", params_[i].second.shape());
      (k ? v_[i] : m_[i]).copy_from(t);
    }
  }
  check(steps >= 0, "optimizer state: negative step count ", steps);
  t_ = steps;
}

namespace {
// inv_scale_value: an i64 [1] tensor with a double's bits, or undefined (then inv_scale).
Tensor clip_impl(const std::vector<NamedTensor>& params, double max_norm, double inv_scale,
                 const Tensor& inv_scale_value) {
  std::vector<Tensor> grads;
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check(g.is_contiguous() && g.dtype() == DType::f32, "clip_grad_norm: gradient of ", name,
          " is not a contiguous f32 tensor");
    grads.push_back(g);
  }
  const bool in_value = inv_scale_value.defined();
  if (in_value)
    check(inv_scale_value.dtype() == DType::i64 && inv_scale_value.numel() == 1 && inv_scale_value.is_contiguous(),
          "clip_grad_norm: inv_scale must be an i64 [1] tensor holding a double's bits");
  const auto k = static_cast<int64_t>(grads.size());
  Tensor partial = Tensor::empty({k}, DType::i64), result = Tensor::empty({3}, DType::i64);
  for (int64_t i = 0; i < k; ++i)
    dispatch<run_sum_squares>(OpKind::sum_squares,
                              ClipAttrs{grads[static_cast<size_t>(i)].numel(), i, max_norm, inv_scale, false},
                              {grads[static_cast<size_t>(i)]}, {partial});
  if (in_value)
    dispatch<run_clip_coef>(OpKind::clip_coef, ClipAttrs{k, 0, max_norm, 0.0, true}, {partial, inv_scale_value},
                            {result});
  else
    dispatch<run_clip_coef>(OpKind::clip_coef, ClipAttrs{k, 0, max_norm, inv_scale, false}, {partial}, {result});
  if (max_norm > 0.0 || inv_scale != 1.0 || in_value)
    for (const Tensor& g : grads)
      dispatch<run_clip_scale>(OpKind::clip_scale, ClipAttrs{g.numel(), 0, max_norm, inv_scale, false}, {result},
                               {g});
  return result;
}
}  // namespace

Tensor clip_grad_norm_tensor(const std::vector<NamedTensor>& params, double max_norm, double inv_scale) {
  return clip_impl(params, max_norm, inv_scale, Tensor());
}

Tensor clip_grad_norm_tensor(const std::vector<NamedTensor>& params, double max_norm, const Tensor& inv_scale) {
  check(inv_scale.defined(), "clip_grad_norm: undefined inv_scale tensor");
  return clip_impl(params, max_norm, 1.0, inv_scale);
}

Tensor f64_value(double d) {
  Tensor t = Tensor::empty({1}, DType::i64);
  store_f64(t, 0, d);
  return t;
}

double clip_norm_value(const Tensor& result) { return load_f64(result, 0); }

double grad_norm(const std::vector<NamedTensor>& params) { return clip_norm_value(clip_grad_norm_tensor(params, 0.0)); }

double clip_grad_norm(const std::vector<NamedTensor>& params, double max_norm, double inv_scale) {
  return clip_norm_value(clip_grad_norm_tensor(params, max_norm, inv_scale));
}

}  // namespace mmrec
