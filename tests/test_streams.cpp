// Concurrent generation in one process, as mmrec-serve runs it: streams of
// two models on four threads at once. The models, their packed weights and
// the cached oneDNN primitives are shared; each stream has its own state and
// each thread its own oneDNN scratchpad. Every stream's tokens must equal
// what it gives alone.
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/model.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/kernels/linear.h"
#include "tensor/random.h"
#include "serve/completion.h"

using namespace mmrec;

namespace {

// Large enough that the GEMMs are oneDNN's real kernels (K, N >= 64), with a
// prompt that crosses memory chunks.
ModelConfig stream_config() {
  return ModelConfig::from_json(nlohmann::json{{"dim", 64}, {"layers", 2}, {"heads", 4}, {"ffn_dim", 256},
                                               {"mdi_dim", 16}, {"memory_slots", 4}, {"chunk_size", 8}});
}

std::vector<int64_t> run(const Model& m, const InferencePack& pack, const serve::CompletionRequest& req) {
  serve::Completion c(m, pack, req);
  std::vector<int64_t> out;
  while (c.next()) out.push_back(c.last_token());
  return out;
}

serve::CompletionRequest request(int i, double temperature) {
  serve::CompletionRequest r;
  const std::string prompt = "stream " + std::to_string(i) + std::string(static_cast<size_t>(3 * i), 'a' + i);
  for (unsigned char c : prompt) r.prompt.push_back(c);
  r.max_tokens = 40;
  r.temperature = temperature;
  r.seed = static_cast<uint64_t>(100 + i);
  return r;
}

}  // namespace

TEST_CASE("4 concurrent streams of 2 models: each stream's output equals its single-stream output") {
  const Model a(stream_config(), 11), b(stream_config(), 12);  // the same shapes: the same cached primitives
  const InferencePack pa = a.pack_for_inference(1), pb = b.pack_for_inference(1);
  const int streams = 4, rounds = 3;
  for (double temperature : {0.0, 0.9}) {
    CAPTURE(temperature);
    std::vector<std::vector<int64_t>> alone(streams);
    for (int i = 0; i < streams; ++i) alone[i] = run(i % 2 ? b : a, i % 2 ? pb : pa, request(i, temperature));
    CHECK(alone[0] != alone[1]);  // the models differ, so a mix-up would show
    CHECK(alone[0] != alone[2]);  // so do the requests
    std::vector<std::vector<std::vector<int64_t>>> together(streams);
    std::vector<std::thread> threads;
    for (int i = 0; i < streams; ++i)
      threads.emplace_back([&, i] {
        for (int r = 0; r < rounds; ++r) together[i].push_back(run(i % 2 ? b : a, i % 2 ? pb : pa, request(i, temperature)));
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < streams; ++i)
      for (int r = 0; r < rounds; ++r) CHECK_MESSAGE(together[i][r] == alone[i], "stream ", i, " round ", r);
  }
}

TEST_CASE("one packed linear and one cached gemm run on 4 threads at once, each with its own inputs") {
  // Shapes of the bench config's 1-row and prompt calls: oneDNN's brgemm
  // kernels use a scratchpad on every call here.
  const int64_t K = 512, N = 2048;
  Generator g(5);
  const Tensor w = randn({N, K}, g, 0.0f, 0.05f), bias = randn({N}, g);
  const kernels::PackedLinear packed(w, bias, ops::Activation::gelu, 1);
  const int threads = 4, calls = 200;
  std::vector<Tensor> x, x_rows, want, want_rows;
  for (int t = 0; t < threads; ++t) {
    x.push_back(randn({1, K}, g));
    x_rows.push_back(randn({7, K}, g));
    want.push_back(Tensor::empty({1, N}));
    want_rows.push_back(Tensor::empty({7, N}));
    packed.forward(x[t], want[t]);
    kernels::gemm(x_rows[t], w.transpose(0, 1), want_rows[t]);
  }
  std::vector<int> wrong(threads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      Tensor y = Tensor::empty({1, N}), y_rows = Tensor::empty({7, N});
      for (int i = 0; i < calls; ++i) {
        packed.forward(x[t], y);
        kernels::gemm(x_rows[t], w.transpose(0, 1), y_rows);
        wrong[t] += y.to_vector() != want[t].to_vector() || y_rows.to_vector() != want_rows[t].to_vector();
      }
    });
  for (auto& p : pool) p.join();
  for (int t = 0; t < threads; ++t) CHECK_MESSAGE(wrong[t] == 0, "thread ", t, ": ", wrong[t], " of ", calls, " calls differ");
  CHECK(kernels::thread_scratchpad_bytes() > 0);
}
