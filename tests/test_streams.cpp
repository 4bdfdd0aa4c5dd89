// Concurrent generation in one process, as mmrec-serve runs it: streams of
// two models on four threads at once, and streams batched into one model
// call per token (serve::Batcher). The models, their packed weights and the
// cached oneDNN primitives are shared; each stream has its own state and each
// thread its own oneDNN scratchpad. Every stream's tokens must equal what it
// gives alone, on f32 and on bf16 weights.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "models/model.h"
#include "ops/kernels/dnnl_context.h"
#include "ops/kernels/linear.h"
#include "tensor/random.h"
#include "serve/batcher.h"
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
  // Shapes of the bench config's 1-row and prompt calls.
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
  // On AVX-512 oneDNN runs these shapes on brgemm kernels, which use a
  // scratchpad on every call; AVX2's gemm kernels use none.
  if (kernels::dnnl_has_avx512()) CHECK(kernels::thread_scratchpad_bytes() > 0);
}

TEST_CASE("batched streams: cohorts of one prompt length share each call; every stream equals its run alone") {
  const Model a(stream_config(), 11), b(stream_config(), 12);
  const InferencePack pa = a.pack_for_inference(1), pb = b.pack_for_inference(1);
  // A long window: the requests below surely meet in their cohorts.
  serve::Batcher ba(a, pa, {.max_batch = 4, .window = std::chrono::milliseconds(300)});
  serve::Batcher bb(b, pb, {.max_batch = 4, .window = std::chrono::milliseconds(300)});
  // Six requests of one prompt length (13 bytes, across a memory chunk) and
  // two of another, greedy and sampled, of different lengths: streams drop
  // out of the batch one by one.
  std::vector<serve::CompletionRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    serve::CompletionRequest r;
    const std::string prompt = i < 6 ? "same length " + std::to_string(i) : "other " + std::to_string(i);
    for (unsigned char c : prompt) r.prompt.push_back(c);
    r.max_tokens = 10 + 7 * i;
    r.temperature = i % 2 ? 0.9 : 0.0;
    r.seed = static_cast<uint64_t>(40 + i);
    reqs.push_back(r);
  }
  auto model_of = [&](int i) -> const Model& { return i % 3 == 2 ? b : a; };
  auto pack_of = [&](int i) -> const InferencePack& { return i % 3 == 2 ? pb : pa; };
  std::vector<std::vector<int64_t>> alone(8), batched(8);
  for (int i = 0; i < 8; ++i) alone[i] = run(model_of(i), pack_of(i), reqs[i]);
  std::vector<std::unique_ptr<serve::Batcher::Stream>> streams;
  for (int i = 0; i < 8; ++i) streams.push_back((i % 3 == 2 ? bb : ba).start(reqs[i]));
  // One consumer leaves after 3 tokens; the others read to the end, in turn.
  std::vector<int64_t> early;
  for (int k = 0; k < 3 && streams[4]->next(); ++k) early.push_back(streams[4]->last_token());
  streams[4].reset();
  for (int i = 0; i < 8; ++i) {
    if (!streams[i]) continue;
    while (streams[i]->next()) batched[i].push_back(streams[i]->last_token());
    CHECK(streams[i]->produced() == reqs[i].max_tokens);
  }
  for (int i = 0; i < 8; ++i)
    if (i != 4) CHECK_MESSAGE(batched[i] == alone[i], "stream ", i);
  CHECK(early == std::vector<int64_t>(alone[4].begin(), alone[4].begin() + 3));
  // Model a had streams 0 1 3 4 (one cohort of 4: 13-byte prompts) and 6 7
  // (7-byte prompts, another cohort); model b had 2 and 5.
  CHECK(ba.largest_cohort() == 4);
  CHECK(ba.cohorts() == 2);
  CHECK(bb.largest_cohort() == 2);
  CHECK(bb.cohorts() == 1);
}

TEST_CASE("batched streams on bf16 weights equal their runs alone") {
  Model m(stream_config(), 21);
  m.use_bf16(/*keep_f32=*/false);
  const InferencePack pack = m.pack_for_inference(1);
  serve::Batcher batcher(m, pack, {.max_batch = 3, .window = std::chrono::milliseconds(300)});
  std::vector<serve::CompletionRequest> reqs(3);
  for (int i = 0; i < 3; ++i) {
    for (unsigned char c : "bf16 stream " + std::to_string(i)) reqs[i].prompt.push_back(c);
    reqs[i].max_tokens = 12 + 5 * i;
    reqs[i].temperature = i == 1 ? 0.7 : 0.0;
  }
  std::vector<std::unique_ptr<serve::Batcher::Stream>> streams;
  for (const auto& r : reqs) streams.push_back(batcher.start(r));
  for (int i = 0; i < 3; ++i) {
    std::vector<int64_t> got;
    while (streams[i]->next()) got.push_back(streams[i]->last_token());
    CHECK_MESSAGE(got == run(m, pack, reqs[i]), "stream ", i);
  }
  CHECK(batcher.largest_cohort() == 3);
}

TEST_CASE("batched streams through a captured GenerationGraph (compile) equal their runs alone") {
  const Model m(stream_config(), 31);
  const InferencePack pack = m.pack_for_inference(1);
  serve::Batcher batcher(m, pack, {.max_batch = 4, .window = std::chrono::milliseconds(300), .compile = true});
  // One cohort of 4 (13-byte prompts); they leave the batch one by one (the
  // graph is captured again for each smaller batch) through filling and
  // dropping memory slots (4 slots of 8 tokens).
  std::vector<serve::CompletionRequest> reqs(4);
  for (int i = 0; i < 4; ++i) {
    for (unsigned char c : "compiled #" + std::to_string(1000 + i)) reqs[i].prompt.push_back(c);
    reqs[i].max_tokens = 20 + 15 * i;
    reqs[i].temperature = i % 2 ? 0.8 : 0.0;
    reqs[i].seed = static_cast<uint64_t>(70 + i);
  }
  std::vector<std::unique_ptr<serve::Batcher::Stream>> streams;
  for (const auto& r : reqs) streams.push_back(batcher.start(r));
  for (int i = 0; i < 4; ++i) {
    std::vector<int64_t> got;
    while (streams[i]->next()) got.push_back(streams[i]->last_token());
    CHECK_MESSAGE(got == run(m, pack, reqs[i]), "stream ", i);
  }
  CHECK(batcher.largest_cohort() == 4);
}

TEST_CASE("select_rows keeps the chosen rows of every state tensor and drops the cached levels") {
  const Model m(stream_config(), 3);
  State s = m.initial_state(3);
  {
    autograd::NoGradGuard no_grad;
    Generator g(1);
    std::vector<int32_t> ids(3 * 20);
    for (auto& t : ids) t = static_cast<int32_t>(g.next_u64() % 256);
    m.forward(Tensor::from_vector(ids, {3, 20}), s);
  }
  const State k = serve::select_rows(s, {2, 0});
  CHECK(k.batch == 2);
  REQUIRE(k.layers.size() == s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const LayerState &a = s.layers[l], &b = k.layers[l];
    CHECK(b.chunk_tokens == a.chunk_tokens);
    CHECK(!b.levels_kt.defined());
    for (auto t : {&LayerState::h, &LayerState::mem_keys, &LayerState::mem_values, &LayerState::chunk_k_sum,
                   &LayerState::chunk_v_sum}) {
      CHECK((b.*t).slice(0, 0, 1).to_vector() == (a.*t).slice(0, 2, 3).to_vector());
      CHECK((b.*t).slice(0, 1, 2).to_vector() == (a.*t).slice(0, 0, 1).to_vector());
    }
  }
}
