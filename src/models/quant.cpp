// Observers, fake-quant and int8 linears at a model's quantization sites.
#include "models/quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "ops/fake_quant.h"
#include "ops/kernels/fake_quant.h"
#include "ops/linear_int8.h"
#include "ops/view.h"
#include "tensor/threads.h"

namespace mmrec {
namespace {
using ops::Activation;

// The activation each block linear fuses (as block.cpp calls them).
constexpr std::array<Activation, 9> kSiteAct = {Activation::none,    Activation::none, Activation::gelu,
                                                Activation::sigmoid, Activation::gelu, Activation::sigmoid,
                                                Activation::none,    Activation::gelu, Activation::none};

Tensor vec_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}
}  // namespace

void MinMaxObserver::init(int64_t channels) {
  min_val = Tensor::full({channels}, std::numeric_limits<float>::infinity());
  max_val = Tensor::full({channels}, -std::numeric_limits<float>::infinity());
  seen = false;
}

void MinMaxObserver::reset() {
  if (!min_val.defined()) return;
  min_val.fill(std::numeric_limits<float>::infinity());
  max_val.fill(-std::numeric_limits<float>::infinity());
  seen = false;
}

void MinMaxObserver::observe(const Tensor& x, int64_t channels, float c) {
  if (!min_val.defined()) init(channels);
  check(min_val.numel() == channels, "observer: ", channels, " channels for an observer of ", min_val.numel());
  if (x.numel() == 0) return;
  ops::observe_min_max(x, min_val, max_val, c);
  seen = true;
}

std::vector<float> MinMaxObserver::min() const { return min_val.defined() ? min_val.to_vector() : std::vector<float>{}; }
std::vector<float> MinMaxObserver::max() const { return max_val.defined() ? max_val.to_vector() : std::vector<float>{}; }

void MinMaxObserver::set(const std::vector<float>& lo, const std::vector<float>& hi) {
  check(lo.size() == hi.size() && !lo.empty(), "observer: min and max of different sizes");
  if (!min_val.defined() || min_val.numel() != static_cast<int64_t>(lo.size())) init(static_cast<int64_t>(lo.size()));
  // In place: a captured graph may hold these buffers.
  std::copy(lo.begin(), lo.end(), min_val.data<float>());
  std::copy(hi.begin(), hi.end(), max_val.data<float>());
  seen = true;
}

std::pair<float, int32_t> MinMaxObserver::affine_u8() const {
  check(observed(), "quantization: an input observer has not observed anything yet");
  return kernels::qparams_affine_u8(min_val.data<float>()[0], max_val.data<float>()[0]);
}

std::vector<float> MinMaxObserver::symmetric_s8_scales() const {
  check(observed(), "quantization: a weight observer has not observed anything yet");
  std::vector<float> s(static_cast<size_t>(min_val.numel()));
  for (size_t i = 0; i < s.size(); ++i) s[i] = kernels::qparams_symmetric_s8(min_val.data<float>()[i], max_val.data<float>()[i]);
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
      if (s.enabled) s.input.init(1), s.weight.init(model.parameter(s.name + ".weight").size(0));
    }
  head.name = "lm_head";
  head.owner = this;
  head.enabled = cfg.head;
  if (head.enabled)
    head.input.init(1), head.weight.init(model.parameter(model.config().tie_embeddings ? "embed.weight" : "lm_head.weight").size(0));
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
        out.emplace_back(s->name + what + ".min", obs->min_val.clone());
        out.emplace_back(s->name + what + ".max", obs->max_val.clone());
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
      if (!lo && !hi) {
        obs->reset();
        continue;
      }
      check(lo && hi && lo->shape() == hi->shape() && lo->dtype() == DType::f32 && lo->dim() == 1,
            "quantization state: observer ", s->name, what, " is incomplete or malformed");
      check(!obs->min_val.defined() || obs->min_val.numel() == lo->numel(), "quantization state: observer ", s->name,
            what, " has ", lo->numel(), " channels, expected ", obs->min_val.numel());
      obs->set(lo->to_vector(), hi->to_vector());
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

void ModelQuant::to_int8(const Model& model, kernels::ZeroPointMode zero_point) {
  for (QuantSite* s : sites()) {
    const bool tied_head = s == &head && model.config().tie_embeddings;
    const Tensor w = model.parameter(tied_head ? "embed.weight" : s->name + ".weight");
    const Tensor b = s == &head ? Tensor() : model.parameter(s->name + ".bias");
    auto [q, scales] = quantize_weight(*s, w);
    auto [xs, xz] = s->input.affine_u8();
    s->int8 = kernels::Int8Linear(q, scales, b.defined() ? b.detach() : b, xs, xz, s->act, zero_point);
  }
  mode = QuantMode::int8;
}

ObserverSnapshot snapshot_observers(const BlockQuant& block) {
  ObserverSnapshot snap;
  for (const QuantSite& s : block)
    if (s.enabled)
      for (const MinMaxObserver* o : {&s.input, &s.weight}) {
        snap.tensors.push_back(o->min_val.clone());
        snap.tensors.push_back(o->max_val.clone());
        snap.seen.push_back(o->seen);
      }
  return snap;
}

void restore_observers(BlockQuant& block, const ObserverSnapshot& snap) {
  size_t i = 0;
  for (QuantSite& s : block)
    if (s.enabled)
      for (MinMaxObserver* o : {&s.input, &s.weight}) {
        o->min_val.copy_from(snap.tensors[2 * i]);
        o->max_val.copy_from(snap.tensors[2 * i + 1]);
        o->seen = snap.seen[i];
        ++i;
      }
}

void ModelQuant::clear_recorded() {
  for (QuantSite* s : sites()) s->recorded.clear(), s->cursor = 0;
}

std::vector<size_t> ModelQuant::replay_cursors() {
  std::vector<size_t> at;
  for (QuantSite* s : sites()) at.push_back(s->cursor);
  return at;
}

void ModelQuant::set_replay_cursors(const std::vector<size_t>& at) {
  size_t i = 0;
  for (QuantSite* s : sites()) s->cursor = at.at(i++);
}

bool fake_quantizing(const ModelQuant* q) { return q && q->mode == QuantMode::fake; }

Tensor quant_linear(QuantSite& site, const Tensor& x_in, const Tensor& w, const Tensor& b, Activation act) {
  const ModelQuant& q = *site.owner;
  const Tensor x = ops::cast(x_in, DType::f32);
  if (q.mode == QuantMode::int8) {
    check(site.int8.defined(), "quant_linear: ", site.name, " has no int8 kernel (ModelQuant::to_int8)");
    check(!autograd::needs_grad({x}), "quant_linear: int8 inference of ", site.name,
          " has no backward (use it under NoGradGuard)");
    return ops::linear_int8(x, site.int8);
  }
  check(w.dtype() == DType::f32, "quant_linear: ", site.name, ": the weight must be f32, got ", dtype_name(w.dtype()));
  std::array<Tensor, 4> qp;  // input scale, zero point; weight scales, zero points
  if (q.pass == ModelQuant::ObserverPass::replay) {
    check(!site.recorded.empty() && (site.recorded.size() == 1 || site.cursor < site.recorded.size()),
          "quant_linear: ", site.name, ": call ", site.cursor, " has no recorded scales (", site.recorded.size(),
          " recorded)");
    qp = site.recorded.size() == 1 ? site.recorded[0] : site.recorded[site.cursor++];
  } else {
    const bool observe = q.mode == QuantMode::observe || q.pass == ModelQuant::ObserverPass::record ||
                         !site.input.observed() || (q.observers_enabled && autograd::grad_enabled());
    if (observe) {
      site.input.observe(x, 1, q.config.averaging_constant);
      site.weight.observe(w, w.size(0), q.config.averaging_constant);
    }
    if (q.mode == QuantMode::observe) return ops::linear(x, w, b, act);
    // scale and zero point by kernel from the observers' state: a captured
    // step replays them with the ranges of each step.
    std::tie(qp[0], qp[1]) = ops::quant_params(site.input.min_val, site.input.max_val, ops::QuantScheme::affine_u8);
    std::tie(qp[2], qp[3]) =
        ops::quant_params(site.weight.min_val, site.weight.max_val, ops::QuantScheme::symmetric_s8);
    if (q.pass == ModelQuant::ObserverPass::record) site.recorded.push_back(qp);
  }
  return ops::linear(ops::fake_quantize_per_tensor_affine(x, qp[0], qp[1], 0, 255),
                     ops::fake_quantize_per_channel_affine(w, qp[2], qp[3], 0, -128, 127), b, act);
}

}  // namespace mmrec
