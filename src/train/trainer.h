// The training loop behind tools/mmrec-train: model, data, AdamW, schedules,
// evaluation, metrics, checkpoints and exact resume. It prints nothing: the
// caller gets notes and per-step results through hooks.
//
//   Trainer t(TrainConfig::load("configs/tiny.json"), {.run_dir = "runs/tiny"});
//   RunSummary s = t.run({.on_step = [](const StepResult& r) { ... },
//                         .should_stop = [] { return g_interrupted != 0; }});
//
// Resuming from the newest checkpoint of the run directory continues with
// bit-identical losses: weights, AdamW moments, step, plateau state, smoothed
// loss and the data RNG position are all restored exactly.
//
// With TrainerOptions::job, the trainer is one rank of a data-parallel job:
// each rank trains on its share of every batch, gradients are averaged over
// the ranks, rank 0 writes the metrics and checkpoints, and every rank must
// make the same calls (run, train_step, evaluate, save_checkpoint).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "models/model.h"
#include "tensor/export.h"
#include "tensor/random.h"
#include "train/compiled_step.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/loss_scaler.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/tokenizer.h"
#include "train/train_config.h"

MMREC_API_BEGIN

namespace mmrec {

enum class ResumeMode {
  config,   // checkpoint.resume of the config ("never": a run dir with checkpoints is an error)
  require,  // --resume: continue from the newest checkpoint; none is an error
  fresh,    // --fresh: delete the run dir's checkpoints and metrics, start over
};

struct TrainerOptions {
  std::string run_dir{};  // "" = config log.run_dir, else runs/train
  ResumeMode resume = ResumeMode::config;
  std::string title{};    // of the loss chart
  bool strict_resume = false;  // a damaged newest checkpoint is an error (else: the newest intact one)
  // Data parallel: the MPI job this trainer is one rank of (nullptr: a job
  // of one process), the gradient buckets' size, and whether they start
  // during backward (false: all after it, the reference for the overlap).
  const Distributed* job = nullptr;
  int64_t bucket_bytes = 4 << 20;
  bool overlap = true;
};

struct StepResult {
  int64_t step = 0;         // optimizer steps done (1 after the first)
  double loss = 0;          // mean over the step's micro-batches
  double smooth_loss = 0;   // bias-corrected EMA (schedule.plateau.smoothing)
  double lr = 0;
  double grad_norm = 0;     // before clipping
  int64_t tokens = 0;       // predicted tokens in the step, over all ranks
  double seconds = 0;       // wall time of the step
  size_t peak_bytes = 0;    // mmrec allocator peak during the step
  size_t rss_bytes = 0;     // resident set after the step
  ReduceStats reduce;       // the gradient all-reduce (zeros in a job of one)
  bool skipped = false;     // amp: inf/nan gradients, no update (the scale backed off)
  double loss_scale = 0;    // amp: the scale after the step (0 without amp)
};

struct EvalResult {
  int64_t step = 0;
  double loss = 0;   // mean cross-entropy per token (nats)
  double bpb = 0;    // bits per byte of the held-out text
  int64_t tokens = 0;
  double seconds = 0;
};

struct RunHooks {
  std::function<void(const StepResult&)> on_step;
  std::function<void(const EvalResult&)> on_eval;
  std::function<void(const std::string& dir)> on_checkpoint;
  std::function<bool()> should_stop;  // polled after every step
};

struct RunSummary {
  int64_t start_step = 0, end_step = 0, total_steps = 0;
  bool interrupted = false;
  double train_seconds = 0;   // in train steps (this session)
  double wall_seconds = 0;
  double tokens_per_s = 0;    // predicted tokens (all ranks) / train_seconds
  int world_size = 1;         // ranks of the job
  double allreduce_wait_s = 0;   // per step: all-reduce time not hidden behind backward
  double allreduce_total_s = 0;  // per step: first bucket started .. last done
  int64_t allreduce_bytes = 0;   // gradient bytes each rank reduces per step
  int allreduce_buckets = 0;
  EvalResult final_eval;      // step 0 when no evaluation ran
  std::string last_checkpoint;
  size_t peak_bytes = 0;      // mmrec::alloc peak
  size_t step_peak_bytes = 0; // the largest allocator peak of a training step
  size_t peak_rss_bytes = 0;  // the largest resident set after a step
};

class Trainer {
 public:
  Trainer(const TrainConfig& cfg, const TrainerOptions& opt,
          std::function<void(const std::string&)> note = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Runs until train.steps or until should_stop; checkpoints at the end.
  RunSummary run(const RunHooks& hooks = {});

  // The pieces run() is made of.
  StepResult train_step();
  EvalResult evaluate();
  std::string save_checkpoint();  // returns its directory

  int64_t step() const { return step_; }
  int64_t total_steps() const { return cfg_.train.steps; }
  bool resumed() const { return resumed_from_ >= 0; }
  int64_t resumed_from() const { return resumed_from_; }
  double next_lr() const;
  const Model& model() const { return *model_; }
  const TokenDataset& data() const { return data_; }
  const Tokenizer& tokenizer() const { return tok_; }
  const std::string& run_dir() const { return run_dir_; }
  const TrainConfig& config() const { return cfg_; }
  // The config as checkpoints record it (model section resolved).
  nlohmann::json effective_config() const;

 private:
  void resume_from(const std::string& dir);
  void setup(const TrainerOptions& opt);
  void make_compiled_step();  // train.compile: (re)captures compiled_
  std::string save_checkpoint_here();
  void note(const std::string& s) const {
    if (note_ && job_->is_root()) note_(s);
  }

  TrainConfig cfg_;
  std::unique_ptr<Distributed> own_job_;  // when the options name none
  const Distributed* job_ = nullptr;
  std::unique_ptr<GradReducer> reducer_;  // in a job of several ranks
  std::string run_dir_, title_;
  std::function<void(const std::string&)> note_;
  Tokenizer tok_;
  TokenDataset data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<AdamW> opt_;
  // train.compile: the micro-batch graph (forward, loss, backward into fixed
  // gradient buffers) and the update graph (clipping, AdamW, zeroing).
  std::unique_ptr<CompiledStep> compiled_;  // train.compile
  int qat_phase_ = 0;  // the QAT phase (qat_phase) the compiled step was captured in
  std::unique_ptr<LossScaler> scaler_;  // with train.amp "bf16"
  LrSchedule schedule_;
  ReduceLROnPlateau plateau_;
  Generator data_rng_;
  MetricsLog metrics_;
  int64_t step_ = 0, resumed_from_ = -1;
  int64_t tokens_seen_ = 0;
  double ema_ = 0;            // unbiased by 1 - smoothing^ema_count_
  int64_t ema_count_ = 0;
  int64_t last_checkpoint_step_ = -1;
  std::string last_checkpoint_;
  EvalResult last_eval_;
};

// The first key path where two JSON values differ ("" when equal), e.g.
// "train.lr".
std::string first_json_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path = "");

}  // namespace mmrec

MMREC_API_END
