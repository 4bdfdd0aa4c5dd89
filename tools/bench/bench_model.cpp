// The MM-Rec model end to end on the "bench" config (dim 512, 4 layers, 8
// heads, batch 8 x 1024 tokens): training step (forward + loss + backward;
// f32, and bf16 mixed precision against it) tokens/s, peak allocator bytes
// and parameter+gradient+optimizer bytes, inference on one 8192-token sequence,
// the sequential core, compiled steps against eager, and a per-op profile of a training step (models/profile.h: forward scopes + each backward node).
// Generation's rows are in bench_generate.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <cstdio>

#include "autograd/compile.h"
#include "models/generation.h"
#include "autograd/tape.h"
#include "bench/bench.h"
#include "bench/model_fixtures.h"
#include "models/model.h"
#include "models/profile.h"
#include "tensor/allocator.h"
#include "tensor/random.h"
#include "train/optimizer.h"

using namespace mmrec;
using bench::bench_config;
using bench::clocked;
using bench::ms_by_kind;
using bench::random_tokens;
using bench::train_step;

namespace {

// Multiply-adds of the parameter GEMMs per token (forward = 2x this in flops).
double gemm_macs_per_token(const ModelConfig& c) {
  const double D = c.dim, I = c.mdi_dim, F = c.ffn_dim;
  return c.layers * (4 * D * D + D * D + 4 * D * I + D * D + 2 * D * F) + c.vocab_size * D;
}

// A whole optimizer step as mmrec-train runs it (forward, loss, backward,
// clipping at 1.0, AdamW), eager or through two compiled graphs (the
// micro-batch and the update); `compiled` = false runs the eager path.
struct FullStep {
  const Model& m;
  OptimConfig oc;
  AdamW opt;
  autograd::CompiledFn micro, update;
  FullStep(const Model& model)
      : m(model),
        opt(model.parameters(), decay_mask(model.parameters(), oc), oc),
        micro(autograd::compile([this](const std::vector<Tensor>& in) {
          Tensor loss = m.loss(in[0]);
          autograd::backward(loss);
          return std::vector<Tensor>{loss};
        })),
        update(autograd::compile([this](const std::vector<Tensor>&) {
          Tensor r = clip_grad_norm_tensor(m.parameters(), 1.0);
          opt.apply();
          opt.zero_grad_in_place();
          return std::vector<Tensor>{r};
        })) {}
  void eager(const Tensor& tokens) {
    autograd::backward(m.loss(tokens));
    clip_grad_norm(m.parameters(), 1.0);
    opt.step(1e-4);
    opt.zero_grad();
  }
  void compiled(const Tensor& tokens) {
    micro({tokens});
    opt.stage(1e-4);
    update({});
  }
};

// Eager and compiled full steps of one model, measured in the same run.
bool is_gemm(autograd::OpKind k) {
  return k == autograd::OpKind::linear || k == autograd::OpKind::gemm || k == autograd::OpKind::matmul;
}

// Flops of a GEMM call (2 per multiply-add): linear x [M, K] · w [N, K]ᵀ,
// gemm a [M, K] · b [K, N], matmul a [.., M, K] · b [.., K, N]; 0 for the
// rest.
double call_flop(const autograd::Call& c) {
  using K = autograd::OpKind;
  if (c.kind != K::linear && c.kind != K::gemm && c.kind != K::matmul) return 0;
  const Tensor &a = c.in[0], &b = c.in[1];
  const double n = c.kind == K::linear ? static_cast<double>(b.shape()[0]) : static_cast<double>(b.shape().back());
  return 2.0 * static_cast<double>(a.numel()) * n;
}

// The best rate (flop/s) the graph's GEMMs reach: its three largest GEMM
// calls each run alone (median of at least 5), the fastest of them.
double best_gemm_rate(const autograd::Graph& g, int reps) {
  std::vector<const autograd::Call*> big;
  for (const autograd::Call& c : g.calls())
    if (call_flop(c) > 0) big.push_back(&c);
  std::sort(big.begin(), big.end(), [](auto* x, auto* y) { return call_flop(*x) > call_flop(*y); });
  double best = 0;
  for (size_t i = 0; i < big.size() && i < 3; ++i) {
    const autograd::Call& c = *big[i];
    const double t = bench::median_seconds([&] { c.run(c.attrs.bytes, c.in.data(), c.out.data()); }, std::max(reps, 5));
    best = std::max(best, call_flop(c) / t);
  }
  return best;
}

// Eager and compiled run on two copies of the model, timed in turn (a
// neighbour on this shared machine weighs on both alike).
void compare_steps(bench::Context& ctx, const std::string& name, const Model& m, const Tensor& tokens, int reps) {
  const Model twin(m.config(), 1);
  FullStep se(m), st(twin);
  se.eager(tokens);  // warm-up: primitive caches, allocator pools
  alloc::reset_peak();
  size_t base = alloc::stats().current_bytes;
  se.eager(tokens);
  const size_t eager_peak = alloc::stats().peak_bytes - base;
  st.opt.zero_grad_in_place();
  st.compiled(tokens);  // the capture
  const autograd::Graph& g = *st.micro.last_graph();
  // The step's GEMMs alone: its oneDNN calls (cached primitives) replayed
  // without anything else; the rest of the step is what capture and fusion
  // attack. The three are timed in turn, and the time outside the GEMMs is
  // the median of the differences within a round (a neighbour's load, which
  // comes and goes over seconds, weighs on both terms of a difference alike).
  // On a busy machine the GEMMs' time still varies by more than the rest of
  // the step between a step and the bare GEMMs after it, so the steps also
  // time their own kernel calls (autograd::KernelClock): the step's time minus
  // the time its GEMMs took inside it is the same quantity measured within one
  // step. Per round: seconds outside the GEMMs, in them, and in the other
  // kernel calls (eager's own Tensor copies and fills are not kernel calls).
  struct Split {
    std::vector<double> outside;                // seconds
    std::vector<autograd::KernelClock> clocks;  // the step's kernel calls, by kind
  } split_c, split_e;
  // Seconds a clock counted in the calls of the kinds pick(kind) selects.
  const auto seconds_in = [](const autograd::KernelClock& clock, const auto& pick) {
    double t = 0;
    for (size_t k = 0; k < static_cast<size_t>(autograd::OpKind::count_); ++k)
      if (pick(static_cast<autograd::OpKind>(k))) t += clock.seconds[k];
    return t;
  };
  // The median over a split's rounds of that, in ms.
  const auto ms_in = [&](const Split& s, const auto& pick) {
    std::vector<double> v;
    for (const autograd::KernelClock& c : s.clocks) v.push_back(seconds_in(c, pick) * 1e3);
    return bench::median_of(v);
  };
  const auto not_gemm = [](autograd::OpKind k) { return !is_gemm(k); };
  const auto timed = [&](const std::function<void()>& step, Split& split) {
    const auto t0 = std::chrono::steady_clock::now();
    const autograd::KernelClock clock = clocked(step);
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    split.outside.push_back(t - seconds_in(clock, is_gemm));
    split.clocks.push_back(clock);
  };
  const std::vector<std::vector<double>> t3 = bench::seconds_interleaved(
      {[&] { timed([&] { st.compiled(tokens); }, split_c); }, [&] { timed([&] { se.eager(tokens); }, split_e); },
       [&] {
         for (const autograd::Graph* gr : {&g, st.update.last_graph()})
           for (const autograd::Call& c : gr->calls())
             if (is_gemm(c.kind)) c.run(c.attrs.bytes, c.in.data(), c.out.data());
       }},
      reps, 0);
  std::vector<double> dc, de;
  for (size_t i = 0; i < t3[0].size(); ++i) dc.push_back(t3[0][i] - t3[2][i]), de.push_back(t3[1][i] - t3[2][i]);
  const double tc = bench::median_of(t3[0]), te = bench::median_of(t3[1]), tg = bench::median_of(t3[2]);
  const double nc = bench::median_of(dc), ne = bench::median_of(de);
  const double ic = bench::median_of(split_c.outside), ie = bench::median_of(split_e.outside);
  const auto ms_of = [](const std::vector<double>& s) {
    std::vector<double> r;
    for (double x : s) r.push_back(std::round(x * 1e4) / 10);
    return r;
  };
  // The floor: the step's GEMM flops at the best rate its largest GEMMs (or
  // all of them together) reach, and nothing else; no capture or fusion of
  // the same math can go below it.
  double flop = 0;
  for (const autograd::Call& c : g.calls()) flop += call_flop(c);
  // What the non-GEMM calls move and take, each call alone (its fastest of
  // the rounds): the compiled step's, and the same step captured with the
  // passes off (autograd::PassesOff), whose calls are eager's. Both stream
  // their bytes at about the same rate (28-30 GB/s on the bench config, with
  // the triad at 42-47), so the time outside the GEMMs falls about as far as
  // the bytes do. The capture with the passes off holds a third copy of the
  // model and its own arena while it is measured.
  const auto graph_traffic = [&](FullStep& s) {
    bench::Traffic t;
    for (const autograd::Graph* gr : {s.micro.last_graph(), s.update.last_graph()}) {
      const bench::Traffic x = bench::traffic(*gr, std::max(reps, 3), not_gemm);
      t.fastest_ms += x.fastest_ms, t.mib += x.mib;
    }
    return t;
  };
  const bench::Traffic fused = graph_traffic(st);
  bench::Traffic unfused;
  {
    const Model twin2(m.config(), 1);
    FullStep su(twin2);
    su.opt.zero_grad_in_place();
    {
      autograd::PassesOff off;
      su.compiled(tokens);  // the capture, with no pass
    }
    unfused = graph_traffic(su);
  }
  const double rate = std::max(best_gemm_rate(g, reps), flop / tg), floor_s = rate > 0 ? flop / rate : 0;
  const double n = static_cast<double>(tokens.numel());
  ctx.report(name, {{"tokens_s", n / tc}, {"ms", tc * 1e3}, {"ref_ms", te * 1e3}, {"ratio", te / tc},
                    {"gemm_ms", tg * 1e3}, {"non_gemm_ms", nc * 1e3}, {"eager_non_gemm_ms", ne * 1e3},
                    {"non_gemm_ratio", nc / ne},
                    {"gemm_gflop", flop / 1e9}, {"gemm_gflops", flop / tg / 1e9}, {"best_gflops", rate / 1e9},
                    {"floor_ms", floor_s * 1e3}, {"eager_vs_floor", floor_s > 0 ? te / floor_s : 0},
                    {"eager_peak_mib", eager_peak / 1048576.0},
                    {"planned_mib", g.planned_bytes() / 1048576.0}, {"live_peak_mib", g.live_peak_bytes() / 1048576.0},
                    {"planned_vs_eager_peak", static_cast<double>(g.planned_bytes()) / static_cast<double>(eager_peak)},
                    {"calls", g.size()}, {"non_gemm_rounds_ms", ms_of(dc)}, {"eager_non_gemm_rounds_ms", ms_of(de)},
                    {"in_step_non_gemm_ms", ic * 1e3}, {"eager_in_step_non_gemm_ms", ie * 1e3},
                    {"in_step_non_gemm_ratio", ie > 0 ? ic / ie : 0},
                    {"in_step_gemm_ms", ms_in(split_c, is_gemm)}, {"eager_in_step_gemm_ms", ms_in(split_e, is_gemm)},
                    {"non_gemm_fastest_ms", fused.fastest_ms}, {"non_gemm_mib", fused.mib},
                    {"unfused_non_gemm_fastest_ms", unfused.fastest_ms}, {"unfused_non_gemm_mib", unfused.mib},
                    {"non_gemm_fastest_ratio", fused.fastest_ms / unfused.fastest_ms},
                    {"non_gemm_mib_ratio", fused.mib / unfused.mib},
                    {"non_gemm_gbs", fused.mib * 1.048576 / fused.fastest_ms},
                    {"unfused_non_gemm_gbs", unfused.mib * 1.048576 / unfused.fastest_ms},
                    {"in_step_kernels_ms", ms_in(split_c, not_gemm)},
                    {"eager_in_step_kernels_ms", ms_in(split_e, not_gemm)}});
  // Where the compiled micro-step's time goes, by op kind (each call timed
  // alone; the largest 12, share: of the sum over every kind).
  const auto kinds = ms_by_kind(g, 3);
  double sum = 0;
  for (const auto& [kind, ms] : kinds) sum += ms;
  for (size_t i = 0; i < kinds.size() && i < 12; ++i)
    ctx.report(name + " " + kinds[i].first, {{"ms", kinds[i].second}, {"share", kinds[i].second / sum}});
  // The same split inside the timed steps, compiled beside eager: per kind
  // the median over rounds of the time its calls took in a whole step (and
  // their count; eager's own Tensor copies and fills are not kernel calls).
  const auto by_kind = [&](const Split& s, size_t k) {
    return ms_in(s, [k](autograd::OpKind x) { return static_cast<size_t>(x) == k; });
  };
  std::vector<std::pair<double, size_t>> order;
  for (size_t k = 0; k < static_cast<size_t>(autograd::OpKind::count_); ++k)
    if (split_c.clocks[0].calls[k] + split_e.clocks[0].calls[k] > 0)
      order.push_back({std::max(by_kind(split_c, k), by_kind(split_e, k)), k});
  std::sort(order.rbegin(), order.rend());
  for (size_t i = 0; i < order.size() && i < 16; ++i) {
    const size_t k = order[i].second;
    ctx.report(name + " in_step " + autograd::op_kind_name(static_cast<autograd::OpKind>(k)),
               {{"ms", by_kind(split_c, k)}, {"eager_ms", by_kind(split_e, k)},
                {"calls", static_cast<double>(split_c.clocks[0].calls[k])},
                {"eager_calls", static_cast<double>(split_e.clocks[0].calls[k])}});
  }
}

// Bytes of parameters + gradients + AdamW moments (+ the bf16 copies of amp).
size_t training_state_bytes(const Model& m) {
  size_t params = 0;
  for (const auto& [name, p] : m.parameters()) params += p.nbytes();
  return 4 * params + m.bf16_copy_bytes();
}

// The training-step rows' work: train_step, or with --compile forward, loss
// and backward captured once (the gradients are made by the capture and
// written, not accumulated, by each replay: no zeroing in between).
std::function<void(const Tensor&)> training_call(const bench::Context& ctx, const Model& m) {
  if (!ctx.compiled()) return [&m](const Tensor& tokens) { train_step(m, tokens); };
  for (const auto& [name, p] : m.parameters()) Tensor(p).zero_grad();
  auto fn = std::make_shared<autograd::CompiledFn>(autograd::compile([&m](const std::vector<Tensor>& in) {
    Tensor loss = m.loss(in[0]);
    autograd::backward(loss);
    return std::vector<Tensor>{loss};
  }));
  return [fn](const Tensor& tokens) { (*fn)({tokens}); };
}

}  // namespace

BENCH_SUITE(model) {
  const char* names[] = {"model_train_step_8x1024", "model_inference_1x8192", "model_generate_token_by_token",
                         "model_train_step_sequential_8x128", "model_profile",
                         "model_compiled_step_8x1024", "model_compiled_step_sequential_8x128",
                         "model_generate_compiled"};
  if (std::none_of(std::begin(names), std::end(names), [&](const char* n) { return ctx.wants_prefix(n); })) return;
  const int reps = std::min(ctx.reps(), 3);
  const int64_t B = 8, T = 1024;
  const Model m(bench_config(ctx), 1);
  const int64_t V = m.config().vocab_size;
  const Tensor tokens = random_tokens(B, T, V, 2);
  const double macs = gemm_macs_per_token(m.config());
  // The "_bf16" rows run the same model with Model::use_bf16 (amp's copies
  // for training, bf16 weights for inference) against the f32 row's figure.
  Model amp(bench_config(ctx), 1), inf16(bench_config(ctx), 1);
  amp.use_bf16(/*keep_f32=*/true);
  inf16.use_bf16(/*keep_f32=*/false);

  if (ctx.wants("model_train_step_8x1024")) {
    auto measure = [&](const Model& mm, const char* name, double ref_tps) {
      train_step(mm, tokens);  // warm-up: primitive caches, allocator pools
      auto step = training_call(ctx, mm);
      step(tokens);  // --compile: the capture
      alloc::reset_peak();
      const size_t base = alloc::stats().current_bytes;
      const double t = bench::median_seconds([&] { step(tokens); }, reps, 0);
      const double tps = B * T / t;
      nlohmann::json fig = {{"tokens_s", tps}, {"ms", t * 1e3}, {"gemm_gflops", 6 * macs * tps / 1e9}, {"compiled", ctx.compiled()},
                            {"peak_mib", (alloc::stats().peak_bytes - base) / 1048576.0},
                            {"peak_bytes", alloc::stats().peak_bytes - base},
                            {"state_mib", training_state_bytes(mm) / 1048576.0}, {"params", mm.num_parameters()}};
      if (ref_tps > 0) fig["ref_tokens_s"] = ref_tps, fig["ratio"] = tps / ref_tps;
      ctx.report(name, fig);
      return tps;
    };
    const double f32_tps = measure(m, "model_train_step_8x1024", 0);
    if (ctx.wants("model_train_step_8x1024_bf16")) measure(amp, "model_train_step_8x1024_bf16", f32_tps);
  }

  if (ctx.wants("model_inference_1x8192")) {
    autograd::NoGradGuard ng;
    const Tensor seq = random_tokens(1, 8192, V, 3);
    auto measure = [&](const Model& mm, const char* name, double ref_tps) {
      // --compile: one call over a fixed-shape state (Model::forward_fixed), replayed.
      const State fresh = mm.initial_state(1);
      FixedState fixed = FixedState::from(mm, fresh);
      autograd::CompiledFn call = autograd::compile(
          [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{mm.forward_fixed(in[0], fixed)}; });
      auto run = [&] {
        if (!ctx.compiled()) {
          State s = fresh;
          mm.forward(seq, s);
          return;
        }
        fixed.load(fresh);
        call({seq});
      };
      run();  // warm-up (--compile: the capture)
      alloc::reset_peak();
      const size_t base = alloc::stats().current_bytes;
      const double t = bench::median_seconds(run, reps, 0);
      nlohmann::json fig = {{"tokens_s", 8192 / t}, {"ms", t * 1e3}, {"gemm_gflops", 2 * macs * 8192 / t / 1e9}, {"compiled", ctx.compiled()},
                            {"peak_mib", (alloc::stats().peak_bytes - base) / 1048576.0}};
      if (ref_tps > 0) fig["ref_tokens_s"] = ref_tps, fig["ratio"] = 8192 / t / ref_tps;
      ctx.report(name, fig);
      return 8192 / t;
    };
    const double f32_tps = measure(m, "model_inference_1x8192", 0);
    if (ctx.wants("model_inference_1x8192_bf16")) measure(inf16, "model_inference_1x8192_bf16", f32_tps);
  }

  if (ctx.wants_prefix("model_generate")) bench::generation_rows(ctx, m, inf16, reps);

  if (ctx.wants("model_train_step_sequential_8x128")) {
    const Model ms(bench_config(ctx, "sequential"), 1);
    const Tensor short_tokens = random_tokens(B, 128, V, 5);
    auto step = training_call(ctx, ms);
    const double t = bench::median_seconds([&] { step(short_tokens); }, reps);
    ctx.report("model_train_step_sequential_8x128",
               {{"tokens_s", B * 128 / t}, {"ms", t * 1e3}, {"compiled", ctx.compiled()}});
  }

  // Full optimizer steps, compiled against eager (ref_ms) in the same run;
  // planned_mib is the captured graph's temporaries arena.
  if (ctx.wants("model_compiled_step_8x1024")) {
    const Model mc(bench_config(ctx), 1);
    compare_steps(ctx, "model_compiled_step_8x1024", mc, tokens, std::min(ctx.reps(), 5));
  }
  if (ctx.wants("model_compiled_step_sequential_8x128")) {
    const Model mc(bench_config(ctx, "sequential"), 1);
    compare_steps(ctx, "model_compiled_step_sequential_8x128", mc, random_tokens(B, 128, V, 5), ctx.reps());
  }

  if (ctx.wants_prefix("model_profile")) {
    // One profiled training step after a warm-up; top-level forward scopes
    // ("fwd.x") and backward nodes ("bwd.op") add up to the step.
    train_step(m, tokens);
    prof::reset();
    prof::enable(true);
    const double t = bench::median_seconds([&] { train_step(m, tokens); }, 1, 0);
    prof::enable(false);
    double covered = 0;
    const auto entries = prof::report();
    for (const auto& e : entries)
      if (std::count(e.name.begin(), e.name.end(), '.') == 1) covered += e.seconds;
    ctx.report("model_profile_step", {{"ms", t * 1e3}, {"profiled_ms", covered * 1e3}});
    int shown = 0;
    for (const auto& e : entries) {
      if (shown++ == 24) break;
      ctx.report("model_profile " + e.name, {{"ms", e.seconds * 1e3}, {"share", e.seconds / t}, {"calls", e.calls}});
    }
  }
}
