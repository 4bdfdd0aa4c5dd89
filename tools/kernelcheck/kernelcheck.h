// The table-driven kernel checker behind tools/mmrec-kernelcheck: each suite
// (one file per op family, check_*.cpp) compares kernels, forward and
// backward, with their scalar references on odd shapes and adds one Row per
// kernel and shape.
//
//   KERNELCHECK_SUITE(elementwise) {
//     for (int64_t n : kc::sizes()) ctx.compare("exp", {n}, got, want, 1e-6, kernel_us, ref_us);
//   }
#pragma once
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "tensor/tensor.h"

namespace kc {

struct Row {
  std::string kernel, shape;
  double max_abs = 0, max_rel = 0, tol = 0;
  double kernel_us = 0, ref_us = 0;
  bool ok = true;
  std::string note;
};

class Context {
 public:
  explicit Context(std::string filter) : filter_(std::move(filter)) {}
  // True when `kernel` passes --filter (substring match).
  bool wants(const std::string& kernel) const {
    return filter_.empty() || kernel.find(filter_) != std::string::npos;
  }
  // Compares got with want elementwise: ok when |got - want| <= tol * (1 + |want|).
  void compare(const std::string& kernel, const mmrec::Shape& shape, const mmrec::Tensor& got,
               const mmrec::Tensor& want, double tol, double kernel_us, double ref_us);
  // A row whose check is a boolean (e.g. a gradient check), with its error figures.
  void add(Row r) { rows_.push_back(std::move(r)); }
  const std::vector<Row>& rows() const { return rows_; }

 private:
  std::string filter_;
  std::vector<Row> rows_;
};

using Suite = void (*)(Context&);
struct Register {
  Register(const char* name, Suite s);
};
std::vector<std::pair<std::string, Suite>>& suites();

// A row from autograd::gradcheck of f at `in` (skipped when --filter excludes `kernel`).
void grad_row(Context& ctx, const std::string& kernel, const mmrec::Shape& shape,
              const mmrec::autograd::Function& f, const std::vector<mmrec::Tensor>& in);

// Median wall time of `reps` calls of f, in microseconds.
double time_us(const std::function<void()>& f, int reps = 5);

// The standard odd sizes: 0, 1, 3, 17, 1000, and non-multiples of every vector width.
std::vector<int64_t> sizes();

}  // namespace kc

#define KERNELCHECK_SUITE(name)                               \
  static void kc_suite_##name(kc::Context& ctx);              \
  static kc::Register kc_register_##name(#name, kc_suite_##name); \
  static void kc_suite_##name(kc::Context& ctx)
