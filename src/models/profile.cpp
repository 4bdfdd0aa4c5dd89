#include "models/profile.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "autograd/tape.h"

namespace mmrec::prof {
namespace {

struct Store {
  std::mutex mu;
  std::map<std::string, Entry> entries;
};

Store& store() {
  static Store s;
  return s;
}

void backward_hook(const std::string& name, double seconds) { add("bwd." + name, seconds); }

std::atomic<bool>& flag() {
  static std::atomic<bool> on = [] {
    const char* e = std::getenv("MMREC_PROFILE");
    const bool yes = e && *e && std::strcmp(e, "0") != 0;
    if (yes) autograd::set_backward_hook(&backward_hook);
    return yes;
  }();
  return on;
}

const bool g_read_env = (flag(), true);  // MMREC_PROFILE is read when the library loads

}  // namespace

bool enabled() { return flag().load(std::memory_order_relaxed); }

void enable(bool on) {
  flag().store(on, std::memory_order_relaxed);
  autograd::set_backward_hook(on ? &backward_hook : nullptr);
}

void add(const std::string& name, double seconds) {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  Entry& e = s.entries[name];
  if (e.name.empty()) e.name = name;
  e.seconds += seconds;
  ++e.calls;
}

std::vector<Entry> report() {
  Store& s = store();
  std::vector<Entry> out;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (const auto& [name, e] : s.entries) out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

void reset() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  s.entries.clear();
}

}  // namespace mmrec::prof
