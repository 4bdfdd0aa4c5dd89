// QAT and int8 inference composed with the rest of the runtime: a compiled
// QAT step replays eager bit for bit (observers, fake quantization, STE,
// optimizer), a compiled int8 forward equals eager, block and chunk
// checkpointing give the gradients and observer state of the plain step, and
// QAT under bf16 amp trains close to f32 QAT, resumes exactly and compiles;
// the peak memory of QAT under chunk checkpointing.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/model.h"
#include "models/quant.h"
#include "tensor/allocator.h"
#include "train/fileio.h"
#include "train/optimizer.h"
#include "train/trainer.h"
#include "compiled_steps.h"
#include "test_util.h"
#include "train_util.h"

using namespace mmrec;
using autograd::CompiledFn;
using nlohmann::json;
using test_util::bit_equal;
using test_util::random_tokens;
using test_util::run_losses;
using test_util::TempDir;

namespace {

ModelConfig small(const std::string& recurrence) {
  return ModelConfig::from_json(json{{"vocab_size", 64}, {"dim", 32}, {"layers", 2}, {"heads", 2},
                                     {"memory_slots", 4}, {"chunk_size", 8}, {"recurrence", recurrence}});
}

std::shared_ptr<ModelQuant> attach_qat(Model& m, bool head = true) {
  QuantConfig qc;
  qc.head = head;
  auto q = std::make_shared<ModelQuant>(m, qc);
  m.set_quantization(q);
  return q;
}

// Every observer's min and max, in site order.
std::vector<std::vector<float>> observer_state(ModelQuant& q) {
  std::vector<std::vector<float>> out;
  for (QuantSite* s : q.sites())
    for (const MinMaxObserver* o : {&s->input, &s->weight}) out.push_back(o->min()), out.push_back(o->max());
  return out;
}

// The trainer's small config, with QAT from step 3 and observers frozen at step 9.
TrainConfig qat_config(int64_t steps, json train_extra = json::object(), json qat_extra = json::object()) {
  json train = {{"steps", steps}, {"batch_size", 4}, {"seq_len", 32}, {"lr", 3e-3}};
  train.update(train_extra);
  json qat = {{"start_step", 3}, {"freeze_observers_step", 9}, {"head", true}};
  qat.update(qat_extra);
  json j = {{"model",
             {{"dim", 32}, {"layers", 2}, {"heads", 2}, {"ffn_dim", 64}, {"mdi_dim", 8}, {"memory_slots", 4},
              {"hds_levels", 2}, {"chunk_size", 8}}},
            {"data", {{"source", "synthetic"}, {"synthetic_bytes", 32768}}},
            {"train", train},
            {"qat", qat},
            {"schedule", {{"warmup_steps", 3}}},
            {"checkpoint", {{"interval", 6}, {"keep", 2}}},
            {"log", {{"interval", 1}, {"eval_interval", 100}, {"eval_batches", 1}, {"progress", "none"}}}};
  return TrainConfig::from_json(j);
}

}  // namespace

TEST_CASE("20 compiled QAT steps equal 20 eager ones bit for bit (observers, fake quant, STE, AdamW)") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model eager(small(mode), 9), compiled(small(mode), 9);
    auto qe = attach_qat(eager), qc = attach_qat(compiled);
    const test_util::CompiledRun r = test_util::check_compiled_steps(eager, compiled, 20, 300);
    CHECK(r.micro_captures == 1);
    CHECK(r.micro_replays == 19);
    // An input and a weight observer per site (the gate's once per token in "sequential").
    CHECK(r.micro_calls.at(autograd::OpKind::observe_min_max) >= 2 * qc->sites().size());
    CHECK(r.micro_calls.at(autograd::OpKind::fake_quant) >= 2 * qc->sites().size());
    CHECK(observer_state(*qe) == observer_state(*qc));  // the observers moved on every replay
  }
}

TEST_CASE("a compiled int8 forward equals the eager int8 forward") {
  Model m(small("parallel"), 4);
  auto q = attach_qat(m);
  autograd::backward(m.loss(random_tokens(2, 24, 64, 1)));  // observe once
  q->to_int8(m);
  auto fn = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    State s = m.initial_state(in[0].size(0));
    return std::vector<Tensor>{m.forward(in[0], s)};
  };
  CompiledFn f = autograd::compile(fn);
  for (uint64_t seed : {2, 3, 4}) {
    const Tensor tokens = random_tokens(2, 21, 64, seed);
    CHECK(bit_equal(f({tokens})[0], fn({tokens})[0]));
  }
  CHECK(f.captures() == 1);
  size_t int8_calls = 0;
  for (const auto& c : f.last_graph()->calls()) int8_calls += c.kind == autograd::OpKind::linear_int8;
  CHECK(int8_calls == 2 * 9 + 1);  // every block linear and the head
}

TEST_CASE("QAT with checkpointing: \"block\" bit for bit, \"chunk\" within float rounding, same observers") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const ModelConfig cfg = small(mode);
    struct Result {
      std::vector<float> losses;
      std::vector<Tensor> grads;
      std::vector<std::vector<float>> observers;
    };
    auto run = [&](Checkpointing::Mode ck) {
      Model m(cfg, 7);
      m.set_checkpointing({ck, 8});
      auto q = attach_qat(m);
      Result r;
      for (uint64_t s : {11, 12, 13}) {  // three micro-batches accumulate; the second moves the averages,
        q->observers_enabled = s != 13;    // the third runs with them frozen
        Tensor loss = m.loss(random_tokens(2, 30, 64, s));
        autograd::backward(loss);
        r.losses.push_back(loss.item());
      }
      for (const auto& [name, p] : m.parameters()) r.grads.push_back(p.grad());
      r.observers = observer_state(*q);
      return r;
    };
    const Result plain = run(Checkpointing::Mode::none), block = run(Checkpointing::Mode::block);
    CHECK(plain.losses == block.losses);
    CHECK(plain.observers == block.observers);
    for (size_t i = 0; i < plain.grads.size(); ++i) CHECK(bit_equal(plain.grads[i], block.grads[i]));
    const Result chunk = run(Checkpointing::Mode::chunk);
    CHECK(plain.observers == chunk.observers);
    for (size_t k = 0; k < plain.losses.size(); ++k)
      CHECK(chunk.losses[k] == doctest::Approx(plain.losses[k]).epsilon(1e-6));
    double worst = 0;  // relative to each gradient's largest element
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      const double d = test_util::max_abs_diff(plain.grads[i], chunk.grads[i]);
      double scale = 0;
      for (float v : plain.grads[i].to_vector()) scale = std::max(scale, std::fabs(double(v)));
      worst = std::max(worst, d / (scale + 1e-30));
      CHECK(d <= 1e-5 * scale + 1e-7);
    }
    MESSAGE("chunk vs plain QAT gradients: worst relative difference ", worst);
  }
}

TEST_CASE("QAT with chunk checkpointing: peak memory with moving and with frozen observers") {
  enum class Qat { off, moving, frozen };
  auto peak = [](Checkpointing::Mode mode, Qat qat) {
    Model m(ModelConfig::from_json(json{{"vocab_size", 32}, {"dim", 32}, {"layers", 2}, {"heads", 2},
                                        {"memory_slots", 8}, {"chunk_size", 32}}),
            1);
    m.set_checkpointing({mode, 0});
    const Tensor tokens = random_tokens(1, 2048, 32, 9);
    if (qat != Qat::off) {
      auto q = attach_qat(m, false);
      if (qat == Qat::frozen) {
        autograd::backward(m.loss(tokens));  // observed once, then frozen
        q->observers_enabled = false;
      }
    }
    alloc::reset_peak();
    const size_t base = alloc::stats().current_bytes;
    autograd::backward(m.loss(tokens));
    return static_cast<double>(alloc::stats().peak_bytes - base);
  };
  const double none = peak(Checkpointing::Mode::none, Qat::moving), moving = peak(Checkpointing::Mode::chunk, Qat::moving);
  const double frozen = peak(Checkpointing::Mode::chunk, Qat::frozen), off = peak(Checkpointing::Mode::chunk, Qat::off);
  MESSAGE("peak MiB at T 2048: QAT without checkpointing ", none / 1048576, "; chunk: QAT observing ", moving / 1048576,
          ", QAT frozen ", frozen / 1048576, ", no QAT ", off / 1048576);
  // The observation pass is a no-grad forward over the whole call: well below
  // no checkpointing; frozen observers skip it (chunk's own peak).
  CHECK(moving < 0.3 * none);
  CHECK(frozen < 1.5 * off);
}

TEST_CASE("trainer: compiled QAT equals eager QAT (attach at start_step, frozen observers), with block and chunk checkpointing") {
  TempDir d;
  Trainer eager(qat_config(12), {.run_dir = d / "eager"});
  const std::vector<double> ref = run_losses(eager);
  Trainer compiled(qat_config(12, {{"compile", true}}), {.run_dir = d / "compiled"});
  const std::vector<double> got = run_losses(compiled);
  CHECK(got == ref);
  CHECK(read_file(d / "eager/model.safetensors") == read_file(d / "compiled/model.safetensors"));
  CHECK(read_file(d / "eager/model.int8.safetensors") == read_file(d / "compiled/model.int8.safetensors"));
  // Compiled with block checkpointing: the recomputations are recorded, observers restored before them.
  Trainer block(qat_config(12, {{"compile", true}, {"checkpointing", "block"}}), {.run_dir = d / "block"});
  CHECK(run_losses(block) == ref);
  CHECK(read_file(d / "eager/model.safetensors") == read_file(d / "block/model.safetensors"));
  // Chunk checkpointing, compiled and eager: the recording pass and the segments' replays are captured.
  const json chunk = {{"checkpointing", "chunk"}, {"checkpoint_tokens", 16}};
  Trainer chunk_eager(qat_config(12, chunk), {.run_dir = d / "chunk_eager"});
  json chunk_compiled = chunk;
  chunk_compiled["compile"] = true;
  Trainer chunk_replayed(qat_config(12, chunk_compiled), {.run_dir = d / "chunk_compiled"});
  CHECK(run_losses(chunk_eager) == run_losses(chunk_replayed));
  CHECK(read_file(d / "chunk_eager/model.safetensors") == read_file(d / "chunk_compiled/model.safetensors"));
}

TEST_CASE("QAT under bf16 amp: close to f32 QAT, finite, exact resume, compiled = eager") {
  TempDir d;
  // Some linears fake-quantized (f32 GEMMs on the masters), the others and the head in bf16.
  const json some = {{"layers", {"qkvz", "decay.fc1", "ffn.fc1"}}, {"head", false}};
  Trainer f32(qat_config(12, json::object(), some), {.run_dir = d / "f32"});
  const std::vector<double> ref = run_losses(f32);
  const TrainConfig amp = qat_config(12, {{"amp", "bf16"}}, some);
  Trainer a(amp, {.run_dir = d / "amp"});
  const std::vector<double> la = run_losses(a);
  REQUIRE(la.size() == ref.size());
  double worst = 0;
  for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::fabs(la[i] - ref[i]) / ref[i]);
  MESSAGE("amp vs f32 QAT: last loss ", la.back(), " vs ", ref.back(), ", worst relative difference ", worst);
  for (size_t i = 0; i < la.size(); ++i) {
    CAPTURE(i);
    CHECK(std::isfinite(la[i]));
    CHECK(std::fabs(la[i] - ref[i]) / ref[i] < 1e-2);
  }
  CHECK(la.back() < la.front());
  CHECK(la != ref);  // the other GEMMs really ran in bf16
  {
    Trainer b(amp, {.run_dir = d / "resumed"});
    CHECK(run_losses(b, 7).size() == 7);  // stopped in the QAT phase, observers still moving
  }
  Trainer resumed(amp, {.run_dir = d / "resumed", .resume = ResumeMode::require});
  const int64_t from = resumed.resumed_from();
  CHECK(from >= 6);
  const std::vector<double> rest = run_losses(resumed);
  REQUIRE(rest.size() == static_cast<size_t>(12 - from));
  for (size_t i = 0; i < rest.size(); ++i) CHECK(rest[i] == la[i + static_cast<size_t>(from)]);
  CHECK(read_file(d / "amp/model.safetensors") == read_file(d / "resumed/model.safetensors"));
  // Compiled (the loss scale a replay input): the same losses and weights.
  Trainer compiled(qat_config(12, {{"amp", "bf16"}, {"compile", true}}, some), {.run_dir = d / "compiled"});
  CHECK(run_losses(compiled) == la);
  CHECK(read_file(d / "amp/model.safetensors") == read_file(d / "compiled/model.safetensors"));
}
