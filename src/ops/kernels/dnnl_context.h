// The oneDNN CPU engine shared by every oneDNN kernel, one stream and one
// scratchpad per thread, the process-wide cache of created primitives and the
// OpenMP thread scope oneDNN calls run under.
//
//   PrimitiveKey k("matmul");  k.add(M).add(K).add(N);
//   dnnl::primitive p = cached_primitive(k.str(), [&] { return dnnl::matmul(pd_made_with(user_scratchpad())); });
//   run_primitive(p, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

namespace mmrec::kernels {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();  // thread-local

// Why every primitive is made with a user scratchpad: oneDNN 2.6 as Debian
// builds it (DNNL_ENABLE_CONCURRENT_EXEC=OFF) gives library-managed
// primitives one scratchpad shared by all primitives of the thread that
// created them, so a primitive must run only on that thread, while the
// cache below hands one primitive to every thread (serving streams, two
// models in two threads). With scratchpad_mode::user a primitive keeps no
// mutable state and may run on several threads at once, each with its own
// scratchpad (oneDNN's scratchpad_mode documentation).
//
// A primitive_attr whose scratchpad mode is user: create every primitive with
// it (add post-ops etc. to the returned attr).
dnnl::primitive_attr user_scratchpad();
// Runs p on this thread's stream, with this thread's scratchpad (grown to
// what p asks, kept for the next call), and waits for it.
void run_primitive(const dnnl::primitive& p, std::unordered_map<int, dnnl::memory> args);
// Bytes of scratchpad p asks for (0: run_primitive adds none, and p may run
// on dnnl_stream() with its arguments as they are).
size_t scratchpad_bytes(const dnnl::primitive& p);
// Bytes of this thread's scratchpad (tests, benchmarks).
size_t thread_scratchpad_bytes();

// A cache key: the raw bytes of the integers that decide a primitive (shapes,
// strides, dtypes, post-ops, threads). Bytes, not text: building one costs
// ~50 ns, so a cache hit stays around a microsecond.
class PrimitiveKey {
 public:
  explicit PrimitiveKey(const char* kind) : s_(kind) { s_ += '|'; }
  PrimitiveKey& add(int64_t v) {
    s_.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  template <class Dims>
  PrimitiveKey& add_dims(const Dims& d) {
    add(static_cast<int64_t>(d.size()));
    for (auto v : d) add(static_cast<int64_t>(v));
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

// Creating a oneDNN primitive descriptor and primitive costs 0.1-1.7 ms, a
// small execution a few µs: every oneDNN kernel looks its primitive up here.
// Thread-safe; least recently used entries are dropped beyond a few thousand
// (shapes that vary call to call, e.g. prompt lengths, cannot grow it forever).
std::optional<dnnl::primitive> find_primitive(const std::string& key);
void insert_primitive(const std::string& key, const dnnl::primitive& p);
size_t primitive_cache_size();

template <class Make>
dnnl::primitive cached_primitive(const std::string& key, Make&& make) {
  if (auto p = find_primitive(key)) return *p;
  dnnl::primitive p = make();
  insert_primitive(key, p);
  return p;
}

// What oneDNN 2.6 runs natively on this CPU (as it sees it: DNNL_MAX_CPU_ISA
// can lower it, which is how the tests exercise the paths for older CPUs).
// bf16 matmuls exist only from AVX-512 (avx512_core) on: below it they fail
// to create, and kernels::gemm widens bf16 operands to f32 instead (which
// is why bf16 is no faster than f32 there). u8 x s8
// products sum without saturation only with VNNI (AVX512_VNNI or AVX-VNNI):
// before it oneDNN multiplies with vpmaddubsw, whose pairwise sums saturate at
// 16 bits (oneDNN's "Nuances of int8 computations"), so kernels::Int8Linear
// splits its inputs into two 7-bit halves there.
bool dnnl_has_avx512();
bool dnnl_has_vnni();

// OpenMP threads that oneDNN primitives created and run on this thread use
// in this scope (omp_set_num_threads is per calling thread). n <= 0 keeps
// the current setting.
class DnnlThreads {
 public:
  explicit DnnlThreads(int n);
  ~DnnlThreads();
  DnnlThreads(const DnnlThreads&) = delete;
  DnnlThreads& operator=(const DnnlThreads&) = delete;

 private:
  int prev_ = 0;
};

// The OpenMP thread count oneDNN sees on this thread (part of cache keys:
// a primitive is tuned for the threads present when it was created).
int dnnl_max_threads();

}  // namespace mmrec::kernels
