#include "kernelcheck/kernelcheck.h"

#include <algorithm>
#include <cmath>

namespace kc {

std::vector<std::pair<std::string, Suite>>& suites() {
  static std::vector<std::pair<std::string, Suite>> s;
  return s;
}

Register::Register(const char* name, Suite s) { suites().emplace_back(name, s); }

void Context::compare(const std::string& kernel, const mmrec::Shape& shape, const mmrec::Tensor& got,
                      const mmrec::Tensor& want, double tol, double kernel_us, double ref_us) {
  Row r{kernel, mmrec::shape_str(shape), 0, 0, tol, kernel_us, ref_us, true, ""};
  if (got.shape() != want.shape()) {
    r.ok = false;
    r.note = "shape " + mmrec::shape_str(got.shape()) + " vs reference " + mmrec::shape_str(want.shape());
  } else {
    const std::vector<float> g = got.to_vector(), w = want.to_vector();
    for (size_t i = 0; i < g.size(); ++i) {
      const double d = std::fabs(static_cast<double>(g[i]) - w[i]);
      const double rel = d / std::max(std::fabs(static_cast<double>(w[i])), 1e-30);
      if (std::isnan(d) && !(std::isnan(g[i]) && std::isnan(w[i]))) r.ok = false;
      r.max_abs = std::max(r.max_abs, d);
      if (std::fabs(w[i]) > 1e-6) r.max_rel = std::max(r.max_rel, rel);
      if (d > tol * (1.0 + std::fabs(static_cast<double>(w[i])))) r.ok = false;
    }
  }
  rows_.push_back(r);
}

void grad_row(Context& ctx, const std::string& kernel, const mmrec::Shape& shape,
              const mmrec::autograd::Function& f, const std::vector<mmrec::Tensor>& in) {
  if (!ctx.wants(kernel)) return;
  const auto r = mmrec::autograd::gradcheck(f, in);
  ctx.add({kernel, mmrec::shape_str(shape), r.max_abs_err, r.max_rel_err, 2e-2, 0, 0, r.ok, r.message});
}

double time_us(const std::function<void()>& f, int reps) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    const auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<int64_t> sizes() { return {0, 1, 3, 7, 17, 33, 1000, 4099}; }

}  // namespace kc
