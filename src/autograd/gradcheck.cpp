#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/tape.h"
#include "tensor/random.h"

namespace mmrec::autograd {
namespace {
double project(const Tensor& y, const std::vector<float>& w) {
  const std::vector<float> v = y.to_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(v[i]) * w[i];
  return s;
}
}  // namespace

GradcheckResult gradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  GradcheckResult res;
  Generator gen(opt.seed);
  // Analytic gradients of sum(w * f(inputs)).
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.impl()->grad.reset();
  Tensor y = f(inputs);
  check(y.defined(), "gradcheck: the function returned an undefined tensor");
  const Tensor wt = rand_uniform(y.shape(), gen, -1.0f, 1.0f);
  const std::vector<float> w = wt.to_vector();
  if (y.requires_grad()) backward(y, wt);

  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    check(x.dtype() == DType::f32 && x.is_contiguous() && x.is_leaf(),
          "gradcheck: input ", k, " must be a contiguous f32 leaf");
    const Tensor grad = x.grad();
    float* p = x.data<float>();
    const int64_t n = x.numel();
    std::vector<int64_t> idx;
    if (n <= opt.max_elements) {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int64_t i = 0; i < opt.max_elements; ++i) idx.push_back(static_cast<int64_t>(gen.next_u64() % n));
    }
    for (int64_t i : idx) {
      const float orig = p[i];
      double fp, fm;
      {
        NoGradGuard ng;
        p[i] = static_cast<float>(orig + opt.eps);
        fp = project(f(inputs), w);
        p[i] = static_cast<float>(orig - opt.eps);
        fm = project(f(inputs), w);
        p[i] = orig;
      }
      const double numeric = (fp - fm) / (2 * opt.eps);
      const double analytic = grad.defined() ? grad.flat_at(i) : 0.0;
      const double abs_err = std::fabs(numeric - analytic);
      const double rel_err = abs_err / std::max(std::fabs(numeric), 1e-6);
      res.max_abs_err = std::max(res.max_abs_err, abs_err);
      if (std::fabs(numeric) > opt.atol) res.max_rel_err = std::max(res.max_rel_err, rel_err);
      if (abs_err > opt.atol + opt.rtol * std::fabs(numeric) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << k << " element " << i << ": analytic " << analytic << " vs numeric " << numeric;
        res.message = os.str();
      }
    }
  }
  return res;
}

}  // namespace mmrec::autograd
