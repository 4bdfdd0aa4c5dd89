#include "train/optimizer.h"

#include <cmath>

#include "autograd/tape.h"
#include "train/kernels/optim.h"

namespace mmrec {

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
}

void AdamW::step(double lr) {
  autograd::NoGradGuard no_grad;
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    check(g.shape() == p.shape(), "AdamW: gradient of ", name, " has shape ", g.shape(), ", parameter ", p.shape());
    const Tensor gc = g.contiguous();
    const auto s = kernels::adamw_scalars(lr, beta1_, beta2_, eps_, decay_[i] ? wd_ : 0.0, t_);
    kernels::adamw_f32(p.data<float>(), gc.data<float>(), m_[i].data<float>(), v_[i].data<float>(), p.numel(), s);
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
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

double grad_norm(const std::vector<NamedTensor>& params) {
  double ss = 0.0;
  for (const auto& [name, p] : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    const Tensor gc = g.contiguous();
    ss += kernels::sum_squares_f32(gc.data<float>(), gc.numel());
  }
  return std::sqrt(ss);
}

double clip_grad_norm(const std::vector<NamedTensor>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm <= 0.0 || !std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    check(g.is_contiguous(), "clip_grad_norm: gradient of ", name, " is not contiguous");
    kernels::scale_inplace_f32(g.data<float>(), g.numel(), static_cast<float>(coef));
  }
  return norm;
}

}  // namespace mmrec
