// The training config: JSON sections model, data, train, schedule,
// checkpoint and log, with defaults (documented in the README, "Training").
//
//   TrainConfig c = TrainConfig::load("configs/tiny.json");
//   // errors name the key path: "train.lr: expected a number, got \"x\""
//   ModelConfig m = ModelConfig::from_json(c.model);   // the model section, parsed by src/models
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

struct DataConfig {
  std::string source = "files";      // "files" | "synthetic"
  std::vector<std::string> paths;    // files or directories (source "files"), relative to the working dir
  std::string format = "auto";       // "auto" (.jsonl/.json -> jsonl) | "text" | "jsonl"
  std::string text_field = "text";   // the JSONL field holding a document
  std::string tokenizer = "byte";    // "byte" or the path of a tokenizer JSON (mmrec-tokenize)
  double val_fraction = 0.05;        // tail of the token stream held out for validation
  std::string cache_dir;             // token cache; "" = the run directory
  int64_t synthetic_bytes = 262144;  // size of the generated corpus (source "synthetic")
  int64_t synthetic_seed = 1;
};

struct OptimConfig {  // the `train` section
  int64_t steps = 1000;
  int64_t batch_size = 8;   // windows per micro-batch
  int64_t seq_len = 256;    // predicted tokens per window (a window holds seq_len + 1)
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  double lr = 3e-4;         // peak learning rate
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;   // max global grad norm; 0 disables
  bool decay_embeddings = false;
  bool decay_norms_and_biases = false;
  int64_t seed = 1;         // model init and data sampling
  int64_t threads = 0;      // 0: all cores
  bool compile = true;      // capture the step once, then replay it (autograd/compile.h)
  std::string checkpointing = "none";  // "none" | "block" | "chunk" (gradient checkpointing)
  int64_t checkpoint_tokens = 0;       // "chunk": tokens per recomputed segment (0: model.chunk_size)
  std::string amp = "none"; // "none" | "bf16" (mixed precision, dynamic loss scaling)
};

struct PlateauConfig {  // PyTorch ReduceLROnPlateau
  bool enabled = false;
  std::string monitor = "val_loss";  // "val_loss" | "train_loss" (smoothed)
  std::string mode = "min";          // "min" | "max"
  double factor = 0.1;
  int64_t patience = 10;
  double threshold = 1e-4;
  std::string threshold_mode = "rel";  // "rel" | "abs"
  int64_t cooldown = 0;
  double min_lr = 0.0;
  double eps = 1e-8;
  double smoothing = 0.9;  // EMA factor of the train loss (monitor "train_loss")
};

struct ScheduleConfig {
  std::string kind = "cosine";  // "constant" | "cosine" | "linear"
  int64_t warmup_steps = 0;
  double min_lr = 0.0;          // where cosine/linear decay ends
  PlateauConfig plateau;
};

struct CheckpointConfig {
  int64_t interval = 500;         // steps between checkpoints (0: only at the end)
  int64_t keep = 3;               // newest checkpoints kept (0: all)
  std::string resume = "never";   // "never" | "auto"
  std::string dtype = "f32";      // of the final model.safetensors: "f32" | "bf16"
};

struct LogConfig {
  std::string run_dir;             // "" = runs/<config file name>
  int64_t interval = 10;           // steps between progress and metrics lines
  int64_t eval_interval = 100;     // steps between evaluations (0: only at the end)
  int64_t eval_batches = 8;        // validation batches of train.batch_size windows
  std::string progress = "auto";   // "auto" (live line on a terminal) | "live" | "lines" | "none"
};

struct QatConfig {  // the `qat` section (absent or null: off); README "Quantization"
  bool enabled = false;
  int64_t start_step = 0;              // fake quantization from this step (0-based) on
  int64_t freeze_observers_step = -1;  // observers stop moving from this step on (-1: never)
  std::vector<std::string> layers{"qkvz", "gate", "decay.fc1", "decay.fc2", "context.fc1",
                                  "context.fc2", "attn_out", "ffn.fc1", "ffn.fc2"};
  bool head = false;                   // also quantize the output head
  double averaging_constant = 0.01;    // of the moving-average min/max observers
};

struct TrainConfig {
  nlohmann::json model = nlohmann::json::object();  // parsed by ModelConfig::from_json
  DataConfig data;
  OptimConfig train;
  ScheduleConfig schedule;
  CheckpointConfig checkpoint;
  LogConfig log;
  QatConfig qat;

  static TrainConfig from_json(const nlohmann::json& j);
  // Reads and parses a file; JSON syntax errors name the file.
  static TrainConfig load(const std::string& path);
  // Every field, defaults resolved (the model section as given).
  nlohmann::json to_json() const;
};

// "runs/<stem of config_path>".
std::string default_run_dir(const std::string& config_path);

}  // namespace mmrec

MMREC_API_END
