// The MM-Rec model: config parsing, streaming consistency, causality,
// gradients, checkpoints, and a tiny model that learns.
#include <doctest/doctest.h>

#include "test_util.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <tuple>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "model_reference.h"
#include "models/config.h"
#include "models/memory.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "tensor/error.h"
#include "tensor/random.h"

using namespace mmrec;
using test_util::max_abs_diff;
using test_util::random_tokens;
using nlohmann::json;

TEST_CASE("model config: defaults, resolution and round trip") {
  ModelConfig c = ModelConfig::from_json(json::object());
  CHECK(c.vocab_size == 256);
  CHECK(c.dim == 256);
  CHECK(c.layers == 4);
  CHECK(c.heads == 4);
  CHECK(c.ffn_dim == 1024);
  CHECK(c.mdi_dim == 64);
  CHECK(c.memory_slots == 64);
  CHECK(c.hds_levels == 3);
  CHECK(c.chunk_size == 128);
  CHECK(c.recurrence == "parallel");
  CHECK(c.tie_embeddings);
  CHECK(c.norm_eps == doctest::Approx(1e-6));
  CHECK(ModelConfig::from_json(json()).ffn_dim == 1024);  // no section at all
  ModelConfig d = ModelConfig::from_json(json::parse(
      R"({"dim": 64, "heads": 2, "layers": 1, "recurrence": "sequential", "tie_embeddings": false,
          "norm_eps": 1e-5, "chunk_size": 4, "memory_slots": 0})"));
  CHECK(d.ffn_dim == 256);
  CHECK(d.mdi_dim == 16);
  CHECK(d.recurrence == "sequential");
  CHECK_FALSE(d.tie_embeddings);
  CHECK(d.memory_slots == 0);
  json j = d.to_json();
  CHECK(j["ffn_dim"] == 256);
  ModelConfig e = ModelConfig::from_json(j);
  CHECK(e.to_json() == j);
  // A config built in code resolves its defaults too.
  ModelConfig f;
  f.dim = 32;
  CHECK(f.resolved().ffn_dim == 128);
  CHECK(f.to_json()["mdi_dim"] == 8);
}

TEST_CASE("model config errors name the key") {
  auto err = [](const char* text) {
    try {
      ModelConfig::from_json(json::parse(text));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(err(R"({"heads": 6})") == "model.heads: 6 does not divide model.dim 256");
  CHECK(err(R"({"dimm": 6})") == "model.dimm: unknown key");
  CHECK(err(R"({"dim": "a"})") == "model.dim: expected an integer, got \"a\"");
  CHECK(err(R"({"dim": 2.5})") == "model.dim: expected an integer, got 2.5");
  CHECK(err(R"({"dim": 0})") == "model.dim: must be >= 1, got 0");
  CHECK(err(R"({"layers": -1})") == "model.layers: must be >= 1, got -1");
  CHECK(err(R"({"chunk_size": 0})") == "model.chunk_size: must be >= 1, got 0");
  CHECK(err(R"({"hds_levels": 0})") == "model.hds_levels: must be >= 1, got 0");
  CHECK(err(R"({"memory_slots": -2})") == "model.memory_slots: must be >= 0, got -2");
  CHECK(err(R"({"recurrence": "scan"})") ==
        "model.recurrence: expected \"parallel\" or \"sequential\", got \"scan\"");
  CHECK(err(R"({"recurrence": 1})") == "model.recurrence: expected \"parallel\" or \"sequential\", got 1");
  CHECK(err(R"({"tie_embeddings": "yes"})") == "model.tie_embeddings: expected true or false, got \"yes\"");
  CHECK(err(R"({"norm_eps": "x"})") == "model.norm_eps: expected a number, got \"x\"");
  CHECK(err(R"({"norm_eps": 0})") == "model.norm_eps: must be > 0, got 0");
  CHECK(err(R"({"dim": 2, "heads": 1})") ==
        "model.mdi_dim: the default dim / 4 is 0 for model.dim 2; set model.mdi_dim");
  CHECK(err(R"([1])") == "model: expected an object, got [1]");
}

namespace {

// A tiny config whose memory fills up and drops slots within 40 tokens.
ModelConfig tiny(const std::string& recurrence = "parallel", bool tied = true) {
  return ModelConfig::from_json(json{{"vocab_size", 19}, {"dim", 8}, {"layers", 2}, {"heads", 2},
                                     {"ffn_dim", 12}, {"mdi_dim", 4}, {"memory_slots", 3}, {"hds_levels", 2},
                                     {"chunk_size", 4}, {"recurrence", recurrence}, {"tie_embeddings", tied}});
}

// Larger weights than the 0.02 init, so that every path visibly matters.
void spread_weights(const Model& m, float stddev, uint64_t seed) {
  Generator g(seed);
  for (const auto& [name, p] : m.parameters()) {
    Tensor dst = p;
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 && name.find("norm") == std::string::npos)
      dst.copy_from(randn(p.shape(), g, 0.0f, stddev));
    else if (name.find(".bias") != std::string::npos && name.find("fc2") == std::string::npos)
      dst.copy_from(randn(p.shape(), g, 0.0f, 0.1f));
  }
}


// Feeds tokens in calls of `sizes`; drop_cache forgets the state's cached
// memory levels between calls (they must be recomputed identically).
Tensor run_split(const Model& m, const Tensor& tokens, const std::vector<int64_t>& sizes, bool drop_cache = false,
                 const InferencePack* pack = nullptr) {
  autograd::NoGradGuard ng;
  State s = m.initial_state(tokens.size(0));
  std::vector<Tensor> outs;
  int64_t pos = 0;
  for (int64_t n : sizes) {
    if (drop_cache)
      for (auto& l : s.layers) l.levels_kt = l.levels_v = Tensor();
    outs.push_back(m.forward(tokens.slice(1, pos, pos + n), s, pack));
    pos += n;
  }
  REQUIRE(pos == tokens.size(1));
  const int64_t B = tokens.size(0), V = m.config().vocab_size;
  Tensor all = Tensor::empty({B, pos, V});
  for (int64_t b = 0, t0 = 0; b < B; ++b, t0 = 0)
    for (const Tensor& o : outs) {
      for (int64_t t = 0; t < o.size(1); ++t)
        for (int64_t v = 0; v < V; ++v) all.set({b, t0 + t, v}, o.at({b, t, v}));
      t0 += o.size(1);
    }
  return all;
}

// The streaming tests' model: tiny, with weights large enough that every path matters.
Model streaming_model(const std::string& mode) {
  Model m(tiny(mode), 4);
  spread_weights(m, 0.4f, 12);
  return m;
}

}  // namespace

TEST_CASE("parameters: names, shapes and initialisation follow the spec") {
  Model m(tiny(), 7);
  const auto& ps = m.parameters();
  REQUIRE(ps.size() == 1 + 2 * 20 + 1);
  CHECK(ps.front().first == "embed.weight");
  CHECK(ps.back().first == "norm.weight");
  const char* block[] = {"norm1.weight", "norm2.weight", "qkvz.weight", "qkvz.bias", "gate.weight", "gate.bias",
                         "decay.fc1.weight", "decay.fc1.bias", "decay.fc2.weight", "decay.fc2.bias",
                         "context.fc1.weight", "context.fc1.bias", "context.fc2.weight", "context.fc2.bias",
                         "attn_out.weight", "attn_out.bias", "ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight",
                         "ffn.fc2.bias"};
  for (int i = 0; i < 20; ++i) CHECK(ps[1 + 20 + i].first == std::string("blocks.1.") + block[i]);
  CHECK(m.parameter("blocks.0.qkvz.weight").shape() == Shape{32, 8});
  CHECK(m.parameter("blocks.1.decay.fc1.weight").shape() == Shape{4, 8});
  CHECK(m.parameter("blocks.1.decay.fc2.weight").shape() == Shape{8, 4});
  CHECK(m.parameter("blocks.0.ffn.fc1.weight").shape() == Shape{12, 8});
  CHECK(m.parameter("blocks.0.decay.fc2.bias").at({3}) == 3.0);
  CHECK(m.parameter("blocks.1.context.fc2.bias").at({0}) == 3.0);
  CHECK(m.parameter("blocks.1.gate.bias").at({0}) == 0.0);
  CHECK(m.parameter("blocks.0.norm2.weight").at({5}) == 1.0);
  for (const auto& [name, t] : ps) {
    CHECK(t.requires_grad());
    CHECK(t.is_leaf());
    CHECK(t.dtype() == DType::f32);
  }
  // normal(0, 0.02): check the spread over the embedding and the QKVZ weight.
  for (const char* n : {"embed.weight", "blocks.0.qkvz.weight"}) {
    const auto v = m.parameter(n).to_vector();
    double s2 = 0;
    for (float x : v) s2 += double(x) * x;
    CHECK(std::sqrt(s2 / v.size()) == doctest::Approx(0.02).epsilon(0.25));
  }
  CHECK_THROWS_WITH_AS(m.parameter("lm_head.weight"), "model: no parameter named 'lm_head.weight'", Error);
  Model u(tiny("parallel", false), 7);
  CHECK(u.parameters().back().first == "lm_head.weight");
  CHECK(u.num_parameters() == m.num_parameters() + 19 * 8);
  // Same seed, same weights; another seed, others.
  CHECK(max_abs_diff(Model(tiny(), 7).parameter("embed.weight"), m.parameter("embed.weight")) == 0);
  CHECK(max_abs_diff(Model(tiny(), 8).parameter("embed.weight"), m.parameter("embed.weight")) > 0);
}

TEST_CASE("HDS levels average groups of 4^l slots from the oldest") {
  CHECK(hds_total_slots(64, 3) == 64 + 16 + 4);
  CHECK(hds_total_slots(5, 3) == 5 + 2 + 1);
  CHECK(hds_total_slots(5, 1) == 5);
  Tensor pt = hds_pooling(5, 3);  // [5, 8]
  REQUIRE(pt.shape() == Shape{5, 8});
  CHECK(pt.at({2, 2}) == 1.0);
  CHECK(pt.at({3, 5}) == 0.25);   // level 1, group 0 = slots 0..3
  CHECK(pt.at({4, 5}) == 0.0);
  CHECK(pt.at({4, 6}) == 1.0);    // level 1, group 1 = slot 4 alone
  CHECK(pt.at({4, 7}) == doctest::Approx(0.2));  // level 2 = all five
}

TEST_CASE("forward matches a double-precision reference of the spec") {
  for (const char* mode : {"parallel", "sequential"}) {
    for (bool tied : {true, false}) {
      CAPTURE(mode);
      CAPTURE(tied);
      Model m(tiny(mode, tied), 3);
      spread_weights(m, 0.4f, 11);
      const int64_t B = 2, T = 27;
      Tensor tokens = random_tokens(B, T, 19, 5);
      autograd::NoGradGuard ng;
      State s = m.initial_state(B);
      Tensor logits = m.forward(tokens, s);
      REQUIRE(logits.shape() == Shape{B, T, 19});
      RefModel ref(m);
      double err = 0;
      for (int64_t b = 0; b < B; ++b) {
        std::vector<int64_t> toks;
        for (int64_t t = 0; t < T; ++t) toks.push_back(static_cast<int64_t>(tokens.at({b, t})));
        auto want = ref.run(toks);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t v = 0; v < 19; ++v) err = std::max(err, std::fabs(want[t][v] - logits.at({b, t, v})));
      }
      CHECK(err < 1e-4);
      // The state carries 27 / 4 = 6 chunks -> 3 slots kept, 3 tokens in progress.
      CHECK(s.layers[1].mem_keys.shape() == Shape{B, 3, 8});
      CHECK(s.layers[0].chunk_tokens == 3);
    }
  }
}

TEST_CASE("forward matches the reference with three HDS levels, one level, and no memory") {
  for (auto [levels, slots, chunk] : {std::tuple{3, 6, 2}, std::tuple{1, 2, 3}, std::tuple{2, 0, 4}}) {
    CAPTURE(levels);
    ModelConfig c = tiny();
    c.hds_levels = levels, c.memory_slots = slots, c.chunk_size = chunk;
    Model m(c, 4);
    spread_weights(m, 0.4f, 21);
    Tensor tokens = random_tokens(1, 27, 19, 22);
    autograd::NoGradGuard ng;
    State s = m.initial_state(1);
    // Two calls, so that the carried memory (and its cached levels) is read too.
    Tensor a = m.forward(tokens.slice(1, 0, 10), s), b = m.forward(tokens.slice(1, 10, 27), s);
    std::vector<int64_t> toks;
    for (int64_t t = 0; t < 27; ++t) toks.push_back(static_cast<int64_t>(tokens.at({0, t})));
    auto want = RefModel(m).run(toks);
    double err = 0;
    for (int64_t t = 0; t < 27; ++t)
      for (int64_t v = 0; v < 19; ++v)
        err = std::max(err, std::fabs(want[t][v] - (t < 10 ? a.at({0, t, v}) : b.at({0, t - 10, v}))));
    CHECK(err < 1e-4);
    CHECK(s.layers[0].mem_keys.size(1) == slots);
  }
}

TEST_CASE("streaming: whole, random splits and token by token give the same logits") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const Model m = streaming_model(mode);
    const int64_t B = 2, T = 40;
    const Tensor tokens = random_tokens(B, T, 19, 6), whole = run_split(m, tokens, {T});
    Generator g(9);
    for (int rep = 0; rep < 4; ++rep) {
      std::vector<int64_t> sizes;
      for (int64_t left = T; left > 0;) {
        const int64_t n = std::min<int64_t>(left, 1 + static_cast<int64_t>(g.next_u64() % 11));
        sizes.push_back(n);
        left -= n;
      }
      CHECK(max_abs_diff(run_split(m, tokens, sizes), whole) < 1e-4);
    }
    CHECK(max_abs_diff(run_split(m, tokens, std::vector<int64_t>(T, 1)), whole) < 1e-4);
    CHECK(max_abs_diff(run_split(m, tokens, {3, 1, 4, 32}), whole) < 1e-4);  // exact chunk ends
    CHECK(max_abs_diff(run_split(m, tokens, {3, 1, 4, 5, 1, 1, 25}, true), whole) < 1e-4);
    // The memory matters: without it the logits differ.
    ModelConfig c = tiny(mode);
    c.memory_slots = 0;
    Model nm(c, 4);
    for (std::size_t i = 0; i < m.parameters().size(); ++i) {
      Tensor dst = nm.parameters()[i].second;
      dst.copy_from(m.parameters()[i].second);
    }
    CHECK(max_abs_diff(run_split(nm, tokens, {T}), whole) > 1e-3);
  }
}

TEST_CASE("inference pack: the plain path's logits, a snapshot of the weights, fallbacks and errors") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const Model m = streaming_model(mode);
    const int64_t B = 2, T = 40;
    const Tensor tokens = random_tokens(B, T, 19, 6), whole = run_split(m, tokens, {T});
    const InferencePack pk = m.pack_for_inference(B);  // B x 1 rows: token by token
    CHECK(pk.rows() == B);
    CHECK(max_abs_diff(run_split(m, tokens, std::vector<int64_t>(T, 1), false, &pk), whole) < 1e-4);
    // Calls of other row counts take the plain path.
    CHECK(max_abs_diff(run_split(m, tokens, {3, 1, 4, 1, 1, 30}, false, &pk), whole) < 1e-4);
    const InferencePack pk4 = m.pack_for_inference(B * 4);
    CHECK(max_abs_diff(run_split(m, tokens, std::vector<int64_t>(10, 4), false, &pk4), whole) < 1e-4);

    // A snapshot: after the weights change, the pack still gives the old
    // logits (so it was used), the plain path the new ones.
    Tensor w = m.parameter("blocks.1.ffn.fc2.weight");
    const Tensor saved = w.detach().clone();
    std::vector<float> tripled = saved.to_vector();
    for (float& v : tripled) v *= 3.0f;
    w.copy_from(Tensor::from_vector(tripled, saved.shape()));
    const Tensor changed = run_split(m, tokens, {T});
    CHECK(max_abs_diff(changed, whole) > 1e-3);
    CHECK(max_abs_diff(run_split(m, tokens, std::vector<int64_t>(T, 1), false, &pk), whole) < 1e-4);
    CHECK(max_abs_diff(run_split(m, tokens, std::vector<int64_t>(T, 1), false, &pk), changed) > 1e-3);
    w.copy_from(saved);

    // In grad mode the pack is ignored: the result has a graph.
    State s = m.initial_state(B);
    Tensor logits = m.forward(tokens.slice(1, 0, 1), s, &pk);
    CHECK(logits.requires_grad());
  }
  Model a(tiny(), 1), b(tiny(), 1);
  const InferencePack pa = a.pack_for_inference(1);
  State s = b.initial_state(1);
  autograd::NoGradGuard ng;
  CHECK_THROWS_WITH_AS(b.forward(random_tokens(1, 1, 19, 2), s, &pa), doctest::Contains("another model"), Error);
  CHECK_THROWS_WITH_AS(a.pack_for_inference(0), doctest::Contains("rows must be >= 1"), Error);
  CHECK(InferencePack().rows() == 0);
  CHECK(a.forward(random_tokens(1, 1, 19, 2), s, nullptr).shape() == Shape{1, 1, 19});
}

TEST_CASE("causality: a later token never changes earlier logits") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model m(tiny(mode), 5);
    spread_weights(m, 0.4f, 13);
    Tensor a = random_tokens(1, 30, 19, 7);
    autograd::NoGradGuard ng;
    State s0 = m.initial_state(1);
    Tensor la = m.forward(a, s0);
    for (int64_t p : {0, 5, 11, 12, 29}) {
      Tensor b = a.clone();
      b.set({0, p}, (static_cast<int64_t>(a.at({0, p})) + 1) % 19);
      State s = m.initial_state(1);
      Tensor lb = m.forward(b, s);
      double before = 0, at_or_after = 0;
      for (int64_t t = 0; t < 30; ++t)
        for (int64_t v = 0; v < 19; ++v) {
          const double dlt = std::fabs(la.at({0, t, v}) - lb.at({0, t, v}));
          (t < p ? before : at_or_after) = std::max(t < p ? before : at_or_after, dlt);
        }
      CHECK(before == 0);
      CHECK(at_or_after > 0);
    }
  }
}

TEST_CASE("gradients of the whole model match finite differences") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model m(tiny(mode, false), 6);
    spread_weights(m, 0.3f, 14);
    Tensor tokens = random_tokens(2, 14, 19, 8);
    // Part of a call's state comes from an earlier call (detached).
    State start = m.initial_state(2);
    {
      autograd::NoGradGuard ng;
      m.forward(random_tokens(2, 6, 19, 9), start);
    }
    std::vector<Tensor> params;
    for (const auto& [name, t] : m.parameters()) params.push_back(t);
    autograd::GradcheckOptions opt;
    opt.eps = 3e-3;
    opt.atol = 2e-4;
    opt.rtol = 2e-2;
    opt.max_elements = 12;
    auto r = autograd::gradcheck(
        [&](const std::vector<Tensor>&) {
          State s = start;
          return m.loss(tokens, &s);
        },
        params, opt);
    CHECK_MESSAGE(r.ok, r.message);
    MESSAGE("gradcheck ", std::string(mode), ": max abs err ", r.max_abs_err, ", max rel err ", r.max_rel_err);
    for (auto& p : params) p.zero_grad();
  }
}

TEST_CASE("every parameter receives a non-zero gradient, and the tape is freed") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model m(tiny(mode, false), 7);
    Tensor tokens = random_tokens(2, 24, 19, 10);
    Tensor loss = m.loss(tokens);
    CHECK(loss.item() == doctest::Approx(std::log(19.0)).epsilon(0.05));
    autograd::backward(loss);
    for (const auto& [name, p] : m.parameters()) {
      CAPTURE(name);
      REQUIRE(p.grad().defined());
      double s = 0;
      for (float g : p.grad().to_vector()) s += std::fabs(g);
      CHECK(s > 0);
      Tensor(p).zero_grad();
    }
    loss = Tensor();
    CHECK(autograd::tape_size() == 0);
  }
}

TEST_CASE("loss: ignore_index, a carried state, and errors") {
  Model m(tiny(), 8);
  Tensor tokens = random_tokens(2, 12, 19, 11);
  autograd::NoGradGuard ng;
  const float full = m.loss(tokens).item();
  // Ignoring a token value drops exactly the targets equal to it.
  Tensor t2 = tokens.clone();
  t2.set({0, 5}, 0);
  t2.set({1, 7}, 0);
  const float ign = m.loss(t2, nullptr, 0).item();
  CHECK(std::isfinite(ign));
  CHECK(ign != full);
  State s = m.initial_state(2);
  m.loss(tokens, &s);
  CHECK(s.layers[0].mem_keys.size(1) == 3);
  CHECK_THROWS_WITH_AS(m.loss(random_tokens(2, 1, 19, 1)),
                       "model.loss: tokens must be [B, T] with T >= 2, got [2, 1]", Error);
  State s1 = m.initial_state(1);
  CHECK_THROWS_WITH_AS(m.forward(tokens, s1),
                       "model.forward: state is for batch 1 and 2 layers, tokens are [2, 12] for a model of 2 layers",
                       Error);
  Tensor bad = tokens.clone();
  bad.set({1, 2}, 19);
  State s2 = m.initial_state(2);
  CHECK_THROWS_WITH_AS(m.forward(bad, s2), "embedding: id 19 at position 14 out of range for vocab 19", Error);
  CHECK(s2.layers[0].chunk_tokens == 0);  // a failed call leaves the state alone
  CHECK_THROWS_WITH_AS(m.forward(Tensor::zeros({2, 3}), s2), "model.forward: tokens must be i32 or i64, got f32",
                       Error);
  CHECK(m.forward(Tensor::zeros({2, 0}, DType::i32), s2).shape() == Shape{2, 0, 19});
}

TEST_CASE("checkpoints: save -> load gives identical (f32) or close (bf16) logits") {
  const std::string p = "/tmp/mmrec_test_model_" + std::to_string(::getpid()) + ".safetensors";
  for (bool tied : {true, false}) {
    Model m(tiny("sequential", tied), 9);
    spread_weights(m, 0.3f, 15);
    Tensor tokens = random_tokens(1, 21, 19, 12);
    autograd::NoGradGuard ng;
    State s = m.initial_state(1);
    Tensor want = m.forward(tokens, s);
    save_model(p, m);
    Model l = load_model(p);
    CHECK(l.config().to_json() == m.config().to_json());
    State s2 = l.initial_state(1);
    CHECK(max_abs_diff(l.forward(tokens, s2), want) == 0);
    save_model(p, m, DType::bf16);
    CHECK(read_safetensors(p).get("embed.weight").dtype() == DType::bf16);
    Model lb = load_model(p);
    State s3 = lb.initial_state(1);
    const double err = max_abs_diff(lb.forward(tokens, s3), want);
    CHECK(err > 0);
    CHECK(err < 0.05);
  }
  // Mismatches are reported by name.
  Model small(tiny(), 1);
  save_model(p, small);
  ModelConfig other = tiny();
  other.ffn_dim = 16;
  CHECK_THROWS_WITH_AS(load_weights(Model(other), read_safetensors(p)),
                       ("load_weights: '" + p + "': tensor 'blocks.0.ffn.fc1.weight' has shape [12, 8], the model needs [16, 8]").c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(load_weights(Model(tiny("parallel", false)), read_safetensors(p)),
                       ("load_weights: '" + p + "': missing tensor 'lm_head.weight' of shape [19, 8]").c_str(), Error);
  write_safetensors(p, {{"x", Tensor::zeros({1})}});
  CHECK_THROWS_WITH_AS(load_model(p), ("load_model: '" + p + "' has no \"config\" in its metadata").c_str(), Error);
  std::remove(p.c_str());
}

TEST_CASE("a tiny model overfits a 64-byte string") {
  const std::string text = "MM-Rec reads a stream once; its memory keeps what the scan drops.";
  REQUIRE(text.size() >= 64);
  std::vector<int32_t> ids(text.begin(), text.begin() + 64);
  Tensor tokens = Tensor::from_vector(ids, {1, 64});
  Model m(ModelConfig::from_json(json{{"dim", 32}, {"layers", 1}, {"heads", 2}, {"memory_slots", 4},
                                      {"chunk_size", 8}, {"hds_levels", 2}}),
          1);
  // Adam, written inline (the library's optimizers live in src/train).
  std::vector<Tensor> mom, vel;
  for (const auto& [n, p] : m.parameters()) mom.push_back(Tensor::zeros(p.shape())), vel.push_back(Tensor::zeros(p.shape()));
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f;
  float loss = 0;
  int step = 0;
  for (; step < 400; ++step) {
    Tensor l = m.loss(tokens);
    loss = l.item();
    if (loss < 0.05f) break;
    autograd::backward(l);
    const float c1 = 1 - std::pow(b1, float(step + 1)), c2 = 1 - std::pow(b2, float(step + 1));
    for (size_t i = 0; i < m.parameters().size(); ++i) {
      Tensor p = m.parameters()[i].second;
      float* w = p.data<float>();
      const float* g = p.grad().data<float>();
      float* mm = mom[i].data<float>();
      float* vv = vel[i].data<float>();
      for (int64_t j = 0; j < p.numel(); ++j) {
        mm[j] = b1 * mm[j] + (1 - b1) * g[j];
        vv[j] = b2 * vv[j] + (1 - b2) * g[j] * g[j];
        w[j] -= lr * (mm[j] / c1) / (std::sqrt(vv[j] / c2) + 1e-8f);
      }
      p.zero_grad();
    }
  }
  MESSAGE("overfit: loss ", loss, " after ", step, " steps");
  CHECK(loss < 0.05f);
}
