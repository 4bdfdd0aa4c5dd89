// Finite-difference gradient checker for tests and tools/mmrec-kernelcheck.
//
//   auto r = autograd::gradcheck([](const std::vector<Tensor>& in) {
//     return ops::mul(in[0], in[1]); }, {a, b});
//   CHECK(r.ok);
//
// The output is projected on a fixed random direction w (loss = sum(w * f)),
// accumulated in double precision; each input element is perturbed by ±eps
// and the central difference is compared with the backward gradient.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::autograd {

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0;  // over every checked element of every input
  double max_rel_err = 0;
  std::string message;     // the worst element when !ok
};

struct GradcheckOptions {
  double eps = 1e-2;
  double atol = 2e-3;
  double rtol = 2e-2;
  int64_t max_elements = 64;  // per input: checks a seeded sample of elements when larger
  uint64_t seed = 1;
};

using Function = std::function<Tensor(const std::vector<Tensor>&)>;

// Inputs that require grad are checked; they must be f32 leaves.
GradcheckResult gradcheck(const Function& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opt = GradcheckOptions());

}  // namespace mmrec::autograd

MMREC_API_END
