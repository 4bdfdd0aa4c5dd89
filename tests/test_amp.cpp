// Mixed precision and bf16 inference: a bf16 training step against the f32
// one, the dynamic loss scaler (skip, backoff, growth, collapse), exact resume
// with amp on, a compiled amp step equal to the eager one (skips included),
// bf16 weights for inference and bf16 checkpoints.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autograd/tape.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "ops/elementwise.h"
#include "train/checkpoint.h"
#include "train/compiled_step.h"
#include "train/fileio.h"
#include "train/loss_scaler.h"
#include "train/optimizer.h"
#include "train/trainer.h"
#include "test_util.h"

using namespace mmrec;
using nlohmann::json;
using test_util::max_abs_diff;
using test_util::TempDir;

namespace {

ModelConfig config(const std::string& recurrence) {
  return ModelConfig::from_json(json{{"dim", 64}, {"layers", 2}, {"heads", 2}, {"ffn_dim", 128}, {"mdi_dim", 16},
                                     {"memory_slots", 4}, {"hds_levels", 2}, {"chunk_size", 16},
                                     {"recurrence", recurrence}});
}

Tensor tokens(int64_t B, int64_t T, uint64_t seed) {
  Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(g.next_u64() % 256);
  return Tensor::from_vector(ids, {B, T});
}

double cosine(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) xy += double(x[i]) * y[i], xx += double(x[i]) * x[i], yy += double(y[i]) * y[i];
  return xy / std::sqrt(xx * yy);
}

// The trainer's small config (a step takes a few milliseconds), with amp.
TrainConfig amp_config(int64_t steps, int64_t accum = 1) {
  json j = {{"model",
             {{"dim", 32}, {"layers", 1}, {"heads", 2}, {"ffn_dim", 64}, {"mdi_dim", 8}, {"memory_slots", 4},
              {"hds_levels", 2}, {"chunk_size", 16}}},
            {"data", {{"source", "synthetic"}, {"synthetic_bytes", 32768}}},
            {"train", {{"steps", steps}, {"batch_size", 4}, {"seq_len", 32}, {"lr", 3e-3}, {"grad_accum", accum},
                       {"amp", "bf16"}}},
            {"schedule", {{"warmup_steps", 3}}},
            {"checkpoint", {{"interval", 8}, {"keep", 2}, {"dtype", "bf16"}}},
            {"log", {{"interval", 1}, {"eval_interval", 4}, {"eval_batches", 1}, {"progress", "none"}}}};
  return TrainConfig::from_json(j);
}

std::vector<double> run_losses(Trainer& t, int64_t stop_after = -1) {
  std::vector<double> out;
  RunHooks h;
  h.on_step = [&](const StepResult& r) {
    out.push_back(r.loss);
    CHECK(r.loss_scale == 65536.0);
  };
  h.should_stop = [&] { return stop_after >= 0 && t.step() >= stop_after; };
  t.run(h);
  return out;
}

}  // namespace

TEST_CASE("a bf16 step against the f32 step: loss within 1e-2, every gradient's cosine > 0.999") {
  for (const char* mode : {"parallel", "sequential"}) {
    INFO(mode);
    const Model f(config(mode), 3), h(config(mode), 3);
    Model& amp = const_cast<Model&>(h);
    amp.use_bf16(/*keep_f32=*/true);
    CHECK(amp.bf16_copy_bytes() > 0);
    const Tensor t = tokens(2, std::string(mode) == "parallel" ? 48 : 20, 7);
    const Tensor lf = f.loss(t), lh = amp.loss(t);
    CHECK(std::fabs(lh.item() - lf.item()) / lf.item() < 1e-2);
    CHECK(lh.item() != lf.item());  // the GEMMs really ran in bf16
    autograd::backward(lf);
    autograd::backward(lh);
    for (size_t i = 0; i < f.parameters().size(); ++i) {
      const auto& [name, pf] = f.parameters()[i];
      const Tensor& ph = amp.parameters()[i].second;
      INFO(name);
      CHECK(ph.dtype() == DType::f32);  // the masters stay f32
      REQUIRE(ph.grad().defined());
      CHECK(cosine(pf.grad(), ph.grad()) > 0.999);
    }
  }
}

TEST_CASE("loss scaler: growth after the interval, backoff and skip on inf, collapse stops the run") {
  LossScaler s({.init_scale = 8.0, .growth_interval = 3});
  CHECK(s.scale() == 8.0);
  CHECK(s.update(true));
  CHECK(s.update(true));
  CHECK(s.scale() == 8.0);
  CHECK(s.update(true));
  CHECK(s.scale() == 16.0);  // three clean steps
  CHECK(s.update(true));
  CHECK_FALSE(s.update(false));  // skipped, backoff, the tracker restarts
  CHECK(s.scale() == 8.0);
  CHECK(s.skipped() == 1);
  CHECK(s.clean_steps() == 0);
  LossScaler r;
  r.load_state(s.state());
  CHECK(r.scale() == 8.0);
  CHECK(r.skipped() == 1);
  CHECK_FALSE(s.update(false));  // 4
  CHECK_FALSE(s.update(false));  // 2
  CHECK_FALSE(s.update(false));  // 1
  CHECK_THROWS_WITH_AS(s.update(false), doctest::Contains("the loss scale fell to 0.5 (below 1)"), Error);
  CHECK(LossScaler().scale() == 65536.0);
  CHECK_THROWS_AS(r.load_state(json{{"scale", 1}}), Error);
}

TEST_CASE("an injected inf gradient skips the update, halves the scale; clean steps grow it") {
  Model m(config("parallel"), 5);
  m.use_bf16(true);
  AdamW opt(m.parameters(), decay_mask(m.parameters(), OptimConfig{}), OptimConfig{});
  LossScaler scaler({.growth_interval = 2});
  const Tensor t = tokens(2, 32, 9);
  auto step = [&](bool inject) {
    autograd::backward(ops::scale(m.loss(t), static_cast<float>(scaler.scale())));
    if (inject) m.parameters()[3].second.grad().data<float>()[5] = std::numeric_limits<float>::infinity();
    const double norm = clip_grad_norm(m.parameters(), 1.0, 1.0 / scaler.scale());
    const bool stepped = scaler.update(std::isfinite(norm));
    if (stepped) opt.step(1e-3);
    opt.zero_grad();
    if (stepped) m.refresh_bf16_copies();
    return stepped;
  };
  const Tensor before = m.parameters()[3].second.clone();
  CHECK_FALSE(step(true));
  CHECK(max_abs_diff(m.parameters()[3].second, before) == 0);  // nothing moved
  CHECK(opt.steps() == 0);
  CHECK(scaler.scale() == 32768.0);
  const double loss0 = m.loss(t).item();
  CHECK(step(false));
  CHECK(step(false));
  CHECK(opt.steps() == 2);
  CHECK(scaler.scale() == 65536.0);
  CHECK(m.loss(t).item() < loss0);  // the copies follow the masters
}

TEST_CASE("trainer with amp: accumulation, exact resume, a bf16 final checkpoint") {
  TempDir d;
  const TrainConfig c = amp_config(12, 2);
  CHECK(c.to_json()["train"]["amp"] == "bf16");
  Trainer a(c, {.run_dir = d / "a"});
  CHECK(a.model().uses_bf16());
  const std::vector<double> ref = run_losses(a);
  REQUIRE(ref.size() == 12);
  CHECK(ref.back() < ref.front());
  {
    Trainer b(c, {.run_dir = d / "b"});
    CHECK(run_losses(b, 5).size() == 5);
  }
  Trainer resumed(c, {.run_dir = d / "b", .resume = ResumeMode::require});
  const std::vector<double> rest = run_losses(resumed);
  REQUIRE(rest.size() == 7);
  for (size_t i = 0; i < rest.size(); ++i) CHECK(rest[i] == ref[i + 5]);  // exact
  CHECK(read_file(d / "a/model.safetensors") == read_file(d / "b/model.safetensors"));
  const Safetensors f = read_safetensors(d / "a/model.safetensors");
  CHECK(f.get("blocks.0.qkvz.weight").dtype() == DType::bf16);
  // Checkpoints keep f32 masters (exact resume); the metrics carry the scale.
  const Safetensors ck = read_safetensors(list_checkpoints(d / "a").back().dir + "/model.safetensors");
  CHECK(ck.get("blocks.0.qkvz.weight").dtype() == DType::f32);
  CHECK(read_file(d / "a/metrics.jsonl").find("\"loss_scale\":65536.0") != std::string::npos);
}

TEST_CASE("a compiled amp step equals the eager one bit for bit, an injected inf skipped alike (both modes)") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model eager(config(mode), 5), compiled(config(mode), 5);
    eager.use_bf16(true);
    compiled.use_bf16(true);
    const OptimConfig oc;
    AdamW opt_e(eager.parameters(), decay_mask(eager.parameters(), oc), oc);
    AdamW opt_c(compiled.parameters(), decay_mask(compiled.parameters(), oc), oc);
    LossScaler se({.growth_interval = 3}), sc({.growth_interval = 3});
    const int64_t A = 2;
    const double clip = 0.5;
    CompiledStep step(compiled, opt_c, &sc, clip, A, "test");
    const float inf = std::numeric_limits<float>::infinity();
    for (int s = 0; s < 9; ++s) {
      const bool inject = s == 2 || s == 6;
      const double lr = 3e-3 * (1.0 - s / 20.0);
      for (int64_t a = 0; a < A; ++a) {
        const Tensor batch = tokens(2, 33, 100 + static_cast<uint64_t>(s * A + a));
        const Tensor le = eager.loss(batch);
        autograd::backward(ops::scale(le, static_cast<float>(se.scale() / static_cast<double>(A))));
        CHECK(static_cast<double>(le.item()) == step.micro_batch(batch));
      }
      // A host write between replays: the captured clip reads the buffers in place.
      if (inject) {
        eager.parameters()[3].second.grad().data<float>()[5] = inf;
        compiled.parameters()[3].second.grad().data<float>()[5] = inf;
      }
      const double ne = clip_grad_norm(eager.parameters(), clip, 1.0 / se.scale());
      const bool stepped = se.update(std::isfinite(ne));
      if (stepped) opt_e.step(lr);
      opt_e.zero_grad();
      if (stepped) eager.refresh_bf16_copies();
      const CompiledStep::Update u = step.update(lr);
      CHECK(u.stepped == !inject);
      CHECK(u.stepped == stepped);
      CHECK((std::isfinite(ne) ? u.norm == ne : !std::isfinite(u.norm)));
      CHECK(sc.scale() == se.scale());
    }
    CHECK(sc.scale() == 65536.0 / 2);  // two backoffs, one growth (3 clean steps in a row: 3-5)
    CHECK(opt_c.steps() == 7);
    CHECK(step.micro_fn().captures() == 1);
    for (size_t i = 0; i < eager.parameters().size(); ++i) {
      CAPTURE(eager.parameters()[i].first);
      CHECK(max_abs_diff(eager.parameters()[i].second, compiled.parameters()[i].second) == 0);
    }
    CHECK(max_abs_diff(eager.loss(tokens(2, 33, 1)), compiled.loss(tokens(2, 33, 1))) == 0);  // the bf16 copies too
  }
}

TEST_CASE("trainer with amp and train.compile: the eager amp run's losses and weights, across a resume, with checkpointing") {
  for (const char* ckpt : {"none", "block", "chunk"}) {
    CAPTURE(ckpt);
    TempDir d;
    TrainConfig eager = amp_config(8, 2);
    eager.train.checkpointing = ckpt;
    TrainConfig compiled = eager;
    compiled.train.compile = true;
    Trainer a(eager, {.run_dir = d / "a"});
    const std::vector<double> ref = run_losses(a);
    {
      Trainer b(compiled, {.run_dir = d / "b"});
      CHECK(run_losses(b, 3).size() == 3);
    }
    Trainer resumed(compiled, {.run_dir = d / "b", .resume = ResumeMode::require});
    const std::vector<double> rest = run_losses(resumed);
    REQUIRE(rest.size() == 5);
    for (size_t i = 0; i < rest.size(); ++i) CHECK(rest[i] == ref[i + 3]);
    CHECK(read_file(d / "a/model.safetensors") == read_file(d / "b/model.safetensors"));
  }
}

TEST_CASE("bf16 inference: half the GEMM weight bytes, close logits, packed = plain; bf16 checkpoints load anywhere") {
  TempDir d;
  for (bool tied : {true, false}) {
    INFO("tied " << tied);
    ModelConfig mc = config("parallel");
    mc.tie_embeddings = tied;
    Model f(mc, 11);
    autograd::NoGradGuard ng;
    const Tensor t = tokens(1, 40, 3);
    State sf = f.initial_state(1);
    const Tensor want = f.forward(t, sf);
    size_t bytes_f = 0, bytes_h = 0, bf16_bytes = 0;
    for (const auto& [n, p] : f.parameters()) bytes_f += p.nbytes();
    Model h = load_model([&] {
      save_model(d / "m.safetensors", f);
      return d / "m.safetensors";
    }());
    h.use_bf16(/*keep_f32=*/false);
    for (const auto& [n, p] : h.parameters()) {
      bytes_h += p.nbytes();
      if (p.dtype() == DType::bf16) bf16_bytes += p.nbytes();
    }
    CHECK(h.parameter("blocks.0.ffn.fc1.weight").dtype() == DType::bf16);
    CHECK(h.parameter("blocks.0.decay.fc1.weight").dtype() == DType::f32);  // the decay gate stays f32
    CHECK(bytes_f - bytes_h == bf16_bytes);  // each bf16 weight takes half its f32 bytes
    CHECK(double(bytes_h) / double(bytes_f) < 0.65);  // (this small model's embedding and MDI weigh much)
    State sh = h.initial_state(1);
    const Tensor got = h.forward(t, sh);
    CHECK(max_abs_diff(got, want) > 0);
    CHECK(max_abs_diff(got, want) < 0.02);
    // Token by token through the packed bf16 weights: the plain bf16 path.
    const InferencePack pack = h.pack_for_inference(1);
    State a = h.initial_state(1), b = h.initial_state(1);
    for (int64_t i = 0; i < 6; ++i) {
      const Tensor one = t.slice(1, i, i + 1).contiguous();
      CHECK(max_abs_diff(h.forward(one, a, &pack), h.forward(one, b)) < 1e-5);
    }
    // A bf16 checkpoint: its values are the rounded f32 ones, so a bf16 model
    // from it has the GEMM weights of the one converted from f32; it loads
    // into f32 models too.
    save_model(d / "h.safetensors", f, DType::bf16);
    Model h2 = load_model(d / "h.safetensors");
    h2.use_bf16(false);
    for (const auto& [n, p] : h2.parameters())
      if (p.dtype() == DType::bf16) CHECK(max_abs_diff(p, h.parameter(n)) == 0);
    State s2 = h2.initial_state(1);
    CHECK(max_abs_diff(h2.forward(t, s2), got) < 0.02);
    save_model(d / "h2.safetensors", h);  // a bf16 model saves (and loads) as f32
    Model back = load_model(d / "h2.safetensors");
    CHECK(back.parameter("blocks.0.ffn.fc1.weight").dtype() == DType::f32);
    State s3 = back.initial_state(1);
    CHECK(max_abs_diff(back.forward(t, s3), want) < 0.02);
  }
}
