#include "ops/kernels/dnnl_context.h"

#include <omp.h>

#include <list>
#include <mutex>
#include <unordered_map>

namespace mmrec::kernels {

dnnl::engine& dnnl_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream s(dnnl_engine());
  return s;
}

namespace {
constexpr size_t kCapacity = 4096;

// LRU: the list holds keys, most recent first; the map points into it.
struct Cache {
  std::mutex mu;
  std::list<std::string> order;
  std::unordered_map<std::string, std::pair<dnnl::primitive, std::list<std::string>::iterator>> map;
};
Cache& cache() {
  static Cache* c = new Cache;  // leaked: primitives may be used during static destruction of a host
  return *c;
}
}  // namespace

std::optional<dnnl::primitive> find_primitive(const std::string& key) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.map.find(key);
  if (it == c.map.end()) return std::nullopt;
  c.order.splice(c.order.begin(), c.order, it->second.second);
  return it->second.first;
}

void insert_primitive(const std::string& key, const dnnl::primitive& p) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.map.count(key)) return;  // another thread created it meanwhile
  c.order.push_front(key);
  c.map.emplace(key, std::make_pair(p, c.order.begin()));
  if (c.map.size() > kCapacity) {
    c.map.erase(c.order.back());
    c.order.pop_back();
  }
}

size_t primitive_cache_size() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.map.size();
}

DnnlThreads::DnnlThreads(int n) : prev_(omp_get_max_threads()) {
  if (n > 0 && n != prev_) omp_set_num_threads(n);
  else prev_ = 0;
}

DnnlThreads::~DnnlThreads() {
  if (prev_ > 0) omp_set_num_threads(prev_);
}

int dnnl_max_threads() { return omp_get_max_threads(); }

}  // namespace mmrec::kernels
