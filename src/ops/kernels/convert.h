// f32 <-> bf16 conversion of contiguous buffers (Highway, in oneTBB tasks
// above 64K elements): round to nearest, ties to even, NaN kept a quiet NaN;
// the scalar references are tensor/dtype.h's f32_to_bf16_bits and
// bf16_bits_to_f32, which these equal bit for bit. (oneDNN 2.6's bf16 reorder
// is its scalar simple:any loop on CPUs without AVX-512: 61 ns an element.)
//   kernels::f32_to_bf16(x, y, n);   // float* x -> uint16_t* y (bf16 bits)
#pragma once
#include <cstdint>

namespace mmrec::kernels {

void f32_to_bf16(const float* x, uint16_t* y, int64_t n);
void bf16_to_f32(const uint16_t* x, float* y, int64_t n);

}  // namespace mmrec::kernels
