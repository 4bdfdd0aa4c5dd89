// The graph passes beside pointwise fusion (test_compile.cpp): GEMM
// epilogues (the residual and, in backward, the gradient a dX GEMM is added
// to), rmsnorm's backward adding its summand, copy chains, strided sums,
// concatenations written in place and the bias gradients: each fused,
// bit-identical to eager, and left alone where unsafe.
#include <doctest/doctest.h>

#include <string>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "ops/activation.h"
#include "ops/copy_chains.h"
#include "ops/elementwise.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace mmrec;
using autograd::CompiledFn;
using autograd::OpKind;
using test_util::bit_equal;
using test_util::count_kind;

TEST_CASE("gemm residual fusion: a linear whose output only feeds add(r, y) accumulates into r, bit for bit") {
  Generator gen(24);
  const Tensor w = rand_uniform({24, 40}, gen, -1, 1), b = rand_uniform({24}, gen, -1, 1);
  const Tensor x = rand_uniform({2, 7, 40}, gen, -1, 1), h = rand_uniform({2, 7, 24}, gen, -1, 1);
  // r dies at the add, whose output is read by a later call (softmax, not
  // elementwise: an elementwise neighbour would join a pointwise chain first).
  auto fn = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    Tensor r = ops::softmax(in[1]);
    Tensor y = ops::linear(in[0], w, b);
    return std::vector<Tensor>{ops::softmax(ops::add(r, y))};
  };
  CompiledFn f = autograd::compile(fn);
  f({x, h});
  const autograd::Graph& g = *f.last_graph();
  CHECK(count_kind(g, OpKind::binary) == 0);
  // (Where oneDNN's sum post-op rounds as the add does, AVX-512; else its
  // binary post-op: ops/linear_passes.cpp.)
  CHECK(g.fusions().find(kernels::dnnl_has_avx512()
                             ? ": linear -> binary.add (2 calls, oneDNN's sum post-op into the residual)"
                             : ": linear -> binary.add (2 calls, oneDNN's binary post-op adding the residual)") !=
        std::string::npos);
  const Tensor x2 = rand_uniform({2, 7, 40}, gen, -1, 1), h2 = rand_uniform({2, 7, 24}, gen, -1, 1);
  CHECK(bit_equal(f({x2, h2})[0], fn({x2, h2})[0]));
  // Where r may not be written (an input, which lives on; the linear's own
  // input) the GEMM reads it instead: oneDNN's binary post-op writes the
  // add's output, bit for bit too.
  const std::string binary_post_op = ": linear -> binary.add (2 calls, oneDNN's binary post-op adding the residual)";
  auto input_r = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    return std::vector<Tensor>{ops::softmax(ops::add(in[1], ops::linear(in[0], w, b)))};
  };
  CompiledFn in_r = autograd::compile(input_r);
  in_r({x, h});
  CHECK(count_kind(*in_r.last_graph(), OpKind::binary) == 0);
  CHECK(in_r.last_graph()->fusions().find(binary_post_op) != std::string::npos);
  CHECK(bit_equal(in_r({x2, h2})[0], input_r({x2, h2})[0]));
  const Tensor sq = rand_uniform({2, 7, 24}, gen, -1, 1), wq = rand_uniform({24, 24}, gen, -1, 1);
  auto self = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    Tensor r = ops::softmax(in[0]);
    return std::vector<Tensor>{ops::softmax(ops::add(r, ops::linear(r, wq, b)))};
  };
  CompiledFn self_r = autograd::compile(self);
  self_r({sq});
  CHECK(count_kind(*self_r.last_graph(), OpKind::binary) == 0);
  CHECK(self_r.last_graph()->fusions().find(binary_post_op) != std::string::npos);
  CHECK(bit_equal(self_r({h2})[0], self({h2})[0]));
}

TEST_CASE("gemm residual fusion with a live residual: the binary post-op, bit for bit with its gradients") {
  // Training's FFN residual x1 + fc2(...): x1 stays live (the norm's backward
  // reads it), so the GEMM writes x1 + y reading x1.
  Generator gen(26);
  Tensor w1 = rand_uniform({64, 24}, gen, -0.5, 0.5);
  w1.set_requires_grad(true);  // its gradient reads x1
  const Tensor w2 = rand_uniform({24, 64}, gen, -0.5, 0.5);
  const Tensor b2 = rand_uniform({24}, gen, -1, 1), g = rand_uniform({24}, gen, 0.5, 1.5);
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor xp = in[0].detach();
    xp.set_requires_grad(true);
    Tensor x1 = ops::rmsnorm(xp, g, 1e-5f);
    Tensor y = ops::add(x1, ops::linear(ops::gelu(ops::linear(x1, w1, Tensor())), w2, b2));
    Tensor out = ops::rmsnorm(y, g, 1e-5f);
    w1.zero_grad();
    autograd::backward(ops::sum(ops::mul(out, out)));
    return std::vector<Tensor>{out, xp.grad(), w1.grad()};
  };
  CompiledFn f = autograd::compile(fn);
  const Tensor x = rand_uniform({3, 9, 24}, gen, -1, 1);
  f({x});
  const autograd::Graph& gr = *f.last_graph();
  CHECK(gr.fusions().find(": linear -> binary.add (2 calls, oneDNN's binary post-op adding the residual)") !=
        std::string::npos);
  const Tensor x2 = rand_uniform({3, 9, 24}, gen, -1, 1);
  const std::vector<Tensor> got = f({x2}), want = fn({x2});
  CHECK(count_kind(gr, OpKind::binary) == 0);
  for (size_t i = 0; i < 3; ++i) CHECK(bit_equal(got[i], want[i]));
}

TEST_CASE("gemm residual fusion in backward: a dX GEMM accumulates into the gradient it is added to, bit for bit") {
  Generator gen(25);
  const Tensor x = rand_uniform({300, 40}, gen, -1, 1), w = rand_uniform({24, 40}, gen, -1, 1);
  const Tensor up = rand_uniform({300, 24}, gen, -1, 1), c = rand_uniform({300, 40}, gen, -1, 1);
  // x's gradient: softmax's backward, then the linear's dX added to it.
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor xp = in[0].detach();
    xp.set_requires_grad(true);
    const Tensor s = ops::mul(ops::softmax(xp), c), y = ops::mul(ops::linear(xp, w), up);
    autograd::backward(ops::add(ops::sum(s), ops::sum(y)));
    return std::vector<Tensor>{ops::softmax(xp.grad())};  // read by a later call (the sum is no output)
  };
  CompiledFn f = autograd::compile(fn);
  f({x});
  CHECK(f.last_graph()->fusions().find(std::string(": gemm -> copy -> grad_accumulate (3 calls, oneDNN's ") +
                                       (kernels::dnnl_has_avx512() ? "sum post-op into the"
                                                                   : "binary post-op adding the") +
                                       " gradient it is added to)") != std::string::npos);
  const Tensor x2 = rand_uniform({300, 40}, gen, -1, 1);
  CHECK(bit_equal(f({x2})[0], fn({x2})[0]));
}

TEST_CASE("norm accumulation: rmsnorm's backward adds the gradient it is summed with as it writes, bit for bit") {
  Generator gen(26);
  const Tensor x = rand_uniform({50, 3, 40}, gen, -1, 1), w = rand_uniform({40}, gen, 0.5f, 1.5f);
  const Tensor c = rand_uniform({50, 3, 40}, gen, -1, 1);
  // x's gradient: softmax's backward, then rmsnorm's dx added to it.
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor xp = in[0].detach();
    xp.set_requires_grad(true);
    autograd::backward(
        ops::add(ops::sum(ops::mul(ops::softmax(xp), c)), ops::sum(ops::mul(ops::rmsnorm(xp, w, 1e-6f), c))));
    return std::vector<Tensor>{ops::softmax(xp.grad())};
  };
  CompiledFn f = autograd::compile(fn);
  f({x});
  CHECK(count_kind(*f.last_graph(), OpKind::fused_pointwise) == 0);
  CHECK(f.last_graph()->fusions().find(": rmsnorm_bwd -> copy -> grad_accumulate (3 calls") != std::string::npos);
  const Tensor x2 = rand_uniform({50, 3, 40}, gen, -1, 1);
  CHECK(bit_equal(f({x2})[0], fn({x2})[0]));
}

TEST_CASE("copy chains: a copy only copies read becomes one strided copy per reader, bit for bit") {
  using ops::detail::ElemView;
  // A row of t (contiguous) runs across the axes of w, a permuted view: split.
  const ElemView w{0, {2, 4, 3, 5}, {60, 5, 20, 1}};
  const auto c = ops::detail::compose_views({0, {2, 60}, {60, 1}}, {15, {2, 60}, {90, 1}}, w);
  REQUIRE(c.has_value());
  CHECK(c->src.shape == Shape{2, 4, 3, 5});
  CHECK(c->src.strides == Shape{60, 5, 20, 1});
  CHECK(c->dst.strides == Shape{90, 15, 5, 1});
  CHECK(c->dst.offset == 15);
  // A stride that carries from one axis of w into the next is no strided view.
  CHECK(!ops::detail::compose_views({0, {2}, {5}}, {0, {2}, {1}}, {0, {3, 4}, {1, 3}}).has_value());
  CHECK(!ops::detail::compose_views({3, {2}, {1}}, {0, {2}, {1}}, {0, {2, 4}, {1, 2}}).has_value());  // 3, 4 carry

  Generator gen(25);
  const Tensor x = rand_uniform({2, 3, 4, 5}, gen, -1, 1), e = rand_uniform({2, 2, 15}, gen, -1, 1);
  // permute -> contiguous (a copy) -> concatenated (copy_rows): one copy.
  auto fn = [](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    const Tensor y = ops::reshape(ops::contiguous(ops::permute(in[0], {0, 2, 1, 3})), {2, 4, 15});
    return std::vector<Tensor>{ops::softmax(ops::concat({y, in[1]}, 1))};
  };
  CompiledFn f = autograd::compile(fn);
  f({x, e});
  const autograd::Graph& g = *f.last_graph();
  CHECK(count_kind(g, OpKind::copy) == 1);
  CHECK(count_kind(g, OpKind::copy_rows) == 1);  // e's rows
  CHECK(g.fusions().find(": copy -> copy_rows (2 calls, 1 pass over 0.469 KiB)") != std::string::npos);
  const Tensor x2 = rand_uniform({2, 3, 4, 5}, gen, -1, 1), e2 = rand_uniform({2, 2, 15}, gen, -1, 1);
  CHECK(bit_equal(f({x2, e2})[0], fn({x2, e2})[0]));
  // Left alone: the intermediate has a reader that is not a copy.
  CompiledFn o = autograd::compile([](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    const Tensor y = ops::reshape(ops::contiguous(ops::permute(in[0], {0, 2, 1, 3})), {2, 4, 15});
    return std::vector<Tensor>{ops::concat({y, in[1]}, 1), ops::exp(y)};
  });
  o({x, e});
  CHECK(count_kind(*o.last_graph(), OpKind::copy) == 1);
  CHECK(count_kind(*o.last_graph(), OpKind::copy_rows) == 2);
}

TEST_CASE("strided sums: a copy only a sum reads is dropped, the sum reads its source in place, bit for bit") {
  Generator gen(27);
  const Tensor x = rand_uniform({3, 40, 20}, gen, -1, 1);
  // Columns 4..12 of x, as chunks of 8 rows: the mean over each chunk (the
  // memory's chunk means of k, a column slice of one GEMM's output).
  auto chunk_mean = [](const Tensor& v) {
    autograd::NoGradGuard ng;
    return ops::mean(ops::reshape(v, {3, 5, 8, 8}), 2);
  };
  auto fn = [&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{chunk_mean(ops::slice(in[0], 2, 4, 12))};
  };
  CompiledFn f = autograd::compile(fn);
  f({x});
  const autograd::Graph& g = *f.last_graph();
  CHECK(count_kind(g, OpKind::copy) == 0);
  CHECK(count_kind(g, OpKind::sum_axis) == 1);
  CHECK(g.fusions().find(": copy -> sum_axis (2 calls, the sum reads the copy's source in place: 3.8 KiB, rows 20 "
                         "floats apart)") != std::string::npos);
  const Tensor x2 = rand_uniform({3, 40, 20}, gen, -1, 1);
  CHECK(bit_equal(f({x2})[0], fn({x2})[0]));
  // Rows one stride apart within each batch only (all rows of a batch but
  // its last: the model's k before its memory token): the sum reads the
  // batches as groups.
  auto fg = [&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{chunk_mean(ops::slice(ops::slice(in[0], 1, 0, 40), 2, 4, 12))};
  };
  CompiledFn grouped = autograd::compile(fg);
  const Tensor xg = rand_uniform({3, 41, 20}, gen, -1, 1), xg2 = rand_uniform({3, 41, 20}, gen, -1, 1);
  grouped({xg});
  CHECK(count_kind(*grouped.last_graph(), OpKind::copy) == 0);
  CHECK(grouped.last_graph()->fusions().find("rows 20 floats apart, in groups of 40 rows 820 floats apart)") !=
        std::string::npos);
  CHECK(bit_equal(grouped({xg2})[0], fg({xg2})[0]));
  // Left alone: rows that are not one stride apart (a transposed source),
  // and an intermediate another call reads.
  CompiledFn t = autograd::compile([&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{chunk_mean(ops::transpose(ops::slice(in[0], 2, 4, 12), 0, 1).slice(0, 0, 3))};
  });
  const Tensor y = rand_uniform({40, 3, 20}, gen, -1, 1);
  t({y});
  CHECK(count_kind(*t.last_graph(), OpKind::copy) == 1);
  CHECK(bit_equal(t({y})[0], chunk_mean(ops::transpose(ops::slice(y, 2, 4, 12), 0, 1).slice(0, 0, 3))));
  CompiledFn o = autograd::compile([&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    const Tensor c = ops::reshape(ops::slice(in[0], 2, 4, 12), {3, 5, 8, 8});
    return std::vector<Tensor>{ops::mean(c, 2), ops::exp(c)};
  });
  o({x});
  CHECK(count_kind(*o.last_graph(), OpKind::copy) == 1);
}

TEST_CASE("concatenations written in place: the calls making a part write its place in the concatenation") {
  Generator gen(31);
  const Tensor a = rand_uniform({6, 4, 16}, gen, -1, 1), b = rand_uniform({6, 4, 16}, gen, -1, 1);
  const Tensor x = rand_uniform({4, 6, 16}, gen, -1, 1), m = rand_uniform({6, 16}, gen, -1, 1);
  // Parts: a fused chain, a permuted copy, an expanded mean's gradient.
  auto fn = [](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    const Tensor p0 = ops::exp(ops::mul(in[0], in[1]));
    const Tensor p1 = ops::transpose(in[2], 0, 1);
    const Tensor p2 = ops::reshape(ops::slice(in[0], 2, 4, 12), {6, 4, 8});
    return std::vector<Tensor>{ops::concat({p0, p1, p2}, -1)};
  };
  CompiledFn f = autograd::compile(fn);
  f({a, b, x, m});
  const autograd::Graph& g = *f.last_graph();
  CHECK(count_kind(g, OpKind::copy_rows) == 0);
  CHECK(g.fusions().find("binary.mul -> unary.exp (2 calls, 1 pass over 4.5 KiB), written in place: rows of 16 "
                         "floats, 40 apart") != std::string::npos);
  const Tensor a2 = rand_uniform({6, 4, 16}, gen, -1, 1);
  CHECK(bit_equal(f({a2, b, x, m})[0], fn({a2, b, x, m})[0]));
  // Left alone: a part read again after the concatenation, and a
  // destination read between the part's making and its copy.
  CompiledFn r = autograd::compile([](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    const Tensor p0 = ops::exp(ops::mul(in[0], in[1]));
    return std::vector<Tensor>{ops::concat({p0, in[1]}, -1), ops::neg(p0)};
  });
  r({a, b, x, m});
  CHECK(count_kind(*r.last_graph(), OpKind::copy_rows) == 2);
  CHECK(bit_equal(r({a2, b, x, m})[0], ops::concat({ops::exp(ops::mul(a2, b)), b}, -1)));
}

TEST_CASE("bias gradient fusion: act_backward and the col_sum of its output become one call, bit for bit") {
  for (const ops::Activation act : {ops::Activation::gelu, ops::Activation::sigmoid}) {
    CAPTURE(static_cast<int>(act));
    Generator gen(31);
    // 700 rows: chunks of the column sums that are not multiples of the fused pieces.
    const Tensor x = rand_uniform({700, 40}, gen, -1, 1), w = rand_uniform({72, 40}, gen, -1, 1);
    const Tensor b = rand_uniform({72}, gen, -1, 1), up = rand_uniform({700, 72}, gen, -1, 1);
    auto fn = [&](const std::vector<Tensor>& in) {
      Tensor wp = w.detach(), bp = b.detach();
      wp.set_requires_grad(true), bp.set_requires_grad(true);
      autograd::backward(ops::sum(ops::mul(ops::linear(in[0], wp, bp, act), up)));
      return std::vector<Tensor>{wp.grad(), bp.grad()};
    };
    CompiledFn f = autograd::compile(fn);
    f({x});
    const autograd::Graph& g = *f.last_graph();
    CHECK(count_kind(g, OpKind::col_sum) == 0);
    CHECK(g.fusions().find(": act_backward -> col_sum (2 calls, 1 pass over 197 KiB)") != std::string::npos);
    const Tensor x2 = rand_uniform({700, 40}, gen, -1, 1);
    const std::vector<Tensor> got = f({x2}), want = fn({x2});
    CHECK(bit_equal(got[0], want[0]));
    CHECK(bit_equal(got[1], want[1]));
  }
}

TEST_CASE("rematerialized activations: made again with their backward in one pass, bit for bit") {
  Generator gen(32);
  const Tensor x = rand_uniform({300, 40}, gen, -1, 1), w1 = rand_uniform({96, 40}, gen, -1, 1);
  const Tensor b1 = rand_uniform({96}, gen, -1, 1), w2 = rand_uniform({24, 96}, gen, -1, 1);
  // Twenty steps between fc2's forward and its weight gradient, which reads
  // the activation again (fc2's input) in backward; with fc1's bias a
  // parameter, the activation's backward has the bias sums fused in.
  for (bool bias_grad : {false, true}) {
    CAPTURE(bias_grad);
    auto fn = [&](const std::vector<Tensor>& in) {
      Tensor p1 = w1.detach(), p2 = w2.detach(), q1 = b1.detach();
      p1.set_requires_grad(true), p2.set_requires_grad(true), q1.set_requires_grad(bias_grad);
      Tensor y = ops::linear(ops::linear(in[0], p1, q1, ops::Activation::gelu), p2);
      for (int i = 0; i < 20; ++i) y = ops::mul(ops::softmax(y), y);
      autograd::backward(ops::sum(y));
      std::vector<Tensor> grads{p1.grad(), p2.grad()};
      if (bias_grad) grads.push_back(q1.grad());
      return grads;
    };
    CompiledFn f = autograd::compile(fn);
    f({x});
    const autograd::Graph& g = *f.last_graph();
    // gelu(u) made again for fc2's dW, in the pass that makes du from u and
    // dy (fc2's dX, computed before its dW): 0.11 MiB less live in between.
    const std::string want = bias_grad ? "act_forward -> act_backward -> col_sum (3 calls, the rematerialized activation "
                                         "made with its backward: 1 pass over 0.11 MiB"
                                       : "act_forward -> act_backward (2 calls, the rematerialized activation made with "
                                         "its backward: 1 pass over 0.11 MiB";
    CHECK(g.fusions().find(want) != std::string::npos);
    CHECK(count_kind(g, OpKind::act_forward) == 1);  // the forward's
    CHECK(count_kind(g, OpKind::act_backward) == 1);
    CHECK(count_kind(g, OpKind::col_sum) == 0);
    CHECK(g.planned_bytes() >= g.live_peak_bytes());
    const Tensor x2 = rand_uniform({300, 40}, gen, -1, 1);
    const std::vector<Tensor> got = f({x2}), want_grads = fn({x2});
    REQUIRE(got.size() == want_grads.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(bit_equal(got[i], want_grads[i]));
  }
}
