// Training memory on the "bench" config: one training step's allocator peak
// and tokens/s for each gradient checkpointing mode (none, block, chunk) at
// the shapes of a long-sequence run, with block's and chunk's peak and time
// as ratios of none's; how chunk's peak grows with the sequence at batch 1;
// and inference over 100,000 tokens in one call.
#include <algorithm>
#include <map>
#include <vector>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "bench/model_fixtures.h"
#include "models/model.h"
#include "tensor/allocator.h"
#include "train/metrics.h"

using namespace mmrec;

namespace {

// chunk: tokens per recomputed segment (8 of the bench config's chunks). 512
// halves the peak again, at more recomputation per token (README).
constexpr int64_t kSegmentTokens = 1024;

struct Figures {
  double seconds = 0, peak = 0;
};

const char* mode_name(Checkpointing::Mode m) {
  return m == Checkpointing::Mode::none ? "none" : m == Checkpointing::Mode::block ? "block" : "chunk";
}

}  // namespace

BENCH_SUITE(model_memory) {
  if (!ctx.wants_prefix("model_memory")) return;
  const int reps = std::min(ctx.reps(), 2);
  Model m(bench::bench_config(ctx), 1);
  const std::pair<int64_t, int64_t> shapes[] = {{8, 1024}, {2, 4096}, {1, 1024}, {1, 4096}, {1, 16384}};
  std::map<std::string, Figures> seen;
  const Checkpointing::Mode modes[] = {Checkpointing::Mode::none, Checkpointing::Mode::block,
                                       Checkpointing::Mode::chunk};
  for (const auto& [B, T] : shapes) {
    const std::string shape = std::to_string(B) + "x" + std::to_string(T);
    auto row = [&](Checkpointing::Mode mode) { return std::string("model_memory_") + mode_name(mode) + "_" + shape; };
    // Measured when selected, or as the reference of a selected row: none
    // for block's and chunk's ratios, chunk at 1x1024 and 1x16384 for the growth.
    std::vector<Checkpointing::Mode> run;
    for (const auto mode : modes) {
      const bool reference =
          (mode == Checkpointing::Mode::none &&
           (ctx.wants(row(Checkpointing::Mode::block)) || ctx.wants(row(Checkpointing::Mode::chunk)))) ||
          (mode == Checkpointing::Mode::chunk && (shape == "1x1024" || shape == "1x16384") &&
           ctx.wants("model_memory_chunk_growth"));
      if (ctx.wants(row(mode)) || reference) run.push_back(mode);
    }
    if (run.empty()) continue;
    const Tensor tokens = bench::random_tokens(B, T, 256, 7);
    auto step = [&](Checkpointing::Mode mode) {
      m.set_checkpointing({mode, mode == Checkpointing::Mode::chunk ? kSegmentTokens : 0});
      bench::train_step(m, tokens);
    };
    for (const auto mode : run) step(mode);  // warm-up: primitive caches, allocator pools
    // The modes take turns, rep by rep, so that a change in the machine's
    // load falls on all of them alike.
    std::map<Checkpointing::Mode, std::vector<double>> times;
    std::map<Checkpointing::Mode, double> peaks;
    for (int r = 0; r < reps; ++r)
      for (const auto mode : run) {
        alloc::reset_peak();
        const size_t base = alloc::stats().current_bytes;
        times[mode].push_back(bench::median_seconds([&] { step(mode); }, 1, 0));
        peaks[mode] = std::max(peaks[mode], static_cast<double>(alloc::stats().peak_bytes - base));
      }
    for (const auto mode : run) {
      std::vector<double>& t = times[mode];
      std::sort(t.begin(), t.end());
      seen[row(mode)] = {t[t.size() / 2], peaks[mode]};
    }
    for (const auto mode : run) {
      const Figures f = seen[row(mode)];
      nlohmann::json j = {{"tokens_s", B * T / f.seconds},
                          {"ms", f.seconds * 1e3},
                          {"peak_mib", f.peak / 1048576.0},
                          {"peak_bytes", f.peak},
                          {"rss_mib", resident_bytes() / 1048576.0}};
      if (mode == Checkpointing::Mode::chunk) j["segment_tokens"] = kSegmentTokens;
      const auto none = seen.find(row(Checkpointing::Mode::none));
      if (mode != Checkpointing::Mode::none && none != seen.end()) {
        j["peak_ratio"] = f.peak / none->second.peak;
        j["time_ratio"] = f.seconds / none->second.seconds;
      }
      ctx.report(row(mode), j);
    }
  }
  m.set_checkpointing({});
  const auto short_seq = seen.find("model_memory_chunk_1x1024"), long_seq = seen.find("model_memory_chunk_1x16384");
  if (short_seq != seen.end() && long_seq != seen.end())
    ctx.report("model_memory_chunk_growth", {{"peak_mib_1x1024", short_seq->second.peak / 1048576.0},
                                             {"peak_mib_1x16384", long_seq->second.peak / 1048576.0},
                                             {"ratio", long_seq->second.peak / short_seq->second.peak}});

  if (ctx.wants("model_memory_inference_1x100000")) {
    // Beyond the returned logits, a call's memory should not grow with its length.
    autograd::NoGradGuard ng;
    auto beyond_logits = [&](int64_t T) {
      const Tensor tokens = bench::random_tokens(1, T, 256, 8);
      alloc::reset_peak();
      const size_t base = alloc::stats().current_bytes;
      Figures f;
      f.seconds = bench::median_seconds(
          [&] {
            State s = m.initial_state(1);
            m.forward(tokens, s);
          },
          1, 0);
      f.peak = static_cast<double>(alloc::stats().peak_bytes - base) - static_cast<double>(T * 256 * sizeof(float));
      return f;
    };
    const Figures small = beyond_logits(8192), large = beyond_logits(100000);
    ctx.report("model_memory_inference_1x100000", {{"tokens_s", 100000 / large.seconds},
                                                   {"beyond_logits_mib", large.peak / 1048576.0},
                                                   {"ref_beyond_logits_mib_1x8192", small.peak / 1048576.0},
                                                   {"ratio", large.peak / small.peak}});
  }
}
