// Element types of tensors and the f32 <-> bf16 conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

enum class DType : uint8_t { f32, bf16, i8, u8, i32, i64 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// Parses "f32", "bf16", ... (also the safetensors names "F32", "BF16", ...).
DType dtype_from_name(std::string_view name);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<int8_t>() { return DType::i8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

// bf16 is stored as the upper 16 bits of an IEEE f32.
struct bf16 {
  uint16_t bits;
};
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }

// Round to nearest, ties to even; NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_bits_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline bf16 to_bf16(float f) { return bf16{f32_to_bf16_bits(f)}; }
inline float to_f32(bf16 b) { return bf16_bits_to_f32(b.bits); }

}  // namespace mmrec

MMREC_API_END
