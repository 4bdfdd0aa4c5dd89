// Rows for the first ops: elementwise (forward and backward), reductions and matmul.
#include "autograd/gradcheck.h"
#include "kernelcheck/kernelcheck.h"
#include "ops/elementwise.h"
#include "ops/kernels/elementwise.h"
#include "ops/kernels/matmul.h"
#include "ops/kernels/reduce.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tensor/random.h"

using namespace mmrec;
using kc::grad_row;

KERNELCHECK_SUITE(elementwise_basic) {
  using kernels::BinaryOp;
  using kernels::UnaryOp;
  Generator g(11);
  const std::pair<const char*, BinaryOp> bins[] = {
      {"add", BinaryOp::add}, {"sub", BinaryOp::sub}, {"mul", BinaryOp::mul}, {"div", BinaryOp::div}};
  const std::pair<const char*, UnaryOp> uns[] = {{"neg", UnaryOp::neg}, {"exp", UnaryOp::exp}, {"log", UnaryOp::log}};
  for (int64_t n : kc::sizes()) {
    Tensor a = rand_uniform({n}, g, 0.1f, 3.0f), b = rand_uniform({n}, g, 0.1f, 3.0f);
    Tensor got = Tensor::empty({n}), want = Tensor::empty({n});
    for (auto& [name, op] : bins) {
      if (!ctx.wants(name)) continue;
      const double tk = kc::time_us([&] { kernels::binary_f32(op, a.data<float>(), n, b.data<float>(), n, got.data<float>(), n); });
      const double tr = kc::time_us([&] { kernels::ref::binary_f32(op, a.data<float>(), n, b.data<float>(), n, want.data<float>(), n); });
      ctx.compare(name, {n}, got, want, 1e-6, tk, tr);
    }
    for (auto& [name, op] : uns) {
      if (!ctx.wants(name)) continue;
      const double tk = kc::time_us([&] { kernels::unary_f32(op, a.data<float>(), got.data<float>(), n); });
      const double tr = kc::time_us([&] { kernels::ref::unary_f32(op, a.data<float>(), want.data<float>(), n); });
      ctx.compare(name, {n}, got, want, 2e-6, tk, tr);
    }
  }
  // Broadcast over leading axes and the backward of every binary op.
  for (auto [rows, d] : {std::pair<int64_t, int64_t>{5, 17}, {3, 1}, {0, 4}}) {
    const Shape s{rows, d};
    Tensor a = rand_uniform(s, g, 0.5f, 2.0f).set_requires_grad(), b = rand_uniform({d}, g, 0.5f, 2.0f).set_requires_grad();
    if (ctx.wants("add_bwd")) grad_row(ctx, "add_bwd", s, [](auto& in) { return ops::add(in[0], in[1]); }, {a, b});
    if (ctx.wants("sub_bwd")) grad_row(ctx, "sub_bwd", s, [](auto& in) { return ops::sub(in[0], in[1]); }, {a, b});
    if (ctx.wants("mul_bwd")) grad_row(ctx, "mul_bwd", s, [](auto& in) { return ops::mul(in[0], in[1]); }, {a, b});
    if (ctx.wants("div_bwd")) grad_row(ctx, "div_bwd", s, [](auto& in) { return ops::div(in[0], in[1]); }, {a, b});
    if (ctx.wants("exp_bwd")) grad_row(ctx, "exp_bwd", s, [](auto& in) { return ops::exp(in[0]); }, {a});
    if (ctx.wants("log_bwd")) grad_row(ctx, "log_bwd", s, [](auto& in) { return ops::log(in[0]); }, {a});
  }
}

KERNELCHECK_SUITE(reduce_basic) {
  if (!ctx.wants("sum_axis")) return;
  Generator g(12);
  for (Shape s : {Shape{1, 1, 1}, Shape{3, 17, 5}, Shape{2, 1000, 1}, Shape{1, 4099, 3}, Shape{4, 0, 3}}) {
    Tensor x = rand_uniform(s, g);
    Tensor got = Tensor::empty({s[0], s[2]}), want = Tensor::empty({s[0], s[2]});
    const double tk = kc::time_us([&] { kernels::sum_axis_f32(x.data<float>(), s[0], s[1], s[2], 1.0f, got.data<float>()); });
    const double tr = kc::time_us([&] { kernels::ref::sum_axis_f32(x.data<float>(), s[0], s[1], s[2], 1.0f, want.data<float>()); });
    ctx.compare("sum_axis", s, got, want, 1e-6, tk, tr);
  }
  Tensor x = rand_uniform({3, 5, 7}, g).set_requires_grad();
  if (ctx.wants("sum_axis_bwd")) grad_row(ctx, "sum_axis_bwd", {3, 5, 7}, [](auto& in) { return ops::mean(in[0], 1); }, {x});
}

KERNELCHECK_SUITE(matmul_basic) {
  if (!ctx.wants("matmul")) return;
  Generator g(13);
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 17, 5}, {33, 1000, 7}, {64, 64, 64}, {0, 3, 4}, {2, 0, 3}}) {
    Tensor a = rand_uniform({M, K}, g), b = rand_uniform({K, N}, g);
    Tensor got = Tensor::empty({M, N}), want = Tensor::empty({M, N});
    const double tk = kc::time_us([&] { kernels::matmul_f32(a, b, got); });
    const double tr = kc::time_us([&] { kernels::ref::matmul_f32(a, b, want); }, 1);
    ctx.compare("matmul_f32", {M, K, N}, got, want, 1e-5 * std::max<int64_t>(K, 1), tk, tr);
  }
  Tensor a = rand_uniform({2, 5, 4}, g).set_requires_grad(), b = rand_uniform({4, 3}, g).set_requires_grad();
  grad_row(ctx, "matmul_bwd", {2, 5, 4, 3}, [](auto& in) { return ops::matmul(in[0], in[1]); }, {a, b});
}
