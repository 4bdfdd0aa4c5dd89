#include "tensor/dtype.h"

#include <cstdio>

#include "tensor/error.h"

namespace mmrec {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

std::string mib_str(double bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::i8: return 1;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

DType dtype_from_name(std::string_view n) {
  if (n == "f32" || n == "F32") return DType::f32;
  if (n == "bf16" || n == "BF16") return DType::bf16;
  if (n == "i8" || n == "I8") return DType::i8;
  if (n == "u8" || n == "U8") return DType::u8;
  if (n == "i32" || n == "I32") return DType::i32;
  if (n == "i64" || n == "I64") return DType::i64;
  fail("unknown dtype '", n, "' (expected f32, bf16, i8, u8, i32 or i64)");
}

}  // namespace mmrec
