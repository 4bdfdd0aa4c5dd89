// The training stack: schedules, AdamW, clipping, accumulation, config
// errors, tokenizers, the data pipeline, checkpoint files, metrics, and the
// trainer on a small model (exact resume, accumulation, its errors).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/fileio.h"
#include "train/json_reader.h"
#include "train/kernels/optim.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/tokenizer.h"
#include "train/train_config.h"
#include "test_util.h"

using namespace mmrec;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
using test_util::TempDir;

ScheduleConfig sched(const std::string& kind, int64_t warmup, double min_lr) {
  ScheduleConfig s;
  s.kind = kind;
  s.warmup_steps = warmup;
  s.min_lr = min_lr;
  return s;
}

PlateauConfig plateau(const std::string& mode, double factor, int64_t patience, double threshold,
                      const std::string& tmode, int64_t cooldown, double min_lr, double eps = 1e-8) {
  PlateauConfig p;
  p.enabled = true;
  p.mode = mode;
  p.factor = factor;
  p.patience = patience;
  p.threshold = threshold;
  p.threshold_mode = tmode;
  p.cooldown = cooldown;
  p.min_lr = min_lr;
  p.eps = eps;
  return p;
}

std::vector<double> run_plateau(ReduceLROnPlateau& p, const std::vector<double>& metrics) {
  std::vector<double> lrs;
  for (double m : metrics) {
    p.step(m);
    lrs.push_back(p.lr());
  }
  return lrs;
}

void check_seq(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("epoch " << i + 1);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
  }
}

std::string config_error(const json& j) {
  try {
    TrainConfig::from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

json minimal() { return json{{"data", {{"source", "synthetic"}}}}; }
json with(const std::string& section, const std::string& key, const json& v) {
  json j = minimal();
  j[section][key] = v;
  return j;
}
}  // namespace

// ---------------------------------------------------------------- schedules

TEST_CASE("warmup then cosine decay to min_lr, by hand") {
  // base 1, min 0.1, 10 steps, warmup 2: warmup 0.5, 1; cosine over the 8
  // remaining steps with progress k/7.
  LrSchedule s(sched("cosine", 2, 0.1), 1.0, 10);
  CHECK(s.lr(0) == doctest::Approx(0.5));
  CHECK(s.lr(1) == doctest::Approx(1.0));
  for (int k = 0; k < 8; ++k)
    CHECK(s.lr(2 + k) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * k / 7.0))));
  CHECK(s.lr(2) == doctest::Approx(1.0));
  CHECK(s.lr(9) == doctest::Approx(0.1));
  CHECK(s.lr(50) == doctest::Approx(0.1));  // past the end: stays at min_lr
  CHECK(s.lr(5) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(M_PI * 3 / 7.0))));
}

TEST_CASE("linear and constant schedules") {
  LrSchedule lin(sched("linear", 0, 0.0), 2.0, 5);  // 2, 1.5, 1, 0.5, 0
  const double want[] = {2.0, 1.5, 1.0, 0.5, 0.0};
  for (int i = 0; i < 5; ++i) CHECK(lin.lr(i) == doctest::Approx(want[i]));
  LrSchedule c(sched("constant", 4, 0.0), 0.4, 100);
  CHECK(c.lr(0) == doctest::Approx(0.1));
  CHECK(c.lr(3) == doctest::Approx(0.4));
  CHECK(c.lr(99) == doctest::Approx(0.4));
  LrSchedule one(sched("cosine", 0, 0.0), 0.3, 1);  // a single step runs at the peak
  CHECK(one.lr(0) == doctest::Approx(0.3));
}

TEST_CASE("ReduceLROnPlateau: min mode, rel threshold, patience and cooldown (PyTorch's sequence)") {
  // patience 2, cooldown 1, factor 0.5, threshold 0.1 rel (better means < 0.9 best).
  ReduceLROnPlateau p(plateau("min", 0.5, 2, 0.1, "rel", 1, 0.0), 1.0);
  // epoch: metric -> best / bad epochs / lr
  //  1: 10   better (inf)          best 10, bad 0
  //  2: 9.5  not < 9: bad 1
  //  3: 9.2  bad 2
  //  4: 9.1  bad 3 > 2 -> lr 0.5, cooldown 1, bad 0
  //  5: 9.0  not < 9: bad 1; in cooldown: cooldown 0, bad 0
  //  6: 9.0  bad 1
  //  7: 8.0  better (8 < 9): best 8, bad 0
  //  8: 8.0  bad 1
  //  9: 8.0  bad 2
  // 10: 8.0  bad 3 -> lr 0.25, cooldown 1
  // 11: 8.0  cooldown: bad 0
  // 12..14: bad 1, 2, 3 -> lr 0.125 at 14
  const std::vector<double> m = {10, 9.5, 9.2, 9.1, 9.0, 9.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0};
  check_seq(run_plateau(p, m), {1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125});
  CHECK(p.best() == 8.0);
  CHECK(p.last_epoch() == 14);
  CHECK(p.scale() == doctest::Approx(0.125));
}

TEST_CASE("ReduceLROnPlateau: abs threshold, max mode, min_lr and eps") {
  {  // min, abs 0.5: better means < best - 0.5; patience 0 reduces on every bad epoch
    ReduceLROnPlateau p(plateau("min", 0.1, 0, 0.5, "abs", 0, 0.0), 1.0);
    check_seq(run_plateau(p, {5.0, 4.75, 4.25, 4.0, 3.75}), {1, 0.1, 0.1, 0.01, 0.001});
    // 5 best; 4.75 !< 4.5 bad -> 0.1; 4.25 < 4.5 best; 4 !< 3.75 -> 0.01; 3.75 !< 3.75 -> 0.001
  }
  {  // max, rel 0.1: better means > 1.1 best
    ReduceLROnPlateau p(plateau("max", 0.5, 1, 0.1, "rel", 0, 0.0), 2.0);
    check_seq(run_plateau(p, {1.0, 1.05, 1.2, 1.3, 1.25, 1.4}), {2, 2, 2, 2, 1, 1});
    // 1 best; 1.05 bad1; 1.2 > 1.1 best; 1.3 !> 1.32 bad1; 1.25 bad2 -> 1; 1.4 !> 1.32? 1.4 > 1.32 best
    CHECK(p.best() == 1.4);
  }
  {  // max, abs 0.2
    ReduceLROnPlateau p(plateau("max", 0.5, 0, 0.2, "abs", 0, 0.0), 1.0);
    check_seq(run_plateau(p, {1.0, 1.1, 1.3}), {1, 0.5, 0.5});
  }
  {  // min_lr floors the rate; eps skips reductions smaller than it
    ReduceLROnPlateau p(plateau("min", 0.1, 0, 0.0, "rel", 0, 0.05), 1.0);
    check_seq(run_plateau(p, {1, 1, 1, 1}), {1, 0.1, 0.05, 0.05});
    ReduceLROnPlateau q(plateau("min", 0.5, 0, 0.0, "rel", 0, 0.0, 0.3), 1.0);
    // 1 -> 0.5 (diff 0.5 > 0.3), then 0.25 would differ by 0.25 <= 0.3: kept
    check_seq(run_plateau(q, {1, 1, 1, 1}), {1, 0.5, 0.5, 0.5});
  }
}

TEST_CASE("ReduceLROnPlateau state round-trips exactly (inf best included)") {
  const PlateauConfig c = plateau("min", 0.5, 1, 1e-4, "rel", 2, 0.0);
  ReduceLROnPlateau a(c, 1.0);
  ReduceLROnPlateau fresh(c, 1.0);
  fresh.load_state(a.state());  // best is +inf before the first step
  CHECK(std::isinf(fresh.best()));
  const std::vector<double> m = {3.0, 2.9, 2.95, 2.96, 2.97, 2.8, 2.81, 2.82, 2.83, 2.84};
  for (size_t i = 0; i < 5; ++i) a.step(m[i]);
  ReduceLROnPlateau b(c, 1.0);
  b.load_state(json::parse(a.state().dump()));
  for (size_t i = 5; i < m.size(); ++i) {
    a.step(m[i]);
    b.step(m[i]);
    CHECK(a.lr() == b.lr());
    CHECK(a.num_bad_epochs() == b.num_bad_epochs());
    CHECK(a.cooldown_counter() == b.cooldown_counter());
  }
  for (double v : {0.0, -0.0, 1.0 / 3.0, 1e-300, std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity()}) {
    const double r = from_double_bits(double_bits(v), "v");
    CHECK(std::memcmp(&r, &v, 8) == 0);
  }
  CHECK(std::isnan(from_double_bits(double_bits(std::nan("")), "v")));
  CHECK_THROWS_WITH_AS(from_double_bits(json("0x12"), "plateau.best"), "plateau.best: malformed bit pattern \"0x12\"",
                       Error);
}

// ---------------------------------------------------------------- AdamW, clipping, accumulation

TEST_CASE("one AdamW step against hand-computed values") {
  // p 1, g 0.5, lr 0.1, wd 0.1, betas (0.9, 0.999), eps 1e-8, t = 1:
  //   p *= 1 - 0.01 -> 0.99; m = 0.05; v = 0.00025; m̂ = 0.5; v̂ = 0.25
  //   p -= 0.1 * 0.5 / (0.5 + 1e-8) -> 0.89 (with decay), 0.9 (without)
  Tensor w = Tensor::from_vector(std::vector<float>{1.0f, -2.0f}, {1, 2}).set_requires_grad();
  Tensor b = Tensor::from_vector(std::vector<float>{1.0f}, {1}).set_requires_grad();
  w.set_grad(Tensor::from_vector(std::vector<float>{0.5f, -0.25f}, {1, 2}));
  b.set_grad(Tensor::from_vector(std::vector<float>{0.5f}, {1}));
  OptimConfig oc;
  std::vector<NamedTensor> params = {{"lin.weight", w}, {"lin.bias", b}};
  CHECK(decay_mask(params, oc) == std::vector<bool>{true, false});
  AdamW opt(params, decay_mask(params, oc), 0.9, 0.999, 1e-8, 0.1);
  opt.step(0.1);
  CHECK(w.at({0, 0}) == doctest::Approx(0.89).epsilon(1e-6));
  // second element: -2 * 0.99 - 0.1 * (-0.25) / (0.25 + 1e-8) -> -1.98 + 0.1 = -1.88
  CHECK(w.at({0, 1}) == doctest::Approx(-1.88).epsilon(1e-6));
  CHECK(b.at({0}) == doctest::Approx(0.9).epsilon(1e-6));
  auto st = opt.state_tensors();
  CHECK(st[0].first == "exp_avg.lin.weight");
  CHECK(st[0].second.at({0, 0}) == doctest::Approx(0.05));
  CHECK(st[2].first == "exp_avg_sq.lin.weight");
  CHECK(st[2].second.at({0, 0}) == doctest::Approx(0.00025));
  // A second step with the same gradient: m = 0.095, v = 0.00049975,
  // m̂ = 0.095 / 0.19 = 0.5, v̂ = 0.00049975 / 0.001999 = 0.25 -> again lr * 1.
  opt.step(0.1);
  CHECK(b.at({0}) == doctest::Approx(0.8).epsilon(1e-6));
  CHECK(w.at({0, 0}) == doctest::Approx(0.89 * 0.99 - 0.1).epsilon(1e-6));
  CHECK(opt.steps() == 2);
}

TEST_CASE("AdamW kernel matches the double reference on odd sizes, for any thread count") {
  Generator g(5);
  for (int64_t n : {0, 1, 3, 17, 1000, 100003}) {
    Tensor p = randn({n}, g), gr = randn({n}, g), m = randn({n}, g, 0, 0.1f), v = rand_uniform({n}, g, 0, 0.01f);
    Tensor p2 = p.clone(), m2 = m.clone(), v2 = v.clone();
    const auto s = kernels::adamw_scalars(3e-3, 0.9, 0.95, 1e-8, 0.1, 7);
    kernels::adamw_f32(p.data<float>(), gr.data<float>(), m.data<float>(), v.data<float>(), n, s);
    kernels::ref::adamw_f32(p2.data<float>(), gr.data<float>(), m2.data<float>(), v2.data<float>(), n, 3e-3, 0.9, 0.95,
                            1e-8, 0.1, 7);
    double err = 0;
    for (int64_t i = 0; i < n; ++i) {
      err = std::max(err, std::fabs(p.flat_at(i) - p2.flat_at(i)) / (1e-3 + std::fabs(p2.flat_at(i))));
      err = std::max(err, std::fabs(m.flat_at(i) - m2.flat_at(i)) / (1e-3 + std::fabs(m2.flat_at(i))));
      err = std::max(err, std::fabs(v.flat_at(i) - v2.flat_at(i)) / (1e-6 + std::fabs(v2.flat_at(i))));
    }
    CHECK(err < 1e-5);
    const double ss = kernels::sum_squares_f32(gr.data<float>(), n);
    CHECK(ss == doctest::Approx(kernels::ref::sum_squares_f32(gr.data<float>(), n)).epsilon(1e-5));
  }
}

TEST_CASE("global-norm clipping") {
  Tensor a = Tensor::zeros({2}).set_requires_grad(), b = Tensor::zeros({1}).set_requires_grad();
  Tensor c = Tensor::zeros({3}).set_requires_grad();  // no gradient: skipped
  a.set_grad(Tensor::from_vector(std::vector<float>{3.0f, 0.0f}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<float>{4.0f}, {1}));
  std::vector<NamedTensor> ps = {{"a", a}, {"b", b}, {"c", c}};
  CHECK(grad_norm(ps) == doctest::Approx(5.0));
  CHECK(clip_grad_norm(ps, 10.0) == doctest::Approx(5.0));  // under the limit: unchanged
  CHECK(a.grad().at({0}) == 3.0);
  CHECK(clip_grad_norm(ps, 1.0) == doctest::Approx(5.0));
  CHECK(a.grad().at({0}) == doctest::Approx(3.0 / (5.0 + 1e-6)));
  CHECK(b.grad().at({0}) == doctest::Approx(4.0 / (5.0 + 1e-6)));
  CHECK(grad_norm(ps) == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(clip_grad_norm(ps, 0.0) == doctest::Approx(1.0).epsilon(1e-6));  // 0: measure only
}

TEST_CASE("gradient accumulation equals the large batch") {
  Generator g(11);
  const Tensor X = randn({8, 5}, g), Y = randn({8, 3}, g);
  auto mse = [](const Tensor& x, const Tensor& y, const Tensor& w) {
    Tensor d = ops::sub(ops::matmul(x, w), y);
    return ops::mean(ops::mul(d, d));
  };
  Tensor w0 = randn({5, 3}, g);
  Tensor wa = w0.clone().set_requires_grad(), wb = w0.clone().set_requires_grad();
  autograd::backward(mse(X, Y, wa));  // one batch of 8
  for (int k = 0; k < 4; ++k) {       // 4 micro-batches of 2, each scaled by 1/4
    Tensor l = mse(X.slice(0, 2 * k, 2 * k + 2).contiguous(), Y.slice(0, 2 * k, 2 * k + 2).contiguous(), wb);
    autograd::backward(ops::scale(l, 0.25f));
  }
  for (int64_t i = 0; i < 15; ++i) CHECK(wb.grad().flat_at(i) == doctest::Approx(wa.grad().flat_at(i)).epsilon(1e-5));
  std::vector<NamedTensor> pa = {{"w", wa}}, pb = {{"w", wb}};
  AdamW oa(pa, {true}, 0.9, 0.95, 1e-8, 0.1), ob(pb, {true}, 0.9, 0.95, 1e-8, 0.1);
  oa.step(1e-2);
  ob.step(1e-2);
  for (int64_t i = 0; i < 15; ++i) CHECK(wb.flat_at(i) == doctest::Approx(wa.flat_at(i)).epsilon(1e-5));
}

TEST_CASE("AdamW state save and load continue identically") {
  Generator g(3);
  Tensor w1 = randn({4, 4}, g).set_requires_grad();
  Tensor w2 = w1.clone().set_requires_grad();
  std::vector<NamedTensor> p1 = {{"w", w1}}, p2 = {{"w", w2}};
  AdamW a(p1, {true}, 0.9, 0.95, 1e-8, 0.1), b(p2, {true}, 0.9, 0.95, 1e-8, 0.1);
  Generator gg(4);
  for (int s = 0; s < 3; ++s) {
    w1.set_grad(randn({4, 4}, gg));
    a.step(1e-2);
  }
  w2.copy_from(w1);
  b.load_state(a.state_tensors(), a.steps());
  for (int s = 0; s < 3; ++s) {
    const Tensor gr = randn({4, 4}, gg);
    w1.set_grad(gr);
    w2.set_grad(gr.clone());
    a.step(1e-2);
    b.step(1e-2);
  }
  for (int64_t i = 0; i < 16; ++i) CHECK(w1.flat_at(i) == w2.flat_at(i));  // bit-identical
  CHECK_THROWS_WITH_AS(b.load_state({}, 1), "optimizer state: missing tensor exp_avg.w", Error);
}

// ---------------------------------------------------------------- config errors

TEST_CASE("config: defaults and a full round trip") {
  const TrainConfig c = TrainConfig::from_json(minimal());
  CHECK(c.train.steps == 1000);
  CHECK(c.train.lr == 3e-4);
  CHECK(c.schedule.kind == "cosine");
  CHECK(!c.schedule.plateau.enabled);
  CHECK(c.checkpoint.resume == "never");
  json j = c.to_json();
  j["schedule"]["plateau"] = {{"patience", 3}};
  const TrainConfig d = TrainConfig::from_json(j);
  CHECK(d.schedule.plateau.enabled);
  CHECK(d.schedule.plateau.patience == 3);
  CHECK(TrainConfig::from_json(d.to_json()).to_json() == d.to_json());
  CHECK(TrainConfig::from_json(with("train", "steps", 1e3)).train.steps == 1000);  // 1e3 is an integer
  CHECK(default_run_dir("configs/tiny.json") == "runs/tiny");
}

TEST_CASE("config: every error names the key path") {
  CHECK(config_error(with("train", "lr", "x")) == "train.lr: expected a number, got \"x\"");
  CHECK(config_error(with("train", "lr", -1)) == "train.lr: must be > 0, got -1");
  CHECK(config_error(with("train", "steps", 1.5)) == "train.steps: expected an integer, got 1.5");
  CHECK(config_error(with("train", "steps", 0)) == "train.steps: must be >= 1, got 0");
  CHECK(config_error(with("train", "batch_size", "8")) == "train.batch_size: expected an integer, got \"8\"");
  CHECK(config_error(with("train", "beta2", 1.0)) == "train.beta2: must be < 1, got 1");
  CHECK(config_error(with("train", "decay_embeddings", 1)) ==
        "train.decay_embeddings: expected true or false, got 1");
  CHECK(config_error(with("train", "lrr", 1)) ==
        "train.lrr: unknown key (expected one of: amp, batch_size, beta1, beta2, checkpoint_tokens, checkpointing, "
        "compile, decay_embeddings, "
        "decay_norms_and_biases, eps, grad_accum, grad_clip, lr, seed, seq_len, steps, threads, weight_decay)");
  CHECK(config_error(with("train", "checkpointing", "layer")) ==
        "train.checkpointing: unknown value \"layer\" (expected \"none\", \"block\" or \"chunk\")");
  CHECK(config_error(with("schedule", "kind", "foo")) ==
        "schedule.kind: unknown value \"foo\" (expected \"constant\", \"cosine\" or \"linear\")");
  CHECK(config_error(with("schedule", "min_lr", 0.01)) == "schedule.min_lr: 0.01 is larger than train.lr 0.0003");
  CHECK(config_error(with("schedule", "plateau", {{"factor", 1.0}})) ==
        "schedule.plateau.factor: must be < 1, got 1");
  CHECK(config_error(with("schedule", "plateau", {{"threshold_mode", "pct"}})) ==
        "schedule.plateau.threshold_mode: unknown value \"pct\" (expected \"rel\" or \"abs\")");
  CHECK(config_error(with("schedule", "plateau", {{"monitor", "loss"}})) ==
        "schedule.plateau.monitor: unknown value \"loss\" (expected \"val_loss\" or \"train_loss\")");
  CHECK(config_error(with("schedule", "plateau", {{"mode", "up"}})) ==
        "schedule.plateau.mode: unknown value \"up\" (expected \"min\" or \"max\")");
  CHECK(config_error(with("schedule", "plateau", {{"patience", -1}})) ==
        "schedule.plateau.patience: must be >= 0, got -1");
  CHECK(config_error(with("schedule", "plateau", 3)) == "schedule.plateau: expected an object, got 3");
  CHECK(config_error(with("checkpoint", "resume", "yes")) ==
        "checkpoint.resume: unknown value \"yes\" (expected \"never\" or \"auto\")");
  CHECK(config_error(with("checkpoint", "interval", -5)) == "checkpoint.interval: must be >= 0, got -5");
  CHECK(config_error(with("log", "interval", 0)) == "log.interval: must be >= 1, got 0");
  CHECK(config_error(with("log", "progress", "bar")) ==
        "log.progress: unknown value \"bar\" (expected \"auto\", \"live\", \"lines\" or \"none\")");
  CHECK(config_error(with("data", "source", "web")) ==
        "data.source: unknown value \"web\" (expected \"files\" or \"synthetic\")");
  CHECK(config_error(with("data", "val_fraction", 0.7)) == "data.val_fraction: must be < 0.5, got 0.7");
  CHECK(config_error(with("data", "paths", json::array({"a", 3}))) == "data.paths[1]: expected a string, got 3");
  CHECK(config_error(json{{"data", {{"source", "files"}}}}) ==
        "data.paths: required when data.source is \"files\" (a file, a directory or a list)");
  CHECK(config_error(json{{"train", 5}}) == "train: expected an object, got 5");
  CHECK(config_error(json{{"model", "big"}}) == "model: expected an object, got \"big\"");
  CHECK(config_error(json{{"trian", json::object()}}) ==
        "trian: unknown key (expected one of: checkpoint, data, log, model, qat, schedule, train)");
  CHECK(config_error(json::array()) == "config: expected an object, got []");
}

TEST_CASE("config files: syntax errors name the file") {
  TempDir d;
  std::ofstream(d / "bad.json") << "{\"train\": {\"lr\": }";
  CHECK_THROWS_WITH_AS(TrainConfig::load(d / "bad.json"),
                       doctest::Contains(((d / "bad.json") + ": invalid JSON: ").c_str()), Error);
  // A number out of double's range is refused like any syntax error (found by fuzzing).
  std::ofstream(d / "overflow.json") << R"({"data": {"paths": [262222.22200086E2933377076028301]}})";
  CHECK_THROWS_WITH_AS(TrainConfig::load(d / "overflow.json"),
                       doctest::Contains(((d / "overflow.json") + ": invalid JSON: ").c_str()), Error);
  std::ofstream(d / "typo.json") << R"({"data": {"source": "synthetic"}, "log": {"eval_batches": "all"}})";
  CHECK_THROWS_WITH_AS(TrainConfig::load(d / "typo.json"),
                       ((d / "typo.json") + ": log.eval_batches: expected an integer, got \"all\"").c_str(), Error);
  CHECK_THROWS_WITH_AS(TrainConfig::load(d / "none.json"), ((d / "none.json") + ": cannot open the config file").c_str(),
                       Error);
}

// ---------------------------------------------------------------- tokenizers

TEST_CASE("pretokenize splits into chunks that concatenate back") {
  std::vector<std::string> chunks;
  pretokenize("Hello world,  it's 2024!\n\n  ok", [&](std::string_view c) { chunks.emplace_back(c); });
  const std::vector<std::string> want = {"Hello", " world", ",", " ", " it", "'", "s", " 2024", "!", "\n\n ", " ok"};
  CHECK(chunks == want);
  std::string joined;
  pretokenize(std::string(200, 'a'), [&](std::string_view c) {
    CHECK(c.size() <= 64);
    joined += c;
  });
  CHECK(joined == std::string(200, 'a'));
}

TEST_CASE("byte-level BPE: training, exact round trip on arbitrary bytes, save and load") {
  const std::string corpus = synthetic_corpus(20000, 3);
  BpeTrainer t;
  t.add_text(corpus);
  const Tokenizer tok = t.train(400);
  CHECK(tok.vocab_size() == 400);
  CHECK(!tok.is_byte_level());
  // Deterministic: a second training gives the same merges.
  CHECK(t.train(400).merges() == tok.merges());
  const auto ids = tok.encode(corpus);
  CHECK(tok.decode(ids) == corpus);
  CHECK(ids.size() * 2 < corpus.size());  // it compresses the text it was trained on
  Generator g(9);
  for (int trial = 0; trial < 20; ++trial) {  // random bytes, invalid UTF-8 included
    std::string s(static_cast<size_t>(g.next_u64() % 300), '\0');
    for (auto& c : s) c = static_cast<char>(g.next_u64() & 0xff);
    if (trial % 3 == 0) s += " the cat sees the moon.\n\n   " + std::string(100, ' ') + "\xff\xfe";
    CHECK(tok.decode(tok.encode(s)) == s);
  }
  CHECK(tok.encode("").empty());
  TempDir d;
  tok.save(d / "tok.json");
  const Tokenizer back = Tokenizer::load(d / "tok.json");
  CHECK(back.merges() == tok.merges());
  CHECK(back.fingerprint() == tok.fingerprint());
  CHECK(back.encode(corpus) == ids);
  const Tokenizer bytes = Tokenizer::byte_level();
  CHECK(bytes.vocab_size() == 256);
  CHECK(bytes.encode("ab\xff") == std::vector<int32_t>{97, 98, 255});
  CHECK(bytes.decode({104, 105}) == "hi");
  CHECK_THROWS_WITH_AS(bytes.decode({256}), "tokenizer: id 256 is outside the vocabulary [0, 256)", Error);
}

TEST_CASE("tokenizer files: malformed ones are errors naming the file") {
  TempDir d;
  std::ofstream(d / "a.json") << R"({"type": "other"})";
  CHECK_THROWS_WITH_AS(Tokenizer::load(d / "a.json"),
                       ((d / "a.json") + ": not a tokenizer written by mmrec-tokenize (\"type\" is not \"mmrec-bpe\")")
                           .c_str(),
                       Error);
  std::ofstream(d / "b.json") << R"({"type": "mmrec-bpe", "pretokenizer": "mmrec-v1", "merges": [[1, 2], [3, 300]]})";
  CHECK_THROWS_WITH_AS(Tokenizer::load(d / "b.json"),
                       ((d / "b.json") + ": tokenizer: merge 1 (3, 300) refers to an id not defined before it").c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(BpeTrainer().train(100), "mmrec-tokenize: vocabulary size must be >= 256, got 100", Error);
}

// ---------------------------------------------------------------- data

TEST_CASE("synthetic corpus is deterministic") {
  const std::string a = synthetic_corpus(5000, 1), b = synthetic_corpus(5000, 1), c = synthetic_corpus(5000, 2);
  CHECK(a.size() == 5000);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a.find(" plus ") != std::string::npos);
}

TEST_CASE("token cache, split, seeded windows and validation batches") {
  TempDir d;
  DataConfig dc;
  dc.source = "synthetic";
  dc.synthetic_bytes = 20000;
  dc.val_fraction = 0.1;
  std::vector<std::string> notes;
  const Tokenizer tok = Tokenizer::byte_level();
  TokenDataset ds = TokenDataset::prepare(dc, tok, d.path.string(), [&](const std::string& s) { notes.push_back(s); });
  CHECK(ds.size() == 20001);  // + the newline that ends the document
  CHECK(ds.val_tokens() == 2000);
  CHECK(ds.train_tokens() == 18001);
  const std::string text = synthetic_corpus(20000, 1);
  for (int64_t i : {0, 1, 777, 19999}) CHECK(ds.token(i) == static_cast<unsigned char>(text[static_cast<size_t>(i)]));
  // A second prepare maps the same cache file without tokenizing.
  notes.clear();
  TokenDataset again = TokenDataset::prepare(dc, tok, d.path.string(), [&](const std::string& s) { notes.push_back(s); });
  CHECK(notes.empty());
  CHECK(again.path() == ds.path());

  Generator g1(5), g2(5);
  const Tensor b1 = ds.train_batch(g1, 4, 33), b2 = ds.train_batch(g2, 4, 33);
  CHECK(b1.shape() == Shape{4, 33});
  CHECK(b1.dtype() == DType::i32);
  CHECK(g1.offset() == 4);  // one counter per window: the checkpointed data position
  for (int64_t i = 0; i < b1.numel(); ++i) CHECK(b1.flat_at(i) == b2.flat_at(i));
  Generator g3(5);
  g3.set_state(5, 2);  // resuming at offset 2 gives windows 2 and 3 again
  const Tensor b3 = ds.train_batch(g3, 2, 33);
  for (int64_t i = 0; i < 66; ++i) CHECK(b3.flat_at(i) == b1.flat_at(66 + i));

  CHECK(ds.val_windows(33) == 2000 / 33);
  const Tensor v0 = ds.val_batch(0, 4, 33);
  CHECK(v0.at({1, 0}) == ds.token(ds.train_tokens() + 33));
  CHECK(ds.val_batch(14, 4, 33).size(0) == 4);  // 60 windows in batches of 4
  CHECK(ds.val_batch(8, 7, 33).size(0) == 4);   // the last batch of 7 is short
  CHECK_THROWS_WITH_AS(ds.val_batch(15, 4, 33), "data: validation batch 15 is past the 60 held-out windows", Error);
  CHECK_THROWS_WITH_AS(ds.check_fits(4096, "train.seq_len 4095"),
                       "data: the corpus has 20001 tokens (18001 for training, 2000 held out): too few for windows of "
                       "4096 tokens (train.seq_len 4095)",
                       Error);
}

TEST_CASE("text and JSONL files, directories, and their errors") {
  TempDir d;
  fs::create_directories(d.path / "corpus");
  std::ofstream(d / "corpus/b.txt") << "second file";
  std::ofstream(d / "corpus/a.jsonl") << "{\"text\": \"doc one\\n\"}\n\n{\"text\": \"doc two\", \"id\": 2}\n";
  std::ofstream(d / "corpus/.hidden") << "skipped";
  const auto files = list_data_files({d / "corpus"});
  REQUIRE(files.size() == 2);
  std::vector<std::string> docs;
  for_each_document(files, "auto", "text", [&](std::string_view s) { docs.emplace_back(s); });
  CHECK(docs == std::vector<std::string>{"doc one\n", "doc two", "second file"});
  DataConfig dc;
  dc.paths = {d / "corpus"};
  dc.val_fraction = 0.2;
  TokenDataset ds = TokenDataset::prepare(dc, Tokenizer::byte_level(), d / "cache");
  std::string all;
  for (int64_t i = 0; i < ds.size(); ++i) all += static_cast<char>(ds.token(i));
  CHECK(all == "doc one\ndoc two\nsecond file\n");

  CHECK_THROWS_WITH_AS(list_data_files({d / "nope.txt"}),
                       ("data.paths: no such file or directory: " + (d / "nope.txt")).c_str(), Error);
  std::ofstream(d / "bad.jsonl") << "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n";
  CHECK_THROWS_WITH_AS(for_each_document({d / "bad.jsonl"}, "auto", "text", [](std::string_view) {}),
                       ((d / "bad.jsonl") + ":2: no string field \"text\"").c_str(), Error);
  std::ofstream(d / "broken.jsonl") << "{\"text\": \n";
  CHECK_THROWS_WITH_AS(for_each_document({d / "broken.jsonl"}, "jsonl", "text", [](std::string_view) {}),
                       doctest::Contains(((d / "broken.jsonl") + ":1: invalid JSON").c_str()), Error);
}

// ---------------------------------------------------------------- checkpoint files

TEST_CASE("training state files round-trip exactly; corruption and truncation are errors") {
  TempDir d;
  Generator g(1);
  TrainState s;
  s.meta = {{"step", 42}, {"ema", double_bits(1.0 / 3.0)}};
  s.tensors = {{"exp_avg.w", randn({3, 5}, g)}, {"exp_avg_sq.w", rand_uniform({7}, g)}, {"empty", Tensor::zeros({0})}};
  write_train_state(d / "s.bin", s);
  const TrainState r = read_train_state(d / "s.bin");
  CHECK(r.meta == s.meta);
  REQUIRE(r.tensors.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(r.tensors[i].first == s.tensors[i].first);
    CHECK(r.tensors[i].second.shape() == s.tensors[i].second.shape());
    const size_t n = s.tensors[i].second.nbytes();
    if (n) CHECK(std::memcmp(r.tensors[i].second.raw_data(), s.tensors[i].second.raw_data(), n) == 0);
  }
  std::string bytes = read_file(d / "s.bin");
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  write_file_atomic(d / "flip.bin", flipped);
  CHECK_THROWS_WITH_AS(read_train_state(d / "flip.bin"), ((d / "flip.bin") + ": corrupt (checksum mismatch)").c_str(),
                       Error);
  write_file_atomic(d / "short.bin", bytes.substr(0, bytes.size() - 100));
  CHECK_THROWS_WITH_AS(read_train_state(d / "short.bin"),
                       ((d / "short.bin") + ": corrupt (checksum mismatch)").c_str(), Error);
  write_file_atomic(d / "junk.bin", "hello");
  CHECK_THROWS_WITH_AS(read_train_state(d / "junk.bin"),
                       ((d / "junk.bin") + ": not a training state file (bad magic)").c_str(), Error);
  CHECK_THROWS_WITH_AS(read_train_state(d / "none.bin"), ((d / "none.bin") + ": missing (incomplete checkpoint)").c_str(),
                       Error);
}

TEST_CASE("checkpoint directories: commit, list, prune; interrupted writes are ignored") {
  TempDir d;
  const std::string run = d.path.string();
  CHECK(list_checkpoints(run).empty());
  for (int64_t step : {10, 20, 30, 40}) {
    const std::string dir = commit_checkpoint(run, step, [&](const std::string& tmp) {
      write_file_atomic((fs::path(tmp) / "x.txt").string(), std::to_string(step));
    });
    if (step == 10) CHECK(fs::path(dir).filename() == "step-00000010");
  }
  // A write killed half way leaves a temporary directory behind.
  fs::create_directories(fs::path(checkpoints_root(run)) / "step-00000050.tmp-999");
  auto list = list_checkpoints(run);
  REQUIRE(list.size() == 4);
  CHECK(list.back().step == 40);
  CHECK(read_file((fs::path(list.back().dir) / "x.txt").string()) == "40");
  CHECK_THROWS_AS(commit_checkpoint(run, 60, [](const std::string&) { fail("disk full"); }), Error);
  CHECK(list_checkpoints(run).size() == 4);  // the failed one left nothing
  prune_checkpoints(run, 2);
  list = list_checkpoints(run);
  REQUIRE(list.size() == 2);
  CHECK(list[0].step == 30);
  CHECK(!fs::exists(fs::path(checkpoints_root(run)) / "step-00000050.tmp-999"));
}

// ---------------------------------------------------------------- metrics

TEST_CASE("metrics lines, resume truncation and the loss SVG") {
  TempDir d;
  {
    MetricsLog log(d / "m.jsonl", -1);
    for (int s = 1; s <= 6; ++s) log.write({{"step", s}, {"loss", 5.0 - s * 0.5}});
    log.write({{"step", 6}, {"val_loss", 2.5}, {"val_bpb", 3.6}});
    CHECK(log.train_curve().size() == 6);
    CHECK(log.val_curve().size() == 1);
  }
  {
    std::ofstream(d / "m.jsonl", std::ios::app) << "{\"step\": 7, \"lo";  // cut short by a kill
    MetricsLog log(d / "m.jsonl", 4);  // resumed from step 4: later lines dropped
    CHECK(log.train_curve().size() == 4);
    CHECK(log.val_curve().empty());
    log.write({{"step", 5}, {"loss", 9.0}});
  }
  std::ifstream in(d / "m.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    CHECK(json::parse(line).contains("step"));
  }
  CHECK(n == 5);
  const std::string svg = loss_curve_svg({{1, 4.0}, {2, 3.0}, {3, 2.5}}, {{3, 2.7}}, 10, "tiny <run>");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("<polyline") != std::string::npos);
  CHECK(svg.find("<circle") != std::string::npos);
  CHECK(svg.find("tiny &lt;run&gt;") != std::string::npos);
  CHECK(loss_curve_svg({}, {}, 0, "").find("</svg>") != std::string::npos);  // empty: still valid
  CHECK(format_duration(5) == "5s");
  CHECK(format_duration(125) == "2:05");
  CHECK(format_duration(3725) == "1:02:05");
  CHECK(format_count(12345) == "12.3k");
  ProgressInfo p;
  p.step = 7, p.total = 100, p.loss = 2.5, p.lr = 1e-3, p.tokens_per_s = 5000, p.eta_s = 60;
  CHECK(format_progress(p) == "step   7/100 | loss 2.5000 | lr 1.00e-03 | gnorm 0 | 5.0k tok/s | 0s < 1:00");
}

TEST_CASE("atomic writes and the content hash") {
  TempDir d;
  write_file_atomic(d / "sub/dir/f.txt", "abc");
  CHECK(read_file(d / "sub/dir/f.txt") == "abc");
  write_file_atomic(d / "sub/dir/f.txt", "replaced");
  CHECK(read_file(d / "sub/dir/f.txt") == "replaced");
  int files = 0;
  for (auto& e : fs::directory_iterator(d.path / "sub/dir")) (void)e, ++files;
  CHECK(files == 1);  // no temporary left behind
  const std::string a(1000, 'x');
  std::string b = a;
  b[500] = 'y';
  CHECK(hash64(a.data(), a.size()) != hash64(b.data(), b.size()));
  CHECK(hash_file(d / "sub/dir/f.txt") == hash64("replaced", 8));
  CHECK(hex64(255) == "00000000000000ff");
}

// ---------------------------------------------------------------- the trainer on the model

#include "models/model.h"
#include "train/trainer.h"
#include "train_util.h"

namespace {
// A small model and corpus: a step takes a few milliseconds.
TrainConfig small_config(int64_t steps) {
  json j = {{"model",
             {{"dim", 32}, {"layers", 1}, {"heads", 2}, {"ffn_dim", 64}, {"mdi_dim", 8}, {"memory_slots", 4},
              {"hds_levels", 2}, {"chunk_size", 16}}},
            {"data", {{"source", "synthetic"}, {"synthetic_bytes", 32768}}},
            {"train", {{"steps", steps}, {"batch_size", 4}, {"seq_len", 32}, {"lr", 3e-3}}},
            {"schedule", {{"warmup_steps", 3}, {"plateau", {{"patience", 0}, {"threshold", 0.3}}}}},
            {"checkpoint", {{"interval", 8}, {"keep", 2}}},
            {"log", {{"interval", 1}, {"eval_interval", 4}, {"eval_batches", 1}, {"progress", "none"}}}};
  return TrainConfig::from_json(j);
}

using test_util::run_losses;

std::string find_config(const std::string& name) {
  for (const char* base : {".", "..", "../..", "../../.."}) {
    const fs::path p = fs::path(base) / "configs" / name;
    if (fs::exists(p)) return p.string();
  }
  const fs::path p = fs::path(__FILE__).parent_path() / ".." / "configs" / name;
  return p.string();
}
}  // namespace

TEST_CASE("trainer: stopped and resumed in a new trainer, losses are bit-identical") {
  TempDir d;
  const TrainConfig c = small_config(20);
  Trainer a(c, {.run_dir = d / "a"});
  const std::vector<double> ref = run_losses(a);
  REQUIRE(ref.size() == 20);
  {
    Trainer b(c, {.run_dir = d / "b"});
    const std::vector<double> first = run_losses(b, 7);  // stops after step 7 (not a checkpoint step)
    REQUIRE(first.size() == 7);
    for (size_t i = 0; i < 7; ++i) CHECK(first[i] == ref[i]);
  }
  CHECK(list_checkpoints(d / "b").back().step == 7);
  Trainer resumed(c, {.run_dir = d / "b", .resume = ResumeMode::require});
  CHECK(resumed.resumed_from() == 7);
  const std::vector<double> rest = run_losses(resumed);
  REQUIRE(rest.size() == 13);
  for (size_t i = 0; i < rest.size(); ++i) {
    INFO("step " << i + 8);
    CHECK(rest[i] == ref[i + 7]);  // exact, not approximate
  }
  CHECK(read_file(d / "a/model.safetensors") == read_file(d / "b/model.safetensors"));
  CHECK(list_checkpoints(d / "b").size() == 2);  // keep 2
}

TEST_CASE("trainer with train.compile: the eager run's losses and weights, also across a resume") {
  TempDir d;
  TrainConfig eager = small_config(12);
  eager.train.batch_size = 2;
  eager.train.grad_accum = 2;
  eager.train.grad_clip = 0.5;
  eager.checkpoint.interval = 5;
  TrainConfig compiled = eager;
  compiled.train.compile = true;
  Trainer a(eager, {.run_dir = d / "a"});
  const std::vector<double> ref = run_losses(a);
  REQUIRE(ref.size() == 12);
  {
    Trainer b(compiled, {.run_dir = d / "b"});
    const std::vector<double> first = run_losses(b, 5);
    REQUIRE(first.size() == 5);
    for (size_t i = 0; i < first.size(); ++i) CHECK(first[i] == ref[i]);
  }
  Trainer resumed(compiled, {.run_dir = d / "b", .resume = ResumeMode::require});
  const std::vector<double> rest = run_losses(resumed);
  REQUIRE(rest.size() == 7);
  for (size_t i = 0; i < rest.size(); ++i) {
    INFO("step " << i + 6);
    CHECK(rest[i] == ref[i + 5]);
  }
  CHECK(read_file(d / "a/model.safetensors") == read_file(d / "b/model.safetensors"));
}

TEST_CASE("trainer: gradient accumulation equals the large batch") {
  TempDir d;
  TrainConfig big = small_config(1), acc = small_config(1);
  big.train.batch_size = 4;
  acc.train.batch_size = 2;
  acc.train.grad_accum = 2;  // the same 4 windows: the data RNG draws one counter per window
  acc.train.grad_clip = big.train.grad_clip = 0;
  Trainer a(big, {.run_dir = d / "a"}), b(acc, {.run_dir = d / "b"});
  const StepResult ra = a.train_step(), rb = b.train_step();
  CHECK(rb.loss == doctest::Approx(ra.loss).epsilon(1e-5));
  CHECK(rb.grad_norm == doctest::Approx(ra.grad_norm).epsilon(1e-4));
  CHECK(rb.tokens == ra.tokens);
  const auto& pa = a.model().parameters();
  const auto& pb = b.model().parameters();
  double err = 0;
  for (size_t i = 0; i < pa.size(); ++i)
    for (int64_t k = 0; k < pa[i].second.numel(); ++k)
      err = std::max(err, std::fabs(pa[i].second.flat_at(k) - pb[i].second.flat_at(k)));
  CHECK(err < 1e-5);
}

TEST_CASE("trainer: checkpointing keeps the losses; metrics hold each step's peak memory") {
  TempDir d;
  TrainConfig plain = small_config(3), block = small_config(3), chunk = small_config(3);
  block.train.checkpointing = "block";
  chunk.train.checkpointing = "chunk";
  chunk.train.checkpoint_tokens = 16;
  Trainer a(plain, {.run_dir = d / "a"}), b(block, {.run_dir = d / "b"}), c(chunk, {.run_dir = d / "c"});
  const std::vector<double> la = run_losses(a), lb = run_losses(b), lc = run_losses(c);
  for (size_t i = 0; i < la.size(); ++i) {
    CHECK(lb[i] == la[i]);  // bit for bit
    CHECK(lc[i] == doctest::Approx(la[i]).epsilon(1e-5));
  }
  std::ifstream f(d / "a/metrics.jsonl");
  std::string line;
  int steps = 0;
  while (std::getline(f, line)) {
    const json j = json::parse(line);
    if (!j.contains("loss")) continue;
    ++steps;
    CHECK(j.at("peak_bytes").get<size_t>() > 0);
    CHECK(j.at("rss_bytes").get<size_t>() > j.at("peak_bytes").get<size_t>());
  }
  CHECK(steps == 3);
  chunk.train.checkpoint_tokens = 24;
  CHECK_THROWS_WITH(Trainer(chunk, {.run_dir = d / "e"}),
                    "train.checkpoint_tokens: 24 is not a multiple of model.chunk_size 16");
}

TEST_CASE("trainer: weight decay spares embeddings, norms and biases") {
  TempDir d;
  Trainer t(small_config(1), {.run_dir = d.path.string()});
  const auto& ps = t.model().parameters();
  const auto mask = decay_mask(ps, t.config().train);
  for (size_t i = 0; i < ps.size(); ++i) {
    const std::string& n = ps[i].first;
    const bool want = n.find("embed") == std::string::npos && n.find("norm") == std::string::npos &&
                      n.find(".bias") == std::string::npos;
    INFO(n);
    CHECK(mask[i] == want);
  }
  OptimConfig all;
  all.decay_embeddings = all.decay_norms_and_biases = true;
  for (bool m : decay_mask(ps, all)) CHECK(m);
}

TEST_CASE("trainer: run-directory, checkpoint and data errors are clear") {
  TempDir d;
  const TrainConfig c = small_config(4);
  CHECK_THROWS_WITH_AS(Trainer(c, {.run_dir = d / "r", .resume = ResumeMode::require}),
                       ("--resume: no checkpoint in " + (d / "r") + "/checkpoints").c_str(), Error);
  { Trainer t(c, {.run_dir = d / "r"}); t.run(); }
  CHECK_THROWS_WITH_AS(Trainer(c, {.run_dir = d / "r"}),
                       ((d / "r") + " already holds checkpoints (newest: step 4): pass --resume to continue that run, "
                                    "or --fresh to start over")
                           .c_str(),
                       Error);
  TrainConfig other = c;
  other.model["dim"] = 16;
  CHECK_THROWS_WITH_AS(Trainer(other, {.run_dir = d / "r", .resume = ResumeMode::require}),
                       doctest::Contains("does not match the config: model.dim is 32 in the checkpoint and 16 in the "
                                         "config"),
                       Error);
  TrainConfig longer = c;  // more steps is allowed: the run continues
  longer.train.steps = 6;
  Trainer t(longer, {.run_dir = d / "r", .resume = ResumeMode::require});
  CHECK(t.step() == 4);
  CHECK(t.run().end_step == 6);
  Trainer fresh(c, {.run_dir = d / "r", .resume = ResumeMode::fresh});
  CHECK(fresh.step() == 0);
  CHECK(list_checkpoints(d / "r").empty());

  TrainConfig bad = c;
  bad.model["heads"] = 3;
  CHECK_THROWS_WITH_AS(Trainer(bad, {.run_dir = d / "x"}), doctest::Contains("model.heads"), Error);
  TrainConfig seq = c;
  seq.train.seq_len = 4000;
  CHECK_THROWS_WITH_AS(Trainer(seq, {.run_dir = d / "x"}),
                       doctest::Contains("too few for windows of 4001 tokens (train.seq_len 4000"), Error);
  BpeTrainer bt;
  bt.add_text(synthetic_corpus(8192, 1));
  bt.train(300).save(d / "tok.json");
  TrainConfig bpe = c;
  bpe.data.tokenizer = d / "tok.json";
  CHECK_THROWS_WITH_AS(Trainer(bpe, {.run_dir = d / "x"}),
                       "model.vocab_size: 256 is smaller than the vocabulary of data.tokenizer (300)", Error);
  bpe.model["vocab_size"] = 300;
  Trainer tb(bpe, {.run_dir = d / "bpe"});
  const EvalResult e = tb.evaluate();
  CHECK(e.bpb < e.loss / std::log(2.0));  // BPE tokens cover more than a byte each
}

TEST_CASE("the tiny config needs no download and its loss falls") {
  const std::string path = find_config("tiny.json");
  REQUIRE_MESSAGE(fs::exists(path), "configs/tiny.json not found from ", fs::current_path().string());
  TrainConfig c = TrainConfig::load(path);
  CHECK(c.data.source == "synthetic");
  c.train.steps = 120;  // a shortened run: the full one is the README's main job
  c.log.eval_interval = 0;
  TempDir d;
  Trainer t(c, {.run_dir = d.path.string()});
  const EvalResult before = t.evaluate();
  const RunSummary s = t.run();
  CHECK(s.end_step == 120);
  MESSAGE("tiny: val loss ", before.loss, " -> ", s.final_eval.loss, " in 120 steps, ", s.tokens_per_s, " tokens/s");
  CHECK(before.loss > 5.0);                       // about ln 256 at initialisation
  CHECK(s.final_eval.loss < 0.7 * before.loss);   // learned something
  CHECK(fs::exists(d / "loss.svg"));
  CHECK(fs::exists(d / "model.safetensors"));
}

TEST_CASE("a job of one process: collectives keep the values, errors become JobErrors, gradients stay") {
  Distributed job;
  CHECK(job.rank() == 0);
  CHECK(job.size() == 1);
  CHECK(job.is_root());
  double v[2] = {1.5, -2};
  job.sum(v, 2);
  job.max(v, 2);
  job.broadcast(v, 2);
  CHECK(v[0] == 1.5);
  CHECK(v[1] == -2);
  CHECK(job.any(true));
  CHECK(!job.any(false));
  std::string s = "kept";
  job.broadcast(s);
  CHECK(s == "kept");
  CHECK_NOTHROW(job.together([] {}));
  CHECK_THROWS_WITH_AS(job.together([] { fail("data: broken"); }), "data: broken", JobError);

  Tensor w = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}).set_requires_grad();
  GradReducer red(job, {{"w", w}}, 1 << 20);
  red.begin();
  autograd::backward(ops::sum(ops::mul(w, w)));
  const ReduceStats st = red.finish();
  CHECK(w.grad().to_vector() == std::vector<float>{2, 4, 6});
  CHECK(st.bytes == 0);
}

TEST_CASE("train config: the qat section (defaults, errors naming the key)") {
  nlohmann::json j = {{"data", {{"source", "synthetic"}}}};
  CHECK_FALSE(TrainConfig::from_json(j).qat.enabled);
  j["qat"] = nlohmann::json::object();
  TrainConfig c = TrainConfig::from_json(j);
  CHECK(c.qat.enabled);
  CHECK(c.qat.start_step == 0);
  CHECK(c.qat.freeze_observers_step == -1);
  CHECK(c.qat.layers.size() == 9);
  CHECK_FALSE(c.qat.head);
  CHECK(c.qat.averaging_constant == 0.01);
  CHECK(TrainConfig::from_json(c.to_json()).to_json() == c.to_json());
  j["qat"] = {{"layers", {"qkvz", "ffn"}}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("qat.layers: unknown layer \"ffn\""), Error);
  j["qat"] = {{"averaging_constant", 0}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("qat.averaging_constant"), Error);
  j["qat"] = {{"start", 3}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("qat.start: unknown key"), Error);
}
