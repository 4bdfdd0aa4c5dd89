// The chunked associative scan: MM-Rec's linear recurrence
// h_t = a_t ⊙ h_{t-1} + b_t over [B, T, D], and the cumulative decay product.
//   auto [h, h_last] = ops::linear_scan(gamma, u, state_h);
#pragma once
#include <utility>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

enum class ScanMode { automatic, sequential, chunked };

struct ScanOptions {
  ScanMode mode = ScanMode::automatic;  // automatic: sequential when B*D fills the cores
  int64_t block = 0;                    // time-block length for chunked mode (0: pick)
};

// a, b [B, T, D] f32, h0 [B, D] f32 (undefined: zeros). Returns
// (h [B, T, D], h_last [B, D]); both differentiable w.r.t. a, b and h0.
std::pair<Tensor, Tensor> linear_scan(const Tensor& a, const Tensor& b, const Tensor& h0 = Tensor(),
                                      const ScanOptions& opt = ScanOptions());

// P_t = Π_{s≤t} a_s along T of a [B, T, D], as exp(cumsum(clamp(log a, -50, 0))).
// Gradient: zero where the clamp is active (a > 1, a < e^-50); at the boundary
// (a = 1 or e^-50) it passes, as PyTorch's clamp does.
Tensor cumprod_scan(const Tensor& a, const ScanOptions& opt = ScanOptions());

}  // namespace mmrec::ops

MMREC_API_END
