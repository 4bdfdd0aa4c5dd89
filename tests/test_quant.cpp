// Quantization: the fake-quant ops (PyTorch's values, ties, saturation,
// zero ranges, STE gradients), observers and their qparams (the observer ops
// and the host formulas), and a QAT model
// whose int8 inference (in memory and through an int8 file) matches its
// fake-quant forward.
#include <doctest/doctest.h>

#include "test_util.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/model.h"
#include "models/quant.h"
#include "models/safetensors.h"
#include "ops/fake_quant.h"
#include "ops/reduce.h"
#include "tensor/error.h"
#include "tensor/random.h"

using namespace mmrec;
using test_util::max_abs_diff;

namespace {
Tensor vec(std::vector<float> v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}
std::string tmp_path(const char* name) { return "/tmp/mmrec_test_quant_" + std::to_string(getpid()) + name; }
}  // namespace

TEST_CASE("fake_quantize_per_tensor_affine: PyTorch's values, ties to even, saturation") {
  // torch.fake_quantize_per_tensor_affine(x, 0.5, 2, 0, 7):
  // q = nearbyint(x / 0.5) + 2 clamped to [0, 7], y = (q - 2) * 0.5
  Tensor x = vec({0.25f, 0.75f, -0.25f, 1.25f, -1.0f, -1.5f, 2.5f, 3.0f, 100.0f, 0.0f});
  Tensor y = ops::fake_quantize_per_tensor_affine(x, 0.5f, 2, 0, 7);
  // 0.25/0.5 = 0.5 -> 0 (even); 0.75 -> 1.5 -> 2; -0.5 -> -0 ; 2.5 -> 2; -2 -> 0 -> -1.0;
  // -3 + 2 = -1 -> clamped 0 -> -1.0; 5 + 2 = 7 -> 2.5; 6 + 2 = 8 -> 7 -> 2.5; saturates; 0.
  const std::vector<float> want = {0.0f, 1.0f, 0.0f, 1.0f, -1.0f, -1.0f, 2.5f, 2.5f, 2.5f, 0.0f};
  const auto got = y.to_vector();
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == want[i]);
  CHECK_THROWS_WITH_AS(ops::fake_quantize_per_tensor_affine(x, 0.5f, 9, 0, 7),
                       doctest::Contains("zero_point 9 is outside"), Error);
  CHECK_THROWS_WITH_AS(ops::fake_quantize_per_tensor_affine(x, 0.0f, 0, 0, 7),
                       doctest::Contains("scale must be positive"), Error);
  CHECK_THROWS_AS(ops::fake_quantize_per_tensor_affine(x, 0.5f, 0, 7, 0), Error);
}

TEST_CASE("fake quantization: the straight-through gradient is the in-range mask") {
  Tensor x = vec({0.25f, -1.0f, -1.5f, 2.5f, 3.0f, 2.74f, 2.76f}).set_requires_grad();
  Tensor y = ops::fake_quantize_per_tensor_affine(x, 0.5f, 2, 0, 7);
  autograd::backward(ops::sum(y));
  // levels: 2, 0, -1 (out), 7, 8 (out), 7 (5.48 -> 5 + 2), 8 (5.52 -> 6 + 2: out)
  const std::vector<float> want = {1, 1, 0, 1, 0, 1, 0};
  const auto g = x.grad().to_vector();
  for (size_t i = 0; i < want.size(); ++i) CHECK(g[i] == want[i]);
}

TEST_CASE("fake_quantize_per_channel_affine: rows of a weight, any axis, odd shapes") {
  Generator gen(5);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {17, 3}, {5, 1000}}) {
    Tensor w = rand_uniform({rows, cols}, gen, -2, 2).set_requires_grad();
    Tensor s = rand_uniform({rows}, gen, 0.005f, 0.02f), z = Tensor::zeros({rows}, DType::i32);
    Tensor y = ops::fake_quantize_per_channel_affine(w, s, z, 0, -128, 127);
    // Each row equals the per-tensor op with that row's scale.
    for (int64_t r = 0; r < rows; ++r) {
      Tensor row = w.detach().slice(0, r, r + 1).contiguous();
      Tensor want = ops::fake_quantize_per_tensor_affine(row, s.to_vector()[r], 0, -128, 127);
      CHECK(max_abs_diff(y.slice(0, r, r + 1).contiguous(), want) == 0.0);
    }
    autograd::backward(ops::sum(y));
    const auto g = w.grad().to_vector(), wv = w.detach().to_vector(), sv = s.to_vector();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const float q = std::nearbyint(wv[i] * (1.0f / sv[i / cols]));
      CHECK(g[i] == (q >= -128 && q <= 127 ? 1.0f : 0.0f));
    }
    // Axis 1 of the transpose gives the same values.
    Tensor yt = ops::fake_quantize_per_channel_affine(w.detach().transpose(0, 1), s, z, 1, -128, 127);
    CHECK(max_abs_diff(yt.transpose(0, 1).contiguous(), y.detach()) == 0.0);
  }
  Tensor w = Tensor::ones({2, 3});
  CHECK_THROWS_WITH_AS(ops::fake_quantize_per_channel_affine(w, Tensor::ones({3}), Tensor::zeros({3}, DType::i32), 0, -128, 127),
                       doctest::Contains("must both be [2]"), Error);
}

TEST_CASE("observers: moving average and PyTorch's qparams, zero ranges") {
  MinMaxObserver o;
  o.observe(vec({-1.0f, 3.0f, 0.5f}), 1, 0.01f);
  auto [s, z] = o.affine_u8();
  CHECK(s == doctest::Approx(4.0 / 255).epsilon(1e-7));
  CHECK(z == 64);  // -round(-1 / (4/255)) = round(63.75)
  o.observe(vec({-2.0f, 1.0f}), 1, 0.01f);
  CHECK(o.min()[0] == doctest::Approx(-1.01f));
  CHECK(o.max()[0] == doctest::Approx(2.98f));
  MinMaxObserver zero;  // an all-zero input: scale is float epsilon, zero point 0
  zero.observe(Tensor::zeros({8}), 1, 0.01f);
  auto [s0, z0] = zero.affine_u8();
  CHECK(s0 == std::numeric_limits<float>::epsilon());
  CHECK(z0 == 0);
  MinMaxObserver pos;  // all positive: the range still includes 0, zero point 0
  pos.observe(vec({1.0f, 2.0f}), 1, 0.01f);
  CHECK(pos.affine_u8().second == 0);
  MinMaxObserver w;  // per channel, symmetric: scale = max|.| / 127.5
  w.observe(vec({-1.0f, 0.5f, 0.25f, 2.0f}), 2, 0.01f);
  const auto ws = w.symmetric_s8_scales();
  CHECK(ws[0] == doctest::Approx(1.0 / 127.5));
  CHECK(ws[1] == doctest::Approx(2.0 / 127.5));
}

TEST_CASE("observer ops: first observation, moving average, NaNs skipped; qparams and tensor qparams") {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor lo = Tensor::full({2}, inf), hi = Tensor::full({2}, -inf);
  // Two channels of 3: the first call takes the batch's min and max (a NaN is skipped).
  ops::observe_min_max(vec({1.0f, std::nanf(""), -2.0f, 4.0f, 5.0f, 6.0f}), lo, hi, 0.5f);
  CHECK(lo.to_vector() == std::vector<float>{-2.0f, 4.0f});
  CHECK(hi.to_vector() == std::vector<float>{1.0f, 6.0f});
  ops::observe_min_max(vec({0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 10.0f}), lo, hi, 0.5f);  // m += 0.5 (batch - m)
  CHECK(lo.to_vector() == std::vector<float>{-1.0f, 2.0f});
  CHECK(hi.to_vector() == std::vector<float>{0.5f, 8.0f});
  ops::observe_min_max(Tensor::empty({0}), lo, hi, 0.5f);  // an empty batch changes nothing
  CHECK(lo.to_vector() == std::vector<float>{-1.0f, 2.0f});
  CHECK_THROWS_WITH_AS(ops::observe_min_max(vec({1, 2, 3}), lo, hi, 0.5f), doctest::Contains("does not split into 2"),
                       Error);
  // Scales and zero points by kernel equal the observers' host formulas.
  MinMaxObserver o;
  o.observe(vec({-1.0f, 3.0f, 0.5f}), 1, 0.01f);
  auto [s, z] = ops::quant_params(o.min_val, o.max_val, ops::QuantScheme::affine_u8);
  CHECK(s.item() == o.affine_u8().first);
  CHECK(z.flat_at(0) == o.affine_u8().second);
  auto [ws, wz] = ops::quant_params(lo, hi, ops::QuantScheme::symmetric_s8);
  CHECK(ws.to_vector() == std::vector<float>{1.0f / 127.5f, 8.0f / 127.5f});
  CHECK(wz.to_vector() == std::vector<float>{0, 0});
  // The tensor-qparams overload equals the float one.
  Tensor x = vec({0.25f, 0.75f, -0.25f, 1.25f, -1.0f, 100.0f});
  CHECK(ops::fake_quantize_per_tensor_affine(x, s, z, 0, 255).to_vector() ==
        ops::fake_quantize_per_tensor_affine(x, s.item(), static_cast<int32_t>(z.flat_at(0)), 0, 255).to_vector());
  CHECK_THROWS_WITH_AS(ops::fake_quantize_per_tensor_affine(x, ws, wz, 0, 255), doctest::Contains("f32 [1]"), Error);
}

TEST_CASE("QAT model: int8 inference equals the fake-quant forward within the quantization step") {
  ModelConfig c;
  c.vocab_size = 64, c.dim = 32, c.layers = 2, c.heads = 2, c.chunk_size = 8, c.memory_slots = 4;
  Model m(c, 3);
  QuantConfig qc;
  qc.head = true;
  auto q = std::make_shared<ModelQuant>(m, qc);
  m.set_quantization(q);
  Generator g(9);
  Tensor tokens = Tensor::empty({2, 24}, DType::i32);
  for (int64_t i = 0; i < tokens.numel(); ++i) tokens.data<int32_t>()[i] = static_cast<int32_t>(g.next_u64() % 64);
  // A training forward and backward observe and reach every weight through the STE.
  Tensor loss = m.loss(tokens);
  autograd::backward(loss);
  for (const auto& [name, p] : m.parameters()) CHECK_MESSAGE(p.grad().defined(), name);
  for (QuantSite* s : q->sites()) CHECK_MESSAGE((s->input.observed() && s->weight.observed()), s->name);

  autograd::NoGradGuard no_grad;
  State s1 = m.initial_state(2);
  Tensor fake = m.forward(tokens, s1);
  const std::string path = tmp_path(".int8.safetensors");
  save_int8_model(path, m);
  q->to_int8(m);
  State s2 = m.initial_state(2);
  Tensor int8 = m.forward(tokens, s2);
  double max_logit = 0;
  for (float v : fake.to_vector()) max_logit = std::max(max_logit, std::fabs(double(v)));
  const double head_step = q->head.input.affine_u8().first;
  const double d = max_abs_diff(int8, fake);
  MESSAGE("int8 vs fake-quant logits: max abs diff ", d, " (max |logit| ", max_logit, ", head input step ", head_step, ")");
  CHECK(d < head_step);
  CHECK(d < 1e-3 * max_logit);

  // The int8 file: i8 weights with scales; loading it runs the same int8 model.
  Safetensors f = read_safetensors(path);
  CHECK(f.get("blocks.0.qkvz.weight").dtype() == DType::i8);
  CHECK(f.get("blocks.1.ffn.fc2.weight_scale").shape() == Shape{32});
  CHECK(f.get("blocks.0.gate.input_zero_point").dtype() == DType::i32);
  CHECK(f.get("lm_head.weight").dtype() == DType::i8);
  CHECK(f.get("embed.weight").dtype() == DType::f32);
  Model loaded = load_model(path);
  REQUIRE(loaded.quantization() != nullptr);
  CHECK(loaded.quantization()->mode == QuantMode::int8);
  State s3 = loaded.initial_state(2);
  CHECK(max_abs_diff(loaded.forward(tokens, s3), int8) < 1e-4 * max_logit);
  // The same file through fake quantization (observers rebuilt from its qparams).
  const auto from_file = loaded.quantization()->sites(), trained = q->sites();
  REQUIRE(from_file.size() == trained.size());
  for (size_t i = 0; i < trained.size(); ++i) {
    CHECK(from_file[i]->input.affine_u8() == trained[i]->input.affine_u8());
    CHECK(from_file[i]->weight.symmetric_s8_scales() == trained[i]->weight.symmetric_s8_scales());
  }
  loaded.quantization()->mode = QuantMode::fake;
  loaded.quantization()->observers_enabled = false;
  State s4 = loaded.initial_state(2);
  CHECK(max_abs_diff(loaded.forward(tokens, s4), fake) < 1e-4 * max_logit);
  std::remove(path.c_str());
}

TEST_CASE("quantization state round-trips; frozen observers stop moving") {
  ModelConfig c;
  c.vocab_size = 32, c.dim = 16, c.layers = 1, c.heads = 2, c.chunk_size = 4, c.memory_slots = 2;
  Model m(c, 1);
  QuantConfig qc;
  qc.layers = {"qkvz", "ffn.fc1"};
  auto q = std::make_shared<ModelQuant>(m, qc);
  m.set_quantization(q);
  CHECK(q->sites().size() == 2);
  Tensor tokens = Tensor::zeros({1, 9}, DType::i32);
  autograd::backward(m.loss(tokens));
  const auto st = q->state_tensors();
  CHECK(st.size() == 8);
  q->observers_enabled = false;
  const auto before = q->blocks[0][0].input.min();
  for (int64_t i = 0; i < tokens.numel(); ++i) tokens.data<int32_t>()[i] = static_cast<int32_t>(i);
  autograd::backward(m.loss(tokens));
  CHECK(q->blocks[0][0].input.min() == before);
  auto q2 = std::make_shared<ModelQuant>(m, qc);
  q2->load_state(st);
  CHECK(q2->blocks[0][0].input.min() == q->blocks[0][0].input.min());
  CHECK(q2->blocks[0][7].weight.max() == q->blocks[0][7].weight.max());
  CHECK_THROWS_WITH_AS(ModelQuant(m, QuantConfig{{"nope"}}), doctest::Contains("unknown layer \"nope\""), Error);
}
