// Memory attention (ops::memattn, kernels/memattn.h): the Highway kernels
// against the double references on odd shapes (strided q, masks, no slot),
// the op against the unfused chain the model used (head permutations,
// batched products, softmax), gradient checks, thread-count independence
// and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/kernels/memattn.h"
#include "ops/matmul.h"
#include "ops/memattn.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "tensor/threads.h"
#include "test_util.h"

using namespace mmrec;
using test_util::bit_equal;
using test_util::max_abs_diff;

namespace {
struct Case {
  int64_t B, T, D, H, S;
};
// {2, 3, 32, 2, 16} and {1, 2, 256, 8, 96}: rows of whole vectors, read in place.
const Case kCases[] = {{1, 1, 8, 2, 0},    {1, 1, 8, 2, 1},   {2, 5, 12, 3, 7},     {3, 17, 20, 4, 19},
                       {2, 9, 64, 1, 33},  {1, 3, 24, 8, 84}, {2, 3, 32, 2, 16},    {1, 2, 256, 8, 96}};

Tensor uniform(const Shape& s, Generator& g) { return rand_uniform(s, g, -1.0f, 1.0f); }

// The chain ops::memattn replaces: heads permuted out, q Kᵀ, softmax, P V,
// heads permuted back.
Tensor unfused(const Tensor& q, const Tensor& kt, const Tensor& v, int64_t H, const Tensor& mask) {
  const int64_t B = q.size(0), T = q.size(1), D = q.size(2), d = D / H;
  Tensor qh = ops::reshape(ops::permute(ops::reshape(q, {B, T, H, d}), {0, 2, 1, 3}), {B * H, T, d});
  Tensor s = ops::scale(ops::matmul(qh, kt), 1.0f / std::sqrt(static_cast<float>(d)));
  if (mask.defined()) s = ops::add(s, mask);
  Tensor o = ops::matmul(ops::softmax(s), v);
  return ops::reshape(ops::permute(ops::reshape(o, {B, H, T, d}), {0, 2, 1, 3}), {B, T, D});
}
}  // namespace

TEST_CASE("memattn kernels match the double references: strided q, masks, no slot") {
  Generator g(41);
  for (const Case& c : kCases)
    for (bool masked : {false, true}) {
      INFO("B ", c.B, " T ", c.T, " D ", c.D, " H ", c.H, " S ", c.S, " masked ", masked);
      const int64_t d = c.D / c.H;
      // q as columns [D, 2D) of [B, T, 3D] rows: neither its rows nor its batches are adjacent.
      const Tensor wide = uniform({c.B, c.T, 3 * c.D}, g), q = wide.slice(2, c.D, 2 * c.D);
      const Tensor kt = uniform({c.B * c.H, d, c.S}, g), v = uniform({c.B * c.H, c.S, d}, g);
      std::vector<float> m(static_cast<size_t>(c.S), 0.0f);
      for (size_t i = 0; i < m.size(); ++i)
        if (masked && i % 3 == 1) m[i] = -1e30f;
      // out and dout: rows of 2D, the head outputs in their first D (a
      // chunk's place in a longer sequence's rows); the rest stays as it was.
      const kernels::MemattnShape s{c.B, c.T, c.D, c.H, c.S, q.strides()[0], q.strides()[1], c.T * 2 * c.D, 2 * c.D,
                                    kernels::memattn_weight_row(c.S)};
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      const size_t n_out = static_cast<size_t>(c.B * c.T * 2 * c.D), n_p = static_cast<size_t>(c.B * c.H * c.T * kernels::memattn_weight_row(c.S));
      std::vector<float> out(n_out, 7.0f), out_ref(n_out, 7.0f), p(n_p), p_ref(n_p);
      const float* mp = masked ? m.data() : nullptr;
      kernels::memattn_f32(q.data<float>(), kt.data<float>(), v.data<float>(), mp, scale, out.data(), p.data(), s);
      kernels::ref::memattn_f32(q.data<float>(), kt.data<float>(), v.data<float>(), mp, scale, out_ref.data(),
                                p_ref.data(), s);
      double e = 0;
      for (size_t i = 0; i < n_out; ++i) e = std::max(e, std::fabs(double(out[i]) - out_ref[i]));
      for (size_t i = 0; i < n_p; ++i) e = std::max(e, std::fabs(double(p[i]) - p_ref[i]));
      CHECK(e < 2e-6);
      const Tensor dout = uniform({c.B, c.T, 2 * c.D}, g).slice(2, 0, c.D);
      const size_t n_dq = static_cast<size_t>(c.B * c.T * c.D);
      std::vector<float> dq(n_dq), dq_ref(n_dq), dk(kt.numel()), dk_ref(kt.numel()), dv(v.numel()), dv_ref(v.numel());
      kernels::memattn_bwd_f32(q.data<float>(), kt.data<float>(), v.data<float>(), p.data(), dout.data<float>(), scale,
                               dq.data(), dk.data(), dv.data(), s);
      kernels::ref::memattn_bwd_f32(q.data<float>(), kt.data<float>(), v.data<float>(), p.data(), dout.data<float>(),
                                    scale, dq_ref.data(), dk_ref.data(), dv_ref.data(), s);
      double eb = 0;
      for (size_t i = 0; i < dq.size(); ++i) eb = std::max(eb, std::fabs(double(dq[i]) - dq_ref[i]));
      for (size_t i = 0; i < dk.size(); ++i) eb = std::max(eb, std::fabs(double(dk[i]) - dk_ref[i]));
      for (size_t i = 0; i < dv.size(); ++i) eb = std::max(eb, std::fabs(double(dv[i]) - dv_ref[i]));
      CHECK(eb < 1e-5);
    }
}

TEST_CASE("memattn equals the unfused chain, with its gradients; every slot masked reads zero values as zero") {
  Generator g(42);
  const int64_t B = 2, T = 6, D = 16, H = 4, S = 9, d = D / H;
  Tensor q = uniform({B, T, D}, g).set_requires_grad(), kt = uniform({B * H, d, S}, g).set_requires_grad();
  Tensor v = uniform({B * H, S, d}, g).set_requires_grad();
  const Tensor w = uniform({B, T, D}, g);
  Tensor mask = Tensor::zeros({S});
  mask.set({2}, -1e30);
  for (const Tensor& m : {Tensor(), mask}) {
    const Tensor a = ops::memattn(q, kt, v, H, m), b = unfused(q, kt, v, H, m);
    CHECK(max_abs_diff(a, b) < 1e-6);
    auto grads = [&](const Tensor& out) {
      q.zero_grad(), kt.zero_grad(), v.zero_grad();
      autograd::backward(ops::sum(ops::mul(out, w)));
      return std::vector<Tensor>{q.grad().clone(), kt.grad().clone(), v.grad().clone()};
    };
    const std::vector<Tensor> ga = grads(ops::memattn(q, kt, v, H, m)), gb = grads(unfused(q, kt, v, H, m));
    for (int i = 0; i < 3; ++i) CHECK(max_abs_diff(ga[i], gb[i]) < 1e-6);
  }
  // Generation's empty memory: every column masked, the values zero.
  Tensor all = Tensor::full({S}, -1e30);
  const Tensor zero_v = Tensor::zeros({B * H, S, d});
  autograd::NoGradGuard ng;
  CHECK(max_abs_diff(ops::memattn(q, kt, zero_v, H, all), Tensor::zeros({B, T, D})) == 0);
  CHECK(max_abs_diff(ops::memattn(q, Tensor::zeros({B * H, d, 0}), Tensor::zeros({B * H, 0, d}), H),
                     Tensor::zeros({B, T, D})) == 0);
}

TEST_CASE("memattn: gradient checks in q (a strided view), kt and v") {
  Generator g(43);
  const int64_t B = 2, T = 3, D = 8, H = 2, S = 5, d = D / H;
  const Tensor wide = uniform({B, T, 2 * D}, g).set_requires_grad();
  const Tensor kt = uniform({B * H, d, S}, g).set_requires_grad(), v = uniform({B * H, S, d}, g).set_requires_grad();
  const auto r = autograd::gradcheck(
      [&](const std::vector<Tensor>& in) { return ops::memattn(ops::slice(in[0], 2, D, 2 * D), in[1], in[2], H); },
      {wide, kt, v});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("memattn gives the same bits on 1 and 2 threads, and names its shapes in errors") {
  Generator g(44);
  const int64_t B = 8, T = 128, D = 512, H = 8, S = 21, d = D / H;
  const Tensor q = uniform({B, T, D}, g), kt = uniform({B * H, d, S}, g), v = uniform({B * H, S, d}, g);
  const Tensor dout = uniform({B, T, D}, g);
  auto run = [&](int threads) {
    set_num_threads(threads);
    Tensor qq = q.clone().set_requires_grad(), kk = kt.clone().set_requires_grad(), vv = v.clone().set_requires_grad();
    const Tensor out = ops::memattn(qq, kk, vv, H);
    autograd::backward(ops::sum(ops::mul(out, dout)));
    set_num_threads(0);
    return std::vector<Tensor>{out.detach(), qq.grad(), kk.grad(), vv.grad()};
  };
  const auto one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) CHECK(bit_equal(one[i], two[i]));
  CHECK_THROWS_WITH_AS(ops::memattn(q, kt, v, 3), doctest::Contains("dim 512 is not a multiple of heads 3"), Error);
  CHECK_THROWS_WITH_AS(ops::memattn(q, kt, v.slice(1, 0, 20), H), doctest::Contains("v must be [B·H, S, d]"), Error);
  CHECK_THROWS_WITH_AS(ops::memattn(q, kt, v, H, Tensor::zeros({S + 1})), doctest::Contains("mask must be [S] = [21]"),
                       Error);
}
