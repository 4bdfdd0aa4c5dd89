// Observers, fake-quant and int8 linears at a model's quantization sites.
#include "models/quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "ops/fake_quant.h"
#include "ops/view.h"
#include "tensor/threads.h"

namespace mmrec {
namespace {
using ops::Activation;

constexpr float kEps = std::numeric_limits<float>::epsilon();  // torch.finfo(torch.float32).eps

// The activation each block linear fuses (as block.cpp calls them).
constexpr std::array<Activation, 9> kSiteAct = {Activation::none,    Activation::none, Activation::gelu,
                                                Activation::sigmoid, Activation::gelu, Activation::sigmoid,
                                                Activation::none,    Activation::gelu, Activation::none};

Tensor as_rows(const Tensor& x) {
  const int64_t K = x.shape().back();
  return x.contiguous().reshape({K > 0 ? x.numel() / K : 0, K});
}

// min and max of each of C rows of a contiguous buffer of C * n values.
void row_min_max(const float* p, int64_t C, int64_t n, std::vector<float>& lo, std::vector<float>& hi) {
  lo.assign(static_cast<size_t>(C), std::numeric_limits<float>::infinity());
  hi.assign(static_cast<size_t>(C), -std::numeric_limits<float>::infinity());
  if (C == 1) {  // one long row: split it, then combine the pieces
    constexpr int64_t kPiece = 1 << 16;
    const int64_t pieces = std::max<int64_t>(1, (n + kPiece - 1) / kPiece);
    std::vector<float> plo(static_cast<size_t>(pieces), lo[0]), phi(static_cast<size_t>(pieces), hi[0]);
    parallel_for(pieces, 1, [&](int64_t s, int64_t e) {
      for (int64_t k = s; k < e; ++k) {
        float a = plo[k], b = phi[k];
        for (int64_t i = k * kPiece, end = std::min(n, (k + 1) * kPiece); i < end; ++i) {
          a = std::min(a, p[i]);
          b = std::max(b, p[i]);
        }
        plo[k] = a, phi[k] = b;
      }
    });
    for (int64_t k = 0; k < pieces; ++k) lo[0] = std::min(lo[0], plo[k]), hi[0] = std::max(hi[0], phi[k]);
    return;
  }
  parallel_for(C, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t s, int64_t e) {
    for (int64_t c = s; c < e; ++c) {
      float a = lo[c], b = hi[c];
      for (int64_t i = 0; i < n; ++i) a = std::min(a, p[c * n + i]), b = std::max(b, p[c * n + i]);
      lo[c] = a, hi[c] = b;
    }
  });
}

Tensor vec_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}
}  // namespace

void MinMaxObserver::observe(const Tensor& x_in, int64_t channels, float c) {
  const Tensor x = x_in.detach().contiguous();
  if (x.numel() == 0) return;
  std::vector<float> lo, hi;
  row_min_max(x.data<float>(), channels, x.numel() / channels, lo, hi);
  if (!observed()) {
    min_val = lo, max_val = hi;
    return;
  }
  for (size_t i = 0; i < lo.size(); ++i) {
    min_val[i] = min_val[i] + c * (lo[i] - min_val[i]);
    max_val[i] = max_val[i] + c * (hi[i] - max_val[i]);
  }
}

std::pair<float, int32_t> MinMaxObserver::affine_u8() const {
  check(observed(), "quantization: an input observer has not observed anything yet");
  const float lo = std::min(min_val[0], 0.0f), hi = std::max(max_val[0], 0.0f);
  const float scale = std::max((hi - lo) / 255.0f, kEps);
  const float zp = 0.0f - std::nearbyint(lo / scale);
  return {scale, static_cast<int32_t>(std::min(std::max(zp, 0.0f), 255.0f))};
}

std::vector<float> MinMaxObserver::symmetric_s8_scales() const {
  check(observed(), "quantization: a weight observer has not observed anything yet");
  std::vector<float> s(min_val.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const float a = std::max(-std::min(min_val[i], 0.0f), std::max(max_val[i], 0.0f));
    s[i] = std::max(a / 127.5f, kEps);
  }
  return s;
}

ModelQuant::ModelQuant(const Model& model, const QuantConfig& cfg) : config(cfg) {
  for (const std::string& l : cfg.layers)
    check(std::find_if(kQuantLinears.begin(), kQuantLinears.end(), [&](const char* n) { return l == n; }) !=
              kQuantLinears.end(),
          "qat.layers: unknown layer \"", l, "\" (expected qkvz, gate, decay.fc1, decay.fc2, context.fc1, "
          "context.fc2, attn_out, ffn.fc1 or ffn.fc2)");
  check(cfg.averaging_constant > 0 && cfg.averaging_constant <= 1, "qat.averaging_constant: ",
        cfg.averaging_constant, " is outside (0, 1]");
  blocks.resize(static_cast<size_t>(model.config().layers));
  for (size_t i = 0; i < blocks.size(); ++i)
    for (size_t k = 0; k < kQuantLinears.size(); ++k) {
      QuantSite& s = blocks[i][k];
      s.name = "blocks." + std::to_string(i) + "." + kQuantLinears[k];
      s.owner = this;
      s.act = kSiteAct[k];
      s.enabled = std::find(cfg.layers.begin(), cfg.layers.end(), kQuantLinears[k]) != cfg.layers.end();
    }
  head.name = "lm_head";
  head.owner = this;
  head.enabled = cfg.head;
}

std::vector<QuantSite*> ModelQuant::sites() {
  std::vector<QuantSite*> out;
  for (BlockQuant& b : blocks)
    for (QuantSite& s : b)
      if (s.enabled) out.push_back(&s);
  if (head.enabled) out.push_back(&head);
  return out;
}

std::vector<NamedTensor> ModelQuant::state_tensors() const {
  std::vector<NamedTensor> out;
  for (QuantSite* s : const_cast<ModelQuant*>(this)->sites())
    for (auto [obs, what] : {std::pair{&s->input, ".input"}, std::pair{&s->weight, ".weight"}})
      if (obs->observed()) {
        out.emplace_back(s->name + what + ".min", vec_tensor(obs->min_val));
        out.emplace_back(s->name + what + ".max", vec_tensor(obs->max_val));
      }
  return out;
}

void ModelQuant::load_state(const std::vector<NamedTensor>& tensors) {
  auto find = [&](const std::string& n) -> const Tensor* {
    for (const auto& [name, t] : tensors)
      if (name == n) return &t;
    return nullptr;
  };
  for (QuantSite* s : sites())
    for (auto [obs, what] : {std::pair{&s->input, ".input"}, std::pair{&s->weight, ".weight"}}) {
      const Tensor* lo = find(s->name + what + ".min");
      const Tensor* hi = find(s->name + what + ".max");
      obs->min_val.clear(), obs->max_val.clear();
      if (!lo && !hi) continue;
      check(lo && hi && lo->shape() == hi->shape() && lo->dtype() == DType::f32 && lo->dim() == 1,
            "quantization state: observer ", s->name, what, " is incomplete or malformed");
      const Tensor a = lo->contiguous(), b = hi->contiguous();
      obs->min_val.assign(a.data<float>(), a.data<float>() + a.numel());
      obs->max_val.assign(b.data<float>(), b.data<float>() + b.numel());
    }
}

std::pair<Tensor, Tensor> quantize_weight(const QuantSite& site, const Tensor& w_in) {
  const Tensor w = w_in.detach().contiguous();
  const int64_t N = w.size(0), K = w.size(1);
  const std::vector<float> scales = site.weight.symmetric_s8_scales();
  check(static_cast<int64_t>(scales.size()) == N, "quantize_weight: ", site.name, " has ", scales.size(),
        " weight scales for ", N, " rows");
  Tensor q = Tensor::empty({N, K}, DType::i8);
  const float* p = w.data<float>();
  int8_t* out = q.data<int8_t>();
  for (int64_t n = 0; n < N; ++n) {
    const float inv = 1.0f / scales[static_cast<size_t>(n)];
    for (int64_t k = 0; k < K; ++k)
      out[n * K + k] = static_cast<int8_t>(std::min(std::max(std::nearbyint(p[n * K + k] * inv), -128.0f), 127.0f));
  }
  return {q, vec_tensor(scales)};
}

void ModelQuant::to_int8(const Model& model) {
  for (QuantSite* s : sites()) {
    const bool tied_head = s == &head && model.config().tie_embeddings;
    const Tensor w = model.parameter(tied_head ? "embed.weight" : s->name + ".weight");
    const Tensor b = s == &head ? Tensor() : model.parameter(s->name + ".bias");
    auto [q, scales] = quantize_weight(*s, w);
    auto [xs, xz] = s->input.affine_u8();
    s->int8 = kernels::Int8Linear(q, scales, b.defined() ? b.detach() : b, xs, xz, s->act);
  }
  mode = QuantMode::int8;
}

Tensor quant_linear(QuantSite& site, const Tensor& x, const Tensor& w, const Tensor& b, Activation act) {
  const ModelQuant& q = *site.owner;
  // The quantization kernels do not go through autograd::dispatch yet: a
  // captured graph would silently skip them.
  check(!autograd::capturing(), "quant_linear: ", site.name,
        ": quantized linears cannot be captured into a graph yet; run them eagerly");
  if (q.mode == QuantMode::int8) {
    check(site.int8.defined(), "quant_linear: ", site.name, " has no int8 kernel (ModelQuant::to_int8)");
    check(!autograd::needs_grad({x}), "quant_linear: int8 inference of ", site.name,
          " has no backward (use it under NoGradGuard)");
    const Tensor x2 = as_rows(x);
    Tensor y = Tensor::empty({x2.size(0), site.int8.out_features()});
    site.int8.forward(x2, y);
    Shape shape = x.shape();
    shape.back() = y.size(1);
    return y.reshape(shape);
  }
  const bool observe = q.mode == QuantMode::observe || !site.input.observed() ||
                       (q.observers_enabled && autograd::grad_enabled());
  if (observe) {
    site.input.observe(x, 1, q.config.averaging_constant);
    site.weight.observe(w, w.size(0), q.config.averaging_constant);
  }
  if (q.mode == QuantMode::observe) return ops::linear(x, w, b, act);
  const auto [xs, xz] = site.input.affine_u8();
  const Tensor ws = vec_tensor(site.weight.symmetric_s8_scales()), wz = Tensor::zeros({w.size(0)}, DType::i32);
  return ops::linear(ops::fake_quantize_per_tensor_affine(x, xs, xz, 0, 255),
                     ops::fake_quantize_per_channel_affine(w, ws, wz, 0, -128, 127), b, act);
}

}  // namespace mmrec
