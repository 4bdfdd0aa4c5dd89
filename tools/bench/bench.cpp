#include "bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "ops/reduce.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"

namespace bench {

std::vector<std::pair<std::string, Suite>>& suites() {
  static std::vector<std::pair<std::string, Suite>> s;
  return s;
}

Register::Register(const char* name, Suite s) { suites().emplace_back(name, s); }

void Context::report(const std::string& name, const nlohmann::json& figures) {
  if (!wants(name)) return;
  ++reported_;
  if (json_) {
    nlohmann::json j = {{"name", name}};
    for (auto& [k, v] : figures.items()) j[k] = v;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::string row;
    for (auto& [k, v] : figures.items()) {
      char buf[64];
      if (v.is_number_float())
        std::snprintf(buf, sizeof buf, "%s=%.4g", k.c_str(), v.get<double>());
      else
        std::snprintf(buf, sizeof buf, "%s=%s", k.c_str(), v.dump().c_str());
      row += "  ";
      row += buf;
    }
    std::printf("%-40s%s\n", name.c_str(), row.c_str());
  }
  std::fflush(stdout);
}

double median_seconds(const std::function<void()>& f, int reps, int warmup) {
  return median_seconds_interleaved({f}, reps, warmup)[0];
}

std::vector<std::vector<double>> seconds_interleaved(const std::vector<std::function<void()>>& fs, int reps,
                                                     int warmup) {
  for (int i = 0; i < warmup; ++i)
    for (const auto& f : fs) f();
  std::vector<std::vector<double>> t(fs.size());
  for (int i = 0; i < std::max(reps, 1); ++i)
    for (size_t k = 0; k < fs.size(); ++k) {
      const auto a = std::chrono::steady_clock::now();
      fs[k]();
      t[k].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
    }
  return t;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<double> median_seconds_interleaved(const std::vector<std::function<void()>>& fs, int reps, int warmup) {
  std::vector<double> med;
  for (auto& v : seconds_interleaved(fs, reps, warmup)) med.push_back(median_of(std::move(v)));
  return med;
}

double triad_gbps(size_t bytes_per_array, int reps) {
  const int64_t n = static_cast<int64_t>(bytes_per_array / sizeof(float));
  mmrec::Tensor a = mmrec::Tensor::zeros({n}), b = mmrec::Tensor::full({n}, 1.0), c = mmrec::Tensor::full({n}, 2.0);
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const float* pc = c.data<float>();
  const float s = 3.0f;
  const double sec = median_seconds(
      [&] {
        mmrec::parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
          for (int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
        });
      },
      reps);
  return 3.0 * static_cast<double>(bytes_per_array) / sec / 1e9;
}

double read_gbps(size_t bytes, int reps) {
  const mmrec::Tensor a = mmrec::Tensor::full({static_cast<int64_t>(bytes / sizeof(float))}, 1.0);
  const double sec = median_seconds([&] { mmrec::ops::sum(a); }, reps);
  return static_cast<double>(bytes) / sec / 1e9;
}

}  // namespace bench
