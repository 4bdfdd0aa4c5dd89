#include "ops/kernels/matmul.h"

#include <mutex>
#include <string>
#include <unordered_map>

#include "ops/kernels/dnnl_context.h"

namespace mmrec::kernels {
namespace {
using dnnl::memory;

// View any rank-2/3 tensor as rank 3 (batch, rows, cols) for oneDNN.
struct Mat3 {
  memory::dims dims, strides;
};

Mat3 as3(const Tensor& t) {
  if (t.dim() == 2) return {{1, t.shape()[0], t.shape()[1]}, {t.shape()[0] * t.shape()[1], t.strides()[0], t.strides()[1]}};
  return {{t.shape()[0], t.shape()[1], t.shape()[2]}, {t.strides()[0], t.strides()[1], t.strides()[2]}};
}

struct Cache {
  std::mutex mu;
  std::unordered_map<std::string, dnnl::matmul> prims;
};
Cache& cache() {
  static Cache* c = new Cache;  // leaked: primitives may be used during static destruction of a host
  return *c;
}

std::string key_of(const Mat3& a, const Mat3& b, const Mat3& c, bool acc) {
  std::string k;
  for (const Mat3* m : {&a, &b, &c}) {
    for (auto v : m->dims) k += std::to_string(v) + ',';
    for (auto v : m->strides) k += std::to_string(v) + ',';
    k += ';';
  }
  k += acc ? "acc" : "";
  return k;
}

dnnl::matmul get_primitive(const Mat3& a, const Mat3& b, const Mat3& c, bool acc) {
  const std::string key = key_of(a, b, c, acc);
  Cache& ch = cache();
  {
    std::lock_guard<std::mutex> lock(ch.mu);
    auto it = ch.prims.find(key);
    if (it != ch.prims.end()) return it->second;
  }
  const auto f32 = memory::data_type::f32;
  memory::desc amd(a.dims, f32, a.strides), bmd(b.dims, f32, b.strides), cmd(c.dims, f32, c.strides);
  dnnl::primitive_attr attr;
  if (acc) {
    dnnl::post_ops po;
    po.append_sum(1.0f);
    attr.set_post_ops(po);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(amd, bmd, cmd), attr, dnnl_engine());
  dnnl::matmul prim(pd);
  std::lock_guard<std::mutex> lock(ch.mu);
  ch.prims.emplace(key, prim);
  return prim;
}
}  // namespace

void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate) {
  if (c.numel() == 0) return;
  const int64_t K = a.shape().back();
  if (K == 0) {
    if (!accumulate) c.fill(0.0);
    return;
  }
  const Mat3 ma = as3(a), mb = as3(b), mc = as3(c);
  dnnl::matmul prim = get_primitive(ma, mb, mc, accumulate);
  const auto f32 = memory::data_type::f32;
  auto& eng = dnnl_engine();
  memory am({ma.dims, f32, ma.strides}, eng, a.raw_data());
  memory bm({mb.dims, f32, mb.strides}, eng, b.raw_data());
  memory cm({mc.dims, f32, mc.strides}, eng, c.raw_data());
  auto& s = dnnl_stream();
  prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  s.wait();
}

size_t matmul_cache_size() {
  Cache& ch = cache();
  std::lock_guard<std::mutex> lock(ch.mu);
  return ch.prims.size();
}

namespace ref {
void matmul_f32(const Tensor& a, const Tensor& b, Tensor& c, bool accumulate) {
  const Mat3 ma = as3(a), mb = as3(b), mc = as3(c);
  const float* pa = static_cast<const float*>(a.raw_data());
  const float* pb = static_cast<const float*>(b.raw_data());
  float* pc = static_cast<float*>(c.raw_data());
  const int64_t B = mc.dims[0], M = mc.dims[1], N = mc.dims[2], K = ma.dims[2];
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        const int64_t ab = ma.dims[0] == 1 ? 0 : bi, bb = mb.dims[0] == 1 ? 0 : bi;
        for (int64_t k = 0; k < K; ++k)
          s += static_cast<double>(pa[ab * ma.strides[0] + i * ma.strides[1] + k * ma.strides[2]]) *
               pb[bb * mb.strides[0] + k * mb.strides[1] + j * mb.strides[2]];
        float& out = pc[bi * mc.strides[0] + i * mc.strides[1] + j * mc.strides[2]];
        out = accumulate ? out + static_cast<float>(s) : static_cast<float>(s);
      }
}
}  // namespace ref

}  // namespace mmrec::kernels
