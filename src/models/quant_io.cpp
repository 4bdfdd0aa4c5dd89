// int8 checkpoints: save_int8_model and the int8 branch of load_model.
//
// Names (safetensors, loadable by any reader): for every quantized linear
// <site> (blocks.{i}.qkvz, ..., lm_head):
//   <site>.weight            I8  [N, K]  round-half-even(W / weight_scale) clamped to [-128, 127]
//   <site>.weight_scale      F32 [N]     per output channel, symmetric (zero point 0)
//   <site>.input_scale       F32 [1]     per-tensor affine u8 input
//   <site>.input_zero_point  I32 [1]     in [0, 255]
// Every other parameter (biases, norms, embedding, unquantized linears) is F32
// under its usual name. __metadata__: "format" = "mmrec-int8", "config" (the
// model section), "quantization" (JSON: layers, head).
#include <nlohmann/json.hpp>
#include <cmath>
#include <limits>
#include <set>

#include "autograd/tape.h"
#include "models/quant.h"
#include "ops/kernels/fake_quant.h"
#include "models/safetensors.h"

namespace mmrec {
namespace {
Tensor scalar_f32(float v) { return Tensor::full({1}, v); }
Tensor scalar_i32(int32_t v) {
  Tensor t = Tensor::empty({1}, DType::i32);
  t.data<int32_t>()[0] = v;
  return t;
}
// Observers that give back exactly these qparams (min/max nudged by ulps
// where float rounding would not), so that an int8 file can also run through
// fake quantization (QuantMode::fake with observers frozen).
void set_observers(QuantSite& s, float xs, int32_t xz, const Tensor& w_scale) {
  // The scale (hi - lo) / 255 moves by about its own ulp per ulp of hi, so
  // walking hi alone can step over xs: lo is nudged too where it does.
  const std::pair<float, int32_t> want{xs, xz};
  const float lo0 = -static_cast<float>(xz) * xs;
  std::vector<float> lo = {lo0}, hi = {static_cast<float>(255 - xz) * xs};
  for (int j = 0; j < 16 && kernels::qparams_affine_u8(lo[0], hi[0]) != want; ++j) {
    lo[0] = lo0;  // 0, one ulp up, one down, two up, ...
    for (int k = 0; k < (j + 1) / 2; ++k) lo[0] = std::nextafter(lo[0], j % 2 ? INFINITY : -INFINITY);
    if (lo[0] > 0) continue;
    hi[0] = lo[0] + 255.0f * xs;
    for (int i = 0; i < 64 && kernels::qparams_affine_u8(lo[0], hi[0]).first != xs; ++i)
      hi[0] = std::nextafter(hi[0], kernels::qparams_affine_u8(lo[0], hi[0]).first < xs ? INFINITY : -INFINITY);
  }
  s.input.set(lo, hi);
  const int64_t N = w_scale.numel();
  std::vector<float> wlo(static_cast<size_t>(N)), whi(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const float want = w_scale.data<float>()[n];
    float a = want * 127.5f;
    for (int i = 0; i < 64 && kernels::qparams_symmetric_s8(-a, a) != want; ++i)
      a = std::nextafter(a, a / 127.5f < want ? INFINITY : -INFINITY);
    whi[static_cast<size_t>(n)] = a;
    wlo[static_cast<size_t>(n)] = -a;
  }
  s.weight.set(wlo, whi);
}
}  // namespace

void save_int8_model(const std::string& path, const Model& model) {
  ModelQuant* q = model.quantization();
  check(q != nullptr, "save_int8_model: the model has no quantization state (QAT or calibration)");
  std::map<std::string, QuantSite*> by_weight;
  for (QuantSite* s : q->sites()) {
    check(s->input.observed() && s->weight.observed(), "save_int8_model: ", s->name,
          " has not been observed (run QAT steps or calibration first)");
    by_weight[s->name + ".weight"] = s;
  }
  std::vector<NamedTensor> tensors;
  auto add_site = [&](const QuantSite& s, const Tensor& w) {
    auto [wq, scales] = quantize_weight(s, w);
    auto [xs, xz] = s.input.affine_u8();
    tensors.emplace_back(s.name + ".weight", wq);
    tensors.emplace_back(s.name + ".weight_scale", scales);
    tensors.emplace_back(s.name + ".input_scale", scalar_f32(xs));
    tensors.emplace_back(s.name + ".input_zero_point", scalar_i32(xz));
  };
  for (const auto& [name, t] : model.parameters()) {
    auto it = by_weight.find(name);
    if (it == by_weight.end()) tensors.emplace_back(name, t.detach());
    else add_site(*it->second, t);
  }
  if (q->head.enabled && model.config().tie_embeddings) add_site(q->head, model.parameter("embed.weight"));
  const nlohmann::json qj = {{"layers", q->config.layers}, {"head", q->config.head}};
  write_safetensors(path, tensors,
                    {{"config", model.config().to_json().dump()}, {"format", "mmrec-int8"}, {"quantization", qj.dump()}});
}

Model load_int8_model(const Safetensors& file, const ModelConfig& config) {
  const std::string where = "load_model: '" + file.path + "'";
  QuantConfig qc;
  try {
    auto it = file.metadata.find("quantization");
    check(it != file.metadata.end(), where, ": an int8 file without \"quantization\" metadata");
    const nlohmann::json j = nlohmann::json::parse(it->second);
    qc.layers = j.at("layers").get<std::vector<std::string>>();
    qc.head = j.at("head").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": malformed \"quantization\" metadata: ", e.what());
  }
  Model model(config);
  auto q = std::make_shared<ModelQuant>(model, qc);
  std::set<std::string> known;
  auto get = [&](const std::string& name, DType dtype, const Shape& shape) {
    check(file.has(name), where, ": missing tensor '", name, "' of shape ", shape);
    const Tensor t = file.get(name);
    check(t.dtype() == dtype && t.shape() == shape, where, ": tensor '", name, "' is ", dtype_name(t.dtype()), " ",
          t.shape(), ", expected ", dtype_name(dtype), " ", shape);
    known.insert(name);
    return t;
  };
  std::map<std::string, QuantSite*> by_weight;
  for (QuantSite* s : q->sites()) by_weight[s->name + ".weight"] = s;
  struct Site {
    QuantSite* s;
    Tensor wq, scale;
    float xs;
    int32_t xz;
  };
  std::vector<Site> sites;
  auto read_site = [&](QuantSite* s, const Shape& shape) {
    const int64_t N = shape[0];
    Site r{s, get(s->name + ".weight", DType::i8, shape), get(s->name + ".weight_scale", DType::f32, {N}),
           get(s->name + ".input_scale", DType::f32, {1}).item(), 0};
    r.xz = get(s->name + ".input_zero_point", DType::i32, {1}).contiguous().data<int32_t>()[0];
    sites.push_back(r);
    return r;
  };
  autograd::NoGradGuard no_grad;
  for (const auto& [name, p] : model.parameters()) {
    Tensor dst = p;  // shares the parameter's storage
    auto it = by_weight.find(name);
    if (it == by_weight.end()) {
      dst.copy_from(get(name, DType::f32, p.shape()));
      continue;
    }
    const Site r = read_site(it->second, p.shape());
    // The f32 parameter holds the dequantized weight (what fake quantization computed).
    const int64_t N = p.size(0), K = p.size(1);
    const Tensor wq = r.wq.contiguous(), sc = r.scale.contiguous();
    Tensor deq = Tensor::empty({N, K});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        deq.data<float>()[n * K + k] = static_cast<float>(wq.data<int8_t>()[n * K + k]) * sc.data<float>()[n];
    dst.copy_from(deq);
  }
  if (q->head.enabled && config.tie_embeddings) read_site(&q->head, {config.vocab_size, config.dim});
  for (const auto& [name, t] : file.tensors)
    check(known.count(name), where, ": unexpected tensor '", name, "' (not part of this int8 model)");
  for (const Site& r : sites) {
    const bool head = r.s == &q->head;
    const Tensor b = head ? Tensor() : model.parameter(r.s->name + ".bias").detach();
    check(r.xs > 0 && r.xz >= 0 && r.xz <= 255, where, ": ", r.s->name, " has input scale ", r.xs,
          " and zero point ", r.xz, " (expected > 0 and in [0, 255])");
    r.s->int8 = kernels::Int8Linear(r.wq.contiguous(), r.scale.contiguous(), b, r.xs, r.xz, r.s->act);
    set_observers(*r.s, r.xs, r.xz, r.scale.contiguous());
  }
  q->mode = QuantMode::int8;
  model.set_quantization(q);
  return model;
}

}  // namespace mmrec
