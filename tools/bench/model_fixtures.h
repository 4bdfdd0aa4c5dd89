// What the model benchmarks share: the "bench" config (dim 512, 4 layers, 8
// heads) or the user's (--model), seeded tokens, one training step (forward +
// loss + backward), and timing a graph's calls by op kind.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "bench/bench.h"
#include "models/model.h"
#include "tensor/random.h"

namespace bench {

inline mmrec::ModelConfig bench_config(const std::string& recurrence = "parallel") {
  return mmrec::ModelConfig::from_json({{"dim", 512}, {"layers", 4}, {"heads", 8}, {"ffn_dim", 2048},
                                        {"mdi_dim", 128}, {"memory_slots", 64}, {"chunk_size", 128},
                                        {"recurrence", recurrence}});
}

// The user's model section (mmrec-bench --model) when given, else the bench
// config, in the given recurrence mode.
inline mmrec::ModelConfig bench_config(const Context& ctx, const std::string& recurrence = "parallel") {
  if (ctx.model().is_null()) return bench_config(recurrence);
  nlohmann::json m = ctx.model();
  m["recurrence"] = recurrence;
  return mmrec::ModelConfig::from_json(m);
}

inline mmrec::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  mmrec::Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(g.next_u64() % static_cast<uint64_t>(V));
  return mmrec::Tensor::from_vector(ids, {B, T});
}

inline void train_step(const mmrec::Model& m, const mmrec::Tensor& tokens) {
  mmrec::Tensor loss = m.loss(tokens);
  mmrec::autograd::backward(loss);
  for (const auto& [name, p] : m.parameters()) mmrec::Tensor(p).zero_grad();
}

// Milliseconds per replay of a graph's calls, by op kind (each call timed
// alone, `reps` replays), largest first.
inline std::vector<std::pair<std::string, double>> ms_by_kind(const mmrec::autograd::Graph& g, int reps) {
  using Clock = std::chrono::steady_clock;
  std::map<std::string, double> by;
  for (int r = 0; r < reps; ++r)
    for (const mmrec::autograd::Call& c : g.calls()) {
      const auto t0 = Clock::now();
      c.run(c.attrs.bytes, c.in.data(), c.out.data());
      by[mmrec::autograd::op_kind_name(c.kind)] += std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / reps;
    }
  std::vector<std::pair<std::string, double>> v(by.begin(), by.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return v;
}

// What a graph's calls that `pick` selects move and take, each call run alone
// `reps` times: the sum of each call's fastest time, and of its operands'
// bytes (every input and output view once; copy_rows, which writes its rows
// into a larger buffer, counts what it reads twice). A memory-bound kernel
// cannot beat its bytes at the machine's bandwidth, so a pass shortens these
// calls only as far as it moves fewer bytes.
struct Traffic {
  double fastest_ms = 0, mib = 0;
};
template <class Pick>
Traffic traffic(const mmrec::autograd::Graph& g, int reps, const Pick& pick) {
  using Clock = std::chrono::steady_clock;
  Traffic t;
  std::vector<double> best(g.size(), 1e30);
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < g.size(); ++i) {
      const mmrec::autograd::Call& c = g.calls()[i];
      if (!pick(c.kind)) continue;
      const auto t0 = Clock::now();
      c.run(c.attrs.bytes, c.in.data(), c.out.data());
      best[i] = std::min(best[i], std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
  for (size_t i = 0; i < g.size(); ++i) {
    const mmrec::autograd::Call& c = g.calls()[i];
    if (!pick(c.kind)) continue;
    t.fastest_ms += best[i];
    double bytes = 0;
    for (const mmrec::Tensor& x : c.in)
      if (x.defined()) bytes += static_cast<double>(x.nbytes());
    if (c.kind == mmrec::autograd::OpKind::copy_rows) {
      bytes *= 2;
    } else {
      for (const mmrec::Tensor& x : c.out)
        if (x.defined()) bytes += static_cast<double>(x.nbytes());
    }
    t.mib += bytes / 1048576.0;
  }
  return t;
}

// Runs f with a KernelClock set on this thread; returns what it counted.
inline mmrec::autograd::KernelClock clocked(const std::function<void()>& f) {
  mmrec::autograd::KernelClock clock;
  mmrec::autograd::set_kernel_clock(&clock);
  struct Unset {
    ~Unset() { mmrec::autograd::set_kernel_clock(nullptr); }
  } unset;
  f();
  return clock;
}

// The model suite's generation rows (bench_generate.cpp).
void generation_rows(Context& ctx, const mmrec::Model& m, const mmrec::Model& inf16, int reps);

}  // namespace bench
