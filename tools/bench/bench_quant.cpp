// int8 inference against f32 on the "bench" model config (weights calibrated
// on random tokens: speed does not depend on their values): token-by-token
// generation (f32 through its packed 1-row weights, the fastest f32 path),
// inference over 8192 tokens, the checkpoint size, and the int8 linear's two
// zero-point modes and f32 on the model's GEMM shapes.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "bench/model_fixtures.h"
#include "models/model.h"
#include "models/quant.h"
#include "models/safetensors.h"
#include "ops/kernels/linear.h"
#include "ops/kernels/linear_int8.h"
#include "tensor/random.h"

using namespace mmrec;
using bench::bench_config;
using bench::random_tokens;

namespace {
// A model of the bench config with every block linear calibrated and in int8.
void quantize(Model& m, kernels::ZeroPointMode zp = kernels::ZeroPointMode::folded) {
  auto q = std::make_shared<ModelQuant>(m, QuantConfig{});
  q->mode = QuantMode::observe;
  m.set_quantization(q);
  State s = m.initial_state(1);
  m.forward(random_tokens(1, 512, 256, 7), s);
  q->to_int8(m, zp);
}
}  // namespace

BENCH_SUITE(quant) {
  const char* names[] = {"int8_generate_token_by_token", "int8_inference_1x8192", "int8_checkpoint_bytes",
                         "int8_linear"};
  if (std::none_of(std::begin(names), std::end(names), [&](const char* n) { return ctx.wants_prefix(n); })) return;
  const int reps = std::min(ctx.reps(), 3);
  autograd::NoGradGuard ng;
  const Model f32(bench_config(ctx), 1);
  Model int8(bench_config(ctx), 1);
  quantize(int8);

  if (ctx.wants("int8_generate_token_by_token")) {
    const int64_t n = 256;
    std::vector<Tensor> one;
    for (int64_t i = 0; i < n; ++i) one.push_back(random_tokens(1, 1, 256, 100 + i));
    auto prompt = [&](const Model& m) {
      State s = m.initial_state(1);
      m.forward(random_tokens(1, 64, 256, 4), s);  // a prompt, then one token per call
      return s;
    };
    auto generate = [&](const Model& m, const State& s, const InferencePack* pk) {
      State g = s;
      for (const Tensor& tok : one) m.forward(tok, g, pk);
    };
    const InferencePack pack = f32.pack_for_inference(1);
    // The zero point folded into the bias (the default) and passed to oneDNN
    // at run time, and f32, in turn.
    Model runtime_zp(bench_config(ctx), 1);
    quantize(runtime_zp, kernels::ZeroPointMode::runtime);
    State s8 = prompt(int8), s8r = prompt(runtime_zp), s32 = prompt(f32);
    const std::vector<double> t = bench::median_seconds_interleaved(
        {[&] { generate(int8, s8, nullptr); }, [&] { generate(runtime_zp, s8r, nullptr); },
         [&] { generate(f32, s32, &pack); }},
        reps);
    const double t8 = t[0], t8r = t[1], t32 = t[2];
    ctx.report("int8_generate_token_by_token", {{"tokens_s", n / t8}, {"ms_per_token", t8 * 1e3 / n},
                                                {"runtime_zp_tokens_s", n / t8r}, {"ref_tokens_s", n / t32},
                                                {"ratio", t32 / t8}, {"speedup_folded_vs_runtime_zp", t8r / t8}});
  }

  if (ctx.wants("int8_inference_1x8192")) {
    const Tensor seq = random_tokens(1, 8192, 256, 3);
    auto run = [&](const Model& m) {
      return bench::median_seconds(
          [&] {
            State s = m.initial_state(1);
            m.forward(seq, s);
          },
          reps);
    };
    const double t8 = run(int8), t32 = run(f32);
    ctx.report("int8_inference_1x8192", {{"tokens_s", 8192 / t8}, {"ms", t8 * 1e3}, {"ref_tokens_s", 8192 / t32},
                                         {"ratio", t32 / t8}});
  }

  if (ctx.wants("int8_checkpoint_bytes")) {
    const std::string base = "/tmp/mmrec_bench_quant_" + std::to_string(getpid());
    save_model(base + ".f32.safetensors", f32);
    save_int8_model(base + ".int8.safetensors", int8);
    const double b32 = static_cast<double>(std::filesystem::file_size(base + ".f32.safetensors"));
    const double b8 = static_cast<double>(std::filesystem::file_size(base + ".int8.safetensors"));
    std::filesystem::remove(base + ".f32.safetensors");
    std::filesystem::remove(base + ".int8.safetensors");
    ctx.report("int8_checkpoint_bytes", {{"bytes", b8}, {"ref_bytes", b32}, {"ratio", b8 / b32}});
  }

  if (ctx.wants_prefix("int8_linear")) {
    // (M, K, N): the fused QKVZ and FFN fc1 over 8192 rows, and one token.
    Generator g(5);
    for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{8192, 512, 2048}, {8192, 2048, 512},
                           {1, 512, 2048}, {1, 2048, 512}}) {
      const std::string shape = std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N);
      const std::string name = "int8_linear_" + shape;
      if (!ctx.wants(name)) continue;
      Tensor x = rand_uniform({M, K}, g, -1, 3), w = rand_uniform({N, K}, g, -0.1f, 0.1f), b = rand_uniform({N}, g, -1, 1);
      Tensor wq = Tensor::empty({N, K}, DType::i8), ws = Tensor::full({N}, 0.1 / 127);
      for (int64_t i = 0; i < wq.numel(); ++i) wq.data<int8_t>()[i] = static_cast<int8_t>(g.next_u64() % 255 - 127);
      Tensor y = Tensor::empty({M, N});
      kernels::Int8Linear folded(wq, ws, b, 4.0f / 255, 64, ops::Activation::none, kernels::ZeroPointMode::folded);
      kernels::Int8Linear runtime(wq, ws, b, 4.0f / 255, 64, ops::Activation::none, kernels::ZeroPointMode::runtime);
      const int r = M == 1 ? 200 : ctx.reps();
      // Interleaved: the two zero-point modes (and f32) see the same neighbours.
      const std::vector<double> t = bench::median_seconds_interleaved(
          {[&] { folded.forward(x, y); }, [&] { runtime.forward(x, y); },
           [&] { kernels::linear_fwd(x, w, b, ops::Activation::none, y); }},
          r);
      const double tf = t[0], tr = t[1], t32 = t[2];
      const double ops = 2.0 * M * K * N;
      ctx.report(name, {{"gops", ops / tf / 1e9}, {"us", tf * 1e6}, {"runtime_zp_gops", ops / tr / 1e9},
                        {"speedup_folded_vs_runtime_zp", tr / tf}, {"f32_gflops", ops / t32 / 1e9},
                        {"ratio_vs_f32", t32 / tf}});
    }
  }
}
