// The MM-Rec model end to end on the "bench" config (dim 512, 4 layers, 8
// heads, batch 8 x 1024 tokens): training step (forward + loss + backward)
// tokens/s and peak allocator bytes, inference on one 8192-token sequence,
// token-by-token generation, the sequential core, and a per-op profile of a
// training step (models/profile.h: forward scopes + each backward node).
#include <algorithm>
#include <cstdio>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "bench/bench_model.h"
#include "models/model.h"
#include "models/profile.h"
#include "tensor/allocator.h"
#include "tensor/random.h"

using namespace mmrec;
using bench::bench_config;
using bench::random_tokens;

namespace {

void train_step(const Model& m, const Tensor& tokens) {
  Tensor loss = m.loss(tokens);
  autograd::backward(loss);
  for (const auto& [name, p] : m.parameters()) Tensor(p).zero_grad();
}

// Multiply-adds of the parameter GEMMs per token (forward = 2x this in flops).
double gemm_macs_per_token(const ModelConfig& c) {
  const double D = c.dim, I = c.mdi_dim, F = c.ffn_dim;
  return c.layers * (4 * D * D + D * D + 4 * D * I + D * D + 2 * D * F) + c.vocab_size * D;
}

}  // namespace

BENCH_SUITE(model) {
  const char* names[] = {"model_train_step_8x1024", "model_inference_1x8192", "model_generate_token_by_token",
                         "model_train_step_sequential_8x128", "model_profile"};
  if (std::none_of(std::begin(names), std::end(names), [&](const char* n) { return ctx.wants_prefix(n); })) return;
  const int reps = std::min(ctx.reps(), 3);
  const int64_t B = 8, T = 1024;
  const Model m(bench_config(), 1);
  const Tensor tokens = random_tokens(B, T, 256, 2);
  const double macs = gemm_macs_per_token(m.config());

  if (ctx.wants("model_train_step_8x1024")) {
    train_step(m, tokens);  // warm-up: primitive caches, allocator pools
    alloc::reset_peak();
    const size_t base = alloc::stats().current_bytes;
    const double t = bench::median_seconds([&] { train_step(m, tokens); }, reps, 0);
    const double tps = B * T / t;
    ctx.report("model_train_step_8x1024", {{"tokens_s", tps}, {"ms", t * 1e3},
                                           {"gemm_gflops", 6 * macs * tps / 1e9},
                                           {"peak_mib", (alloc::stats().peak_bytes - base) / 1048576.0},
                                           {"peak_bytes", alloc::stats().peak_bytes - base},
                                           {"params", m.num_parameters()}});
  }

  if (ctx.wants("model_inference_1x8192")) {
    autograd::NoGradGuard ng;
    const Tensor seq = random_tokens(1, 8192, 256, 3);
    alloc::reset_peak();
    const size_t base = alloc::stats().current_bytes;
    const double t = bench::median_seconds(
        [&] {
          State s = m.initial_state(1);
          m.forward(seq, s);
        },
        reps);
    ctx.report("model_inference_1x8192", {{"tokens_s", 8192 / t}, {"ms", t * 1e3},
                                          {"gemm_gflops", 2 * macs * 8192 / t / 1e9},
                                          {"peak_mib", (alloc::stats().peak_bytes - base) / 1048576.0}});
  }

  if (ctx.wants("model_generate_token_by_token")) {
    // As mmrec-generate: weights packed for 1-row calls, against the plain path.
    autograd::NoGradGuard ng;
    const int64_t n = 256;
    State s = m.initial_state(1);
    m.forward(random_tokens(1, 64, 256, 4), s);  // a prompt, then one token per call
    std::vector<Tensor> one;
    for (int64_t i = 0; i < n; ++i) one.push_back(random_tokens(1, 1, 256, 100 + i));
    const InferencePack pack = m.pack_for_inference(1);
    auto run = [&](const InferencePack* pk) {
      return bench::median_seconds(
          [&] {
            State g = s;
            for (const Tensor& tok : one) m.forward(tok, g, pk);
          },
          reps);
    };
    const double t = run(&pack), t_plain = run(nullptr);
    ctx.report("model_generate_token_by_token", {{"tokens_s", n / t},
                                                 {"ms_per_token", t * 1e3 / n},
                                                 {"plain_tokens_s", n / t_plain},
                                                 {"speedup_packed", t_plain / t}});
  }

  if (ctx.wants("model_train_step_sequential_8x128")) {
    const Model ms(bench_config("sequential"), 1);
    const Tensor short_tokens = random_tokens(B, 128, 256, 5);
    const double t = bench::median_seconds([&] { train_step(ms, short_tokens); }, reps);
    ctx.report("model_train_step_sequential_8x128", {{"tokens_s", B * 128 / t}, {"ms", t * 1e3}});
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
