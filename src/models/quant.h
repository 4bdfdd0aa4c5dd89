// Quantization of a model's linear layers (PyTorch's eager QAT recipe):
// fake quantization for quantization-aware training, observation only for
// post-training calibration, and real int8 inference on oneDNN.
//
//   auto q = std::make_shared<ModelQuant>(model, QuantConfig{});   // every block linear
//   q->mode = QuantMode::fake;  model.set_quantization(q);          // QAT forward/backward
//   q->mode = QuantMode::observe;                                   // calibrate (f32 forward)
//   save_int8_model("m.int8.safetensors", model);                   // export
//   Model m = load_model("m.int8.safetensors");                     // runs on int8 matmuls
//
// Each quantized linear y = act(x Wᵀ + b) has two moving-average min/max
// observers (PyTorch MovingAverageMinMaxObserver / ...PerChannel...): on
// the input (per tensor, affine u8 [0, 255]) and on the weight (per output
// channel, symmetric s8 [-128, 127], zero point 0). An observation sets min/max
// the first time and then moves them by c (averaging_constant) towards the
// batch's min/max. Quantization parameters (PyTorch calculate_qparams):
//   u8 affine:    lo = min(min, 0), hi = max(max, 0), scale = max((hi - lo) / 255, ε),
//                 zero_point = clamp(0 - round(lo / scale), 0, 255)
//   s8 symmetric: a = max(-min, max), scale = max(a / 127.5, ε), zero_point = 0
// with ε = 2^-23 (float32 epsilon) and round half to even.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/model.h"
#include "ops/kernels/linear_int8.h"
#include "ops/linear.h"

namespace mmrec {

// The block linears that can be quantized, in block order (names as in the
// parameter table: blocks.{i}.<name>.weight).
inline const std::array<const char*, 9> kQuantLinears = {
    "qkvz", "gate", "decay.fc1", "decay.fc2", "context.fc1", "context.fc2", "attn_out", "ffn.fc1", "ffn.fc2"};
enum class QuantSiteId { qkvz, gate, decay_fc1, decay_fc2, context_fc1, context_fc2, attn_out, ffn_fc1, ffn_fc2 };

struct QuantConfig {
  std::vector<std::string> layers{kQuantLinears.begin(), kQuantLinears.end()};  // subset of kQuantLinears
  bool head = false;                // also the output head (lm_head, or the tied embedding)
  float averaging_constant = 0.01f; // of both observers
};

enum class QuantMode {
  fake,     // QAT: observe (while grad mode is on and observers are enabled), then fake-quantize x and W
  observe,  // post-training calibration: observe x and W, run in f32
  int8,     // inference: u8 x s8 oneDNN matmuls (built by load_model from an int8 file, or by to_int8)
};

// min/max per channel (1 channel: per tensor), held in tensors so that a
// captured QAT step updates them by kernel (ops::observe_min_max); +inf / -inf
// until the first observation.
struct MinMaxObserver {
  Tensor min_val, max_val;  // f32 [C]
  bool seen = false;        // observed, or loaded, at least once (host side)
  bool observed() const { return seen; }
  void init(int64_t channels);  // C channels, never observed
  void reset();                 // back to never observed, in place (a captured graph may hold the buffers)
  // x as [C, n / C] rows (C = 1: the whole tensor); sized on first use.
  void observe(const Tensor& x, int64_t channels, float averaging_constant);
  // Host copies and assignment (state files, int8 files).
  std::vector<float> min() const;
  std::vector<float> max() const;
  void set(const std::vector<float>& lo, const std::vector<float>& hi);
  std::pair<float, int32_t> affine_u8() const;     // (scale, zero_point) of channel 0
  std::vector<float> symmetric_s8_scales() const;  // one per channel
};

struct ModelQuant;

struct QuantSite {
  std::string name;  // "blocks.0.qkvz", "lm_head"
  const ModelQuant* owner = nullptr;  // its mode and observer settings
  bool enabled = false;
  ops::Activation act = ops::Activation::none;
  MinMaxObserver input, weight;
  kernels::Int8Linear int8;  // QuantMode::int8
  // ObserverPass::record / replay: (input scale, zero point, weight scales,
  // zero points) of each call, and the next one to replay. A site called
  // once per forward replays its one entry in every segment; the gate of the
  // "sequential" recurrence, called per token, replays them in turn.
  std::vector<std::array<Tensor, 4>> recorded;
  size_t cursor = 0;
};

using BlockQuant = std::array<QuantSite, 9>;  // indexed by QuantSiteId

// Sites point at their owner: make one with std::make_shared, never copy it.
struct ModelQuant {
  ModelQuant(const Model& model, const QuantConfig& config);
  ModelQuant(const ModelQuant&) = delete;
  ModelQuant& operator=(const ModelQuant&) = delete;
  QuantConfig config;
  QuantMode mode = QuantMode::fake;
  bool observers_enabled = true;      // freeze_observers_step turns this off
  // "chunk" checkpointing: the observers move in a forward of their own that
  // records each site call's scales and zero points (record), which the
  // segments and their recomputations then use in the same order (replay).
  enum class ObserverPass { normal, record, replay } pass = ObserverPass::normal;
  void clear_recorded();                      // before a record pass
  std::vector<size_t> replay_cursors();       // every site's position in its recording
  void set_replay_cursors(const std::vector<size_t>& at);
  std::vector<BlockQuant> blocks;  // [layer]
  QuantSite head;

  std::vector<QuantSite*> sites();  // every enabled site, blocks then head
  // Observer state as tensors named "<site>.{input,weight}.{min,max}" (resume).
  std::vector<NamedTensor> state_tensors() const;
  void load_state(const std::vector<NamedTensor>& tensors);  // Error naming a missing or mismatched tensor
  // Builds the int8 kernels of every enabled site from the observed scales
  // and the model's current weights, and switches mode to int8.
  void to_int8(const Model& model, kernels::ZeroPointMode zero_point = kernels::ZeroPointMode::folded);
};

// act(x Wᵀ + b) at an enabled site, in its owner's mode (x [..., In] f32 or
// bf16, read as f32; w f32: under amp the f32 master, never the bf16 copy).
// Observers are mutable state: one model's forward at a time per ModelQuant
// while observing (training, calibration); int8 inference is thread-safe.
Tensor quant_linear(QuantSite& site, const Tensor& x, const Tensor& w, const Tensor& b, ops::Activation act);

// Sets q->pass for a scope (nothing when q is null).
class ObserverPassScope {
 public:
  ObserverPassScope(ModelQuant* q, ModelQuant::ObserverPass pass) : q_(q) {
    if (q_) prev_ = q_->pass, q_->pass = pass;
  }
  ~ObserverPassScope() {
    if (q_) q_->pass = prev_;
  }
  ObserverPassScope(const ObserverPassScope&) = delete;
  ObserverPassScope& operator=(const ObserverPassScope&) = delete;

 private:
  ModelQuant* q_;
  ModelQuant::ObserverPass prev_ = ModelQuant::ObserverPass::normal;
};

// The observer state of one block's sites. Gradient checkpointing takes it
// before a block's first run and restores it before the recomputation, which
// then observes exactly as the first run did (same ranges, same final state).
struct ObserverSnapshot {
  std::vector<Tensor> tensors;
  std::vector<bool> seen;
};
ObserverSnapshot snapshot_observers(const BlockQuant& block);
void restore_observers(BlockQuant& block, const ObserverSnapshot& snapshot);
// True when the model's quantization runs fake quantization (QAT).
bool fake_quantizing(const ModelQuant* q);

// The s8 weight and its scales from the site's weight observer (as the
// fake-quant forward rounds it): w [N, K] f32 -> (i8 [N, K], f32 [N]).
std::pair<Tensor, Tensor> quantize_weight(const QuantSite& site, const Tensor& w);

// Writes the model with every enabled site in int8 (documented names, README
// "Quantization"); every observer of an enabled site must have observed.
void save_int8_model(const std::string& path, const Model& model);
// The int8 branch of load_model (files whose "format" is "mmrec-int8").
struct Safetensors;
Model load_int8_model(const Safetensors& file, const ModelConfig& config);

}  // namespace mmrec
