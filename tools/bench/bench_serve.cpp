// mmrec-serve under concurrent streams: the bench config (dim 512, 4 layers)
// behind a real server on a loopback port, 1, 4 and 16 clients at once, each
// asking for the same number of tokens with prompts of one length: batched
// (streams share one [n, 1] model call per token) and unbatched (--batch 1:
// every stream on its own thread). Per-stream and total tokens/s against
// mmrec-generate's path alone (prompt in one call, then 1-row calls through
// packed weights, no server), and the bare batched forward of n streams (B =
// n rows, no server) as the ceiling of batching.
#include <algorithm>
#include <chrono>
#include <httplib.h>
#include <thread>
#include <vector>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "bench/model_fixtures.h"
#include "models/model.h"
#include "serve/admission.h"
#include "serve/http_common.h"
#include "serve/inference.h"

using namespace mmrec;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

BENCH_SUITE(serve) {
  if (!ctx.wants_prefix("serve_streams")) return;
  const int64_t tokens = 48;
  const ModelConfig cfg = bench::bench_config();
  auto body = [&](int i) {
    // Prompts of one length: the streams are at the same position, so they batch.
    return nlohmann::json{{"prompt", "The quick brown fox " + std::to_string(10 + i)}, {"max_tokens", tokens},
                          {"temperature", 0.8}, {"seed", i}};
  };
  const int reps = std::max(1, std::min(ctx.reps(), 3));
  // mmrec-generate's path on this thread: the reference.
  double alone = 0;
  {
    const Model m(cfg, 1);
    const InferencePack pack = m.pack_for_inference(1);
    const serve::CompletionRequest req = serve::parse_completion(body(0).dump(), {}, cfg.vocab_size);
    const double sec = bench::median_seconds([&] {
      serve::Completion c(m, pack, req);
      while (c.next()) {}
    }, reps);
    alone = tokens / sec;
    ctx.report("serve_streams_generate_alone", {{"tokens", tokens}, {"tokens_s", alone}});
    // Batched: n streams as one [n, 1] call per token (weights packed for n
    // rows, read once per token for all n).
    for (int n : {4, 16}) {
      const std::string name = "serve_streams_batched_" + std::to_string(n);
      if (!ctx.wants(name)) continue;
      autograd::NoGradGuard no_grad;
      const InferencePack packn = m.pack_for_inference(n);
      const Tensor next = bench::random_tokens(n, 1, cfg.vocab_size, 3);
      const double bsec = bench::median_seconds([&] {
        State st = m.initial_state(n);
        for (int t = 0; t < tokens; ++t) m.forward(next, st, &packn);
      }, reps);
      ctx.report(name, {{"streams", n}, {"total_tokens_s", n * tokens / bsec}, {"ref_tokens_s", alone},
                        {"ratio", n * tokens / bsec / alone}});
    }
  }
  // Through the server: batched (the default, one cohort per prompt length)
  // and with --batch 1 (every stream on its own thread).
  for (const int64_t batch : {16, 1}) {
    const std::string kind = batch > 1 ? "serve_streams_" : "serve_streams_unbatched_";
    if (!ctx.wants_prefix(kind)) continue;
    serve::InferenceService svc(Model(cfg, 1), {.name = "bench", .streams = 16, .queue = 0,
                                                .batch = {.max_batch = batch}});
    httplib::Server server;
    svc.install(server);
    server.new_task_queue = [] { return new serve::ConnectionPool(32, 32); };  // as mmrec-serve: a thread per client
    const int port = serve::bind_server(server, "127.0.0.1", 0);
    std::thread listener([&] { server.listen_after_bind(); });  // clients before it wait in the listen backlog

    // One round of n clients at once: each stream's tokens/s, and the total.
    auto round = [&](int n) {
      std::vector<double> per(static_cast<size_t>(n));
      std::vector<std::thread> clients;
      const double t0 = now_s();
      for (int i = 0; i < n; ++i)
        clients.emplace_back([&, i] {
          httplib::Client c("127.0.0.1", port);
          c.set_read_timeout(600);
          const double s = now_s();
          auto r = c.Post("/v1/completions", body(i).dump(), "application/json");
          per[static_cast<size_t>(i)] = r && r->status == 200 ? tokens / (now_s() - s) : 0;
        });
      for (auto& t : clients) t.join();
      const double total = n * tokens / (now_s() - t0);
      std::sort(per.begin(), per.end());
      return std::pair<double, double>{per[per.size() / 2], total};
    };
    round(1);  // warm-up: primitives for the prompt length and the 1-row calls
    for (int n : {1, 4, 16}) {
      const std::string name = kind + std::to_string(n);
      if (!ctx.wants(name)) continue;
      std::vector<double> per, total;
      for (int r = 0; r < reps; ++r) {
        const auto [p, t] = round(n);
        per.push_back(p), total.push_back(t);
      }
      std::sort(per.begin(), per.end()), std::sort(total.begin(), total.end());
      const double p = per[per.size() / 2], t = total[total.size() / 2];
      ctx.report(name, {{"streams", n},
                        {"tokens_per_stream", tokens},
                        {"per_stream_tokens_s", p},
                        {"total_tokens_s", t},
                        {"ref_tokens_s", alone},
                        {"ratio", t / alone},
                        {"largest_batch", svc.batcher_stats().second}});
    }
    server.stop();
    listener.join();
  }
}
