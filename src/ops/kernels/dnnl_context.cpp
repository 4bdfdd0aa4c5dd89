#include "ops/kernels/dnnl_context.h"

#include <omp.h>

#include <cstdlib>
#include <list>
#include <mutex>
#include <unordered_map>

#include "tensor/error.h"

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
// This thread's scratchpad: 64-byte aligned, grown on demand, freed when the
// thread ends.
struct Scratchpad {
  void* data = nullptr;
  size_t bytes = 0;
  ~Scratchpad() { std::free(data); }
  void* reserve(size_t n) {
    if (n <= bytes) return data;
    const size_t rounded = (n + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(64, rounded);
    check(p != nullptr, "oneDNN scratchpad: cannot allocate ", rounded, " bytes");
    std::free(data);
    data = p;
    bytes = rounded;
    return data;
  }
};
thread_local Scratchpad t_scratchpad;
}  // namespace

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

size_t scratchpad_bytes(const dnnl::primitive& p) {
  const dnnl_memory_desc_t* md = dnnl_primitive_desc_query_md(p.get_primitive_desc(), dnnl_query_scratchpad_md, 0);
  return md ? dnnl_memory_desc_get_size(md) : 0;
}

void run_primitive(const dnnl::primitive& p, std::unordered_map<int, dnnl::memory> args) {
  const dnnl_memory_desc_t* md = dnnl_primitive_desc_query_md(p.get_primitive_desc(), dnnl_query_scratchpad_md, 0);
  const size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
  if (bytes > 0)
    args.insert_or_assign(DNNL_ARG_SCRATCHPAD, dnnl::memory(dnnl::memory::desc(*md), dnnl_engine(), t_scratchpad.reserve(bytes)));
  auto& s = dnnl_stream();
  p.execute(s, args);
  s.wait();
}

size_t thread_scratchpad_bytes() { return t_scratchpad.bytes; }

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

namespace {
unsigned effective_isa() {
  static const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  return isa;
}
}  // namespace

// The ISA values are bit sets (dnnl_types.h): avx512_core 0x27, and the VNNI
// bit 0x40 of avx512_core_vnni (0x67) or 0x400 of avx2_vnni (0x407).
bool dnnl_has_avx512() {
  const unsigned core = static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
  return (effective_isa() & core) == core;
}
bool dnnl_has_vnni() {
  const unsigned avx512_vnni = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_vnni) & ~static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
  const unsigned avx2_vnni = static_cast<unsigned>(dnnl_cpu_isa_avx2_vnni) & ~static_cast<unsigned>(dnnl_cpu_isa_avx2);
  return (effective_isa() & (avx512_vnni | avx2_vnni)) != 0;
}

}  // namespace mmrec::kernels
