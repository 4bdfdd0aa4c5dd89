// Tensor core: factories, views, copies, casts, allocator, RNG, errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tensor/allocator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"

using namespace mmrec;

TEST_CASE("factories fill shape, dtype and values") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::f32);
  CHECK(z.is_contiguous());
  CHECK(z.at({1, 2}) == 0.0);
  CHECK(Tensor::ones({4}).at({3}) == 1.0);
  CHECK(Tensor::full({2, 2}, 2.5).at({1, 0}) == 2.5);
  Tensor r = Tensor::arange(5, DType::i64);
  CHECK(r.dtype() == DType::i64);
  CHECK(r.at({4}) == 4.0);
  Tensor v = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(v.at({1, 0}) == 4.0);
  CHECK(Tensor::zeros({0, 3}).numel() == 0);
  CHECK(Tensor::zeros({}).numel() == 1);
  for (DType t : {DType::f32, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64}) {
    Tensor x = Tensor::full({3}, 7, t);
    CHECK(x.nbytes() == 3 * dtype_size(t));
    CHECK(x.at({2}) == 7.0);
  }
}

TEST_CASE("views share storage and index correctly") {
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = x.transpose(0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(!t.is_contiguous());
  CHECK(t.at({2, 1}) == 5.0);
  t.set({0, 1}, 42);  // writes through to x
  CHECK(x.at({1, 0}) == 42.0);

  Tensor s = x.slice(1, 1, 3);
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.at({0, 0}) == 1.0);
  CHECK(s.at({1, 1}) == 5.0);

  Tensor r = x.reshape({3, -1});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.impl()->storage == x.impl()->storage);

  Tensor p = Tensor::arange(24).reshape({2, 3, 4}).permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.at({3, 1, 2}) == 1 * 12 + 2 * 4 + 3);
  Tensor c = p.contiguous();
  CHECK(c.is_contiguous());
  CHECK(c.at({3, 1, 2}) == p.at({3, 1, 2}));
  CHECK(c.to_vector()[3] == 12.0f);  // p[0, 1, 0] = x[1, 0, 0]

  Tensor u = x.unsqueeze(0);
  CHECK(u.shape() == Shape{1, 2, 3});
  CHECK(u.squeeze(0).shape() == Shape{2, 3});
  CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 1});
  // reshape of a non-contiguous view copies
  Tensor tr = t.reshape({6});
  CHECK(tr.to_vector() == std::vector<float>{0, 42, 1, 4, 2, 5});
}

TEST_CASE("clone, copy_from and fill") {
  Tensor x = Tensor::arange(6).reshape({2, 3});
  Tensor y = x.clone();
  y.set({0, 0}, 9);
  CHECK(x.at({0, 0}) == 0.0);
  Tensor z = Tensor::zeros({3, 2});
  z.copy_from(x.transpose(0, 1));
  CHECK(z.at({2, 1}) == 5.0);
  z.slice(0, 1, 2).fill(-1);
  CHECK(z.at({1, 0}) == -1.0);
  CHECK(z.at({2, 0}) == 2.0);
}

TEST_CASE("bf16 casts round to nearest even") {
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  CHECK(bf16_bits_to_f32(f32_to_bf16_bits(1.0f + 0x1p-8f)) == 1.0f);
  // 1 + 3*2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
  CHECK(bf16_bits_to_f32(f32_to_bf16_bits(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
  // Just above the halfway point rounds up.
  CHECK(bf16_bits_to_f32(f32_to_bf16_bits(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);
  CHECK(f32_to_bf16_bits(1.0f) == 0x3f80);
  CHECK(f32_to_bf16_bits(-2.0f) == 0xc000);
  CHECK(f32_to_bf16_bits(3.140625f) == 0x4049);
  CHECK(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(bf16_bits_to_f32(f32_to_bf16_bits(std::numeric_limits<float>::infinity()))));
  // The largest finite f32 rounds to infinity in bf16 (as in PyTorch).
  CHECK(std::isinf(bf16_bits_to_f32(f32_to_bf16_bits(std::numeric_limits<float>::max()))));

  Tensor x = Tensor::from_vector(std::vector<float>{1.0f + 0x1p-8f, 2.0f, -0.5f}, {3});
  Tensor b = x.to(DType::bf16);
  CHECK(b.dtype() == DType::bf16);
  CHECK(b.nbytes() == 6);
  CHECK(b.to(DType::f32).to_vector() == std::vector<float>{1.0f, 2.0f, -0.5f});
  // Integer casts round and saturate.
  Tensor i = Tensor::from_vector(std::vector<float>{1.6f, -300.0f, 300.0f}, {3}).to(DType::i8);
  CHECK(i.at({0}) == 2.0);
  CHECK(i.at({1}) == -128.0);
  CHECK(i.at({2}) == 127.0);
}

TEST_CASE("allocator: 64-byte alignment, counters, peak reset and cache reuse") {
  alloc::reset_peak();
  const auto before = alloc::stats();
  {
    Tensor a = Tensor::empty({1000});  // 4000 bytes -> 4032 rounded
    CHECK(reinterpret_cast<uintptr_t>(a.raw_data()) % 64 == 0);
    const auto during = alloc::stats();
    CHECK(during.current_bytes == before.current_bytes + 4032);
    CHECK(during.peak_bytes >= during.current_bytes);
  }
  const auto after = alloc::stats();
  CHECK(after.current_bytes == before.current_bytes);
  CHECK(after.peak_bytes == before.current_bytes + 4032);
  alloc::reset_peak();
  CHECK(alloc::stats().peak_bytes == after.current_bytes);
  const size_t hits = alloc::stats().cache_hits;
  { Tensor b = Tensor::empty({1000}); }
  CHECK(alloc::stats().cache_hits == hits + 1);
  alloc::empty_cache();
  CHECK(alloc::stats().cached_bytes == 0);
}

TEST_CASE("allocator: large blocks start at different offsets in a 4 KiB page") {
  // 16 new blocks of 128 KiB held at once: 16 colours, 256 bytes apart.
  alloc::empty_cache();
  std::vector<Tensor> held;
  std::vector<uintptr_t> in_page;
  for (int i = 0; i < 16; ++i) {
    held.push_back(Tensor::empty({32768}));
    const auto p = reinterpret_cast<uintptr_t>(held.back().raw_data());
    CHECK(p % 64 == 0);
    in_page.push_back(p % 4096);
  }
  std::sort(in_page.begin(), in_page.end());
  for (size_t i = 0; i < in_page.size(); ++i) CHECK(in_page[i] == 256 * i);
  for (Tensor& t : held) t.fill(1.0);  // the whole block is usable
  held.clear();
  alloc::empty_cache();  // frees each block from its page-aligned start
  CHECK(alloc::stats().cached_bytes == 0);
}

TEST_CASE("RNG is seeded and independent of the thread count") {
  Generator g1(123);
  set_num_threads(1);
  Tensor a = randn({300001}, g1);
  Tensor u1 = rand_uniform({1000}, g1, -2.0f, 3.0f);
  set_num_threads(2);
  Generator g2(123);
  Tensor b = randn({300001}, g2);
  Tensor u2 = rand_uniform({1000}, g2, -2.0f, 3.0f);
  set_num_threads(0);
  CHECK(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
  CHECK(std::memcmp(u1.raw_data(), u2.raw_data(), u1.nbytes()) == 0);
  CHECK(g1.offset() == g2.offset());
  // Moments of the normal sample.
  double m = 0, v = 0;
  for (float x : a.to_vector()) m += x;
  m /= a.numel();
  for (float x : a.to_vector()) v += (x - m) * (x - m);
  v /= a.numel();
  CHECK(std::fabs(m) < 0.01);
  CHECK(std::fabs(v - 1.0) < 0.01);
  for (float x : u1.to_vector()) CHECK((x >= -2.0f && x < 3.0f));
  // A different seed differs.
  Generator g3(124), g4(123);
  CHECK(randn({4}, g3).to_vector() != randn({4}, g4).to_vector());
}

TEST_CASE("printing shows dtype, shape and values") {
  Tensor x = Tensor::arange(4).reshape({2, 2});
  CHECK(x.str() == "Tensor(f32, [2, 2]) [[0, 1], [2, 3]]");
  CHECK(Tensor::arange(10).str(4) == "Tensor(f32, [10]) [0, 1, ..., 8, 9]");
  CHECK(Tensor::zeros({0}).str() == "Tensor(f32, [0]) []");
}

TEST_CASE("errors name the op and the shapes") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(x.reshape({4, 2}), "reshape: cannot reshape [2, 3] (6 elements) into [4, 2]", Error);
  CHECK_THROWS_WITH_AS(x.slice(1, 2, 5), "slice: range [2, 5) out of bounds for axis 1 of shape [2, 3]", Error);
  CHECK_THROWS_WITH_AS(x.at({2, 0}), "at: index 2 out of range for axis 0 of shape [2, 3]", Error);
  CHECK_THROWS_WITH_AS(x.transpose(0, 2), "transpose: axis 2 out of range for a tensor of rank 2", Error);
  CHECK_THROWS_WITH_AS(x.data<int32_t>(), "data: expected dtype i32, got f32 for tensor of shape [2, 3]", Error);
  CHECK_THROWS_WITH_AS(x.squeeze(0), "squeeze: axis 0 of shape [2, 3] is not 1", Error);
  CHECK_THROWS_WITH_AS(x.item(), "item: tensor of shape [2, 3] has 6 elements, expected 1", Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({2, 3}, DType::i32).set_requires_grad(),
                       "set_requires_grad: only floating tensors can require grad (got i32)", Error);
  CHECK_THROWS_AS(dtype_from_name("f16"), Error);
}
