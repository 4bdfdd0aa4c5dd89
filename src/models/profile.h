// Opt-in timing of where a model's time goes: named forward scopes and, through
// autograd's backward hook, every node's backward by op name. Off unless the
// environment has MMREC_PROFILE=1 or enable(true) is called; when off a Scope
// costs one relaxed atomic load. The library only collects; tools print.
//
//   prof::enable(true);
//   { prof::Scope s("fwd.qkvz"); ... }
//   for (auto& e : prof::report()) printf("%s %.3f s\n", e.name.c_str(), e.seconds);
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mmrec::prof {

bool enabled();
// Also installs (or removes) the autograd backward hook that times nodes as "bwd.<name>".
void enable(bool on);
void add(const std::string& name, double seconds);

struct Entry {
  std::string name;
  double seconds = 0;
  int64_t calls = 0;
};
// Every name seen since the last reset, most time first.
std::vector<Entry> report();
void reset();

// Adds its lifetime to `name` when profiling is on.
class Scope {
 public:
  explicit Scope(const char* name) : name_(enabled() ? name : nullptr) {
    if (name_) t0_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (name_) add(name_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace mmrec::prof
