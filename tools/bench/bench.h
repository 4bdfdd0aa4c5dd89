// The benchmark registry behind tools/mmrec-bench: each suite (bench_*.cpp)
// measures and reports named figures; comparisons carry the reference figure
// and a `ratio`. Timing is the median of repeated runs.
//
//   BENCH_SUITE(triad) {
//     if (!ctx.wants("triad")) return;
//     ctx.report("triad_32MiB", {{"gbps", bench::triad_gbps(32 << 20)}});
//   }
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bench {

class Context {
 public:
  Context(std::string filter, bool json, int reps) : filter_(std::move(filter)), json_(json), reps_(reps) {}
  // The measurement `name` matches the filter (the filter is a substring of it).
  bool wants(const std::string& name) const {
    return filter_.empty() || name.find(filter_) != std::string::npos;
  }
  // Some measurement whose name starts with `prefix` may match: for suites
  // that name their measurements as they go (report() drops the others).
  bool wants_prefix(const std::string& prefix) const { return wants(prefix) || filter_.rfind(prefix, 0) == 0; }
  int reps() const { return reps_; }
  // The model section the model suite runs (mmrec-bench --model); null: the bench config.
  const nlohmann::json& model() const { return model_; }
  void set_model(nlohmann::json m) { model_ = std::move(m); }
  // mmrec-bench --compile: the model suite's rows run captured and replayed.
  bool compiled() const { return compiled_; }
  void set_compiled(bool c) { compiled_ = c; }
  // Prints one measurement: a JSON line {"name": ..., figures...} or a table
  // row; nothing when the filter does not match the name.
  void report(const std::string& name, const nlohmann::json& figures);
  int reported() const { return reported_; }

 private:
  std::string filter_;
  bool json_;
  int reps_;
  int reported_ = 0;
  nlohmann::json model_;
  bool compiled_ = false;
};

using Suite = void (*)(Context&);
struct Register {
  Register(const char* name, Suite s);
};
std::vector<std::pair<std::string, Suite>>& suites();

// Median seconds of `reps` calls of f after `warmup` untimed calls.
double median_seconds(const std::function<void()>& f, int reps, int warmup = 1);
// The same for several functions timed in turn, one call of each per round,
// so that a noisy neighbour weighs on all alike: one median per function.
std::vector<double> median_seconds_interleaved(const std::vector<std::function<void()>>& fs, int reps,
                                               int warmup = 1);
// The rounds themselves: seconds[k][i] is function k in round i (for
// paired differences within a round).
std::vector<std::vector<double>> seconds_interleaved(const std::vector<std::function<void()>>& fs, int reps,
                                                     int warmup = 1);
// The median of v (by value: v is sorted in the copy).
double median_of(std::vector<double> v);

// STREAM triad a[i] = b[i] + s*c[i] over arrays of `bytes_per_array`, on the
// current thread setting, in GB/s counting 3 arrays (median of reps).
double triad_gbps(size_t bytes_per_array, int reps);
// A read-only stream: ops::sum (Highway, every thread) over `bytes` of f32,
// in GB/s (median of reps). The ceiling of a kernel that only reads, such as
// a matrix-vector product streaming its weight.
double read_gbps(size_t bytes, int reps);

}  // namespace bench

#define BENCH_SUITE(name)                                          \
  static void bench_suite_##name(bench::Context& ctx);             \
  static bench::Register bench_register_##name(#name, bench_suite_##name); \
  static void bench_suite_##name(bench::Context& ctx)
