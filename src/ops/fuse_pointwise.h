// The pointwise fusion pass (internal to src/ops): chains of elementwise
// calls whose intermediates die become one fused_pointwise call. linear.cpp
// registers it after gemm_accumulate (passes run in registration order, and
// gemm_accumulate wants the grad_accumulate calls this pass would absorb).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/graph.h"

namespace mmrec::ops::detail {

size_t fuse_pointwise(std::vector<autograd::Call>& calls, const std::function<bool(const Storage*)>& temporary);
// "binary.mul -> clamp (2 calls, 1 pass over 4.0 MiB)" for a fused_pointwise call.
std::string describe_pointwise(const autograd::Call& call);
// "4.0 MiB" from 1 MiB up, else "17.0 KiB": the sizes the fusion lines print.
std::string size_text(size_t bytes);
// The call adds its two inputs into its output: binary.add, or a fused
// program of one add (the tape's g = copy(a); g += b, fused): what a
// producer of one of them may do itself (the sum post-op of gemm_residual,
// rmsnorm_bwd's `add` in norm_accumulate).
bool adds_two(const autograd::Call& call);

}  // namespace mmrec::ops::detail
