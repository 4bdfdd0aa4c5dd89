// Token-by-token generation on the bench config (or --model): the packed
// eager path against the plain one and with bf16 weights, and the captured
// one-token step (GenerationGraph) against the packed eager path with the
// memory filling (a 64-token prompt: a few slots filled, which eager reads
// alone while the graph reads its fixed slot buffers under a mask) and full
// (a prompt of every slot's chunk and half a chunk more: every slot filled,
// the oldest dropped as generation goes on).
#include <algorithm>
#include <string>
#include <vector>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "bench/bench.h"
#include "bench/model_fixtures.h"
#include "models/generation.h"
#include "models/model.h"

using namespace mmrec;
using bench::clocked;
using bench::ms_by_kind;
using bench::random_tokens;

namespace {

// Bytes of weights one generated token reads: every parameter but the norms
// and the embedding table (of which it reads one row), plus the head (the
// table itself when tied).
double generation_weight_bytes(const Model& m) {
  double bytes = 0;
  for (const auto& [name, p] : m.parameters())
    if (name.find("norm") == std::string::npos && name != "embed.weight") bytes += static_cast<double>(p.nbytes());
  if (m.config().tie_embeddings) bytes += static_cast<double>(m.parameter("embed.weight").nbytes());
  return bytes;
}

// The row `name`: the n tokens `one` generated after a `prompt`-token prompt,
// compiled against eager, with the weight-streaming limit of the same rounds,
// the graph's products alone, and one row per op kind of the replayed step.
void compiled_vs_eager(bench::Context& ctx, const std::string& name, const Model& m, const InferencePack& pack,
                       const std::vector<Tensor>& one, int64_t prompt, int reps) {
  autograd::NoGradGuard ng;
  const double n = static_cast<double>(one.size());
  const int64_t V = m.config().vocab_size;
  // The tokens through the captured one-token step (GenerationGraph)
  // and the packed eager path, timed in turn with the triad and a
  // read-only stream (a neighbour on this shared machine weighs on all
  // alike); the weight-streaming limit is that triad bandwidth over the
  // weight bytes read per token.
  State s = m.initial_state(1);
  m.forward(random_tokens(1, prompt, V, 4), s);
  GenerationGraph g(m, s, &pack);
  g.step(one[0]);  // the capture
  std::vector<double> triads, reads;  // GB/s, one per round
  std::vector<double> in_calls;  // seconds per round inside the replays' kernel calls
  // The graph's weight products (linear_packed calls) alone, back to back
  // with nothing between them: the rate oneDNN's one-row products reach
  // on these weights, the ceiling of a token that were only its products.
  std::vector<const autograd::Call*> products;
  double product_bytes = 0;
  for (const autograd::Call& c : g.compiled().last_graph()->calls())
    if (c.kind == autograd::OpKind::linear_packed) {
      products.push_back(&c);
      product_bytes += static_cast<double>(c.in[0].shape().back() * c.out[0].shape().back()) *
                       static_cast<double>(dtype_size(c.in[0].dtype()));
    }
  constexpr int kPasses = 32;  // product passes a round (one pass is about a token's worth)
  const std::vector<double> both = bench::median_seconds_interleaved(
      {[&] {
         g.set_state(s);
         const autograd::KernelClock clock = clocked([&] {
           for (const Tensor& tok : one) g.step(tok);
         });
         double t = 0;
         for (double x : clock.seconds) t += x;
         in_calls.push_back(t);
       },
       [&] {
         State e = s;
         for (const Tensor& tok : one) m.forward(tok, e, &pack);
       },
       [&] { triads.push_back(bench::triad_gbps(256 << 20, 1)); },
       [&] { reads.push_back(bench::read_gbps(256 << 20, 1)); },
       [&] {
         for (int k = 0; k < kPasses; ++k)
           for (const autograd::Call* c : products) c->run(c->attrs.bytes, c->in.data(), c->out.data());
       }},
      std::max(reps, 5));
  const double tc = both[0], te = both[1], tp = both[4] / kPasses;
  std::sort(triads.begin(), triads.end());
  const double bw = triads[triads.size() / 2];
  nlohmann::json fig = {{"tokens_s", n / tc}, {"ms_per_token", tc * 1e3 / n}, {"eager_tokens_s", n / te},
                        {"ratio", te / tc}, {"weight_mib", generation_weight_bytes(m) / 1048576.0},
                        {"calls", g.compiled().last_graph()->size()},
                        {"kernels_ms_per_token", bench::median_of(in_calls) * 1e3 / n}};
  fig["triad_gbps"] = bw;
  fig["limit_tokens_s"] = bw * 1e9 / generation_weight_bytes(m);
  fig["of_limit"] = n / tc / (bw * 1e9 / generation_weight_bytes(m));
  // The same against a read-only stream (a token's weights are only
  // read): what a matrix-vector product can reach on this machine.
  const double rd = bench::median_of(reads);
  fig["read_gbps"] = rd;
  fig["of_read_limit"] = n / tc / (rd * 1e9 / generation_weight_bytes(m));
  fig["weight_gbps"] = n / tc * generation_weight_bytes(m) / 1e9;
  fig["products_ms_per_token"] = tp * 1e3;
  fig["products_gbps"] = product_bytes / tp / 1e9;
  fig["products_of_limit"] = product_bytes / tp / 1e9 / bw;  // of_limit if a token were its products alone
  ctx.report(name, fig);
  // Where a generated token's time goes: the replay's calls by kind, each
  // timed alone (their sum is above the replay's: every call then starts
  // cold), with its share of that sum.
  const auto kinds = ms_by_kind(*g.compiled().last_graph(), 64);
  double sum = 0;
  for (const auto& [kind, ms] : kinds) sum += ms;
  for (const auto& [kind, ms] : kinds)
    ctx.report(name + " " + kind, {{"ms_per_token", ms}, {"share", ms / sum}});
}

}  // namespace

namespace bench {

void generation_rows(Context& ctx, const Model& m, const Model& inf16, int reps) {
  const int64_t V = m.config().vocab_size;
  {
    // As mmrec-generate: weights packed for 1-row calls, against the plain path.
    autograd::NoGradGuard ng;
    const int64_t n = 256;
    std::vector<Tensor> one;
    for (int64_t i = 0; i < n; ++i) one.push_back(random_tokens(1, 1, V, 100 + i));
    auto run = [&](const Model& mm, const InferencePack* pk) {
      State s = mm.initial_state(1);
      mm.forward(random_tokens(1, 64, V, 4), s);  // a prompt, then one token per call
      if (ctx.compiled()) {  // through GenerationGraph
        GenerationGraph gg(mm, s, pk);
        gg.step(one[0]);  // the capture
        return bench::median_seconds(
            [&] {
              gg.set_state(s);
              for (const Tensor& tok : one) gg.step(tok);
            },
            reps);
      }
      return bench::median_seconds(
          [&] {
            State g = s;
            for (const Tensor& tok : one) mm.forward(tok, g, pk);
          },
          reps);
    };
    const InferencePack pack = m.pack_for_inference(1);
    if (ctx.wants("model_generate_token_by_token")) {  // and its _bf16 row, against it
      const double t = run(m, &pack), t_plain = run(m, nullptr);
      ctx.report("model_generate_token_by_token", {{"tokens_s", n / t},
                                                   {"ms_per_token", t * 1e3 / n},
                                                   {"plain_tokens_s", n / t_plain},
                                                   {"speedup_packed", t_plain / t}});
      if (ctx.wants("model_generate_token_by_token_bf16")) {
        const InferencePack pack16 = inf16.pack_for_inference(1);
        const double t16 = run(inf16, &pack16);
        ctx.report("model_generate_token_by_token_bf16", {{"tokens_s", n / t16},
                                                          {"ms_per_token", t16 * 1e3 / n},
                                                          {"ref_tokens_s", n / t},
                                                          {"ratio", t / t16}});
      }
    }
    if (ctx.wants("model_generate_compiled")) compiled_vs_eager(ctx, "model_generate_compiled", m, pack, one, 64, reps);
    if (ctx.wants("model_generate_compiled_full")) {
      const int64_t full = m.config().memory_slots * m.config().chunk_size + m.config().chunk_size / 2;
      compiled_vs_eager(ctx, "model_generate_compiled_full", m, pack, one, full, reps);
    }
  }
}

}  // namespace bench
