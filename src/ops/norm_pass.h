// The rmsnorm graph pass (internal to src/ops): norm_accumulate. rmsnorm_bwd
// writing dx, a temporary only an add reads (the residual stream's gradient:
// the tape's g = copy(r); g += dx, fused), becomes one rmsnorm_bwd at the
// norm's place that adds r as it writes the sum into the add's output
// (kernels::rmsnorm_bwd_f32's `add`): one write of dx and its read less.
// The same additions, so the replay is unchanged bit for bit. linear.cpp
// registers it after pointwise fusion, which makes the adds it looks for.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/graph.h"

namespace mmrec::ops::detail {

size_t fuse_norm_accumulate(std::vector<autograd::Call>& calls, const std::function<bool(const Storage*)>& temporary);
// "rmsnorm_bwd -> copy -> grad_accumulate (...)" for a norm backward adding its summand.
std::string describe_norm_accumulate(const autograd::Call& call);

}  // namespace mmrec::ops::detail
