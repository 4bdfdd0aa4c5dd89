#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "autograd/tape.h"
#include "models/profile.h"
#include "models/quant.h"
#include "models/safetensors.h"
#include "ops/elementwise.h"
#include "tensor/allocator.h"
#include "train/checkpoint.h"
#include "train/fileio.h"
#include "train/memory_estimate.h"
#include "train/qat.h"

namespace mmrec {
namespace fs = std::filesystem;

namespace {
constexpr const char* kModelFile = kCheckpointModelFile;
constexpr const char* kStateFile = kCheckpointStateFile;
constexpr const char* kInt8File = "model.int8.safetensors";  // written at the end of a QAT run
constexpr uint64_t kDataStream = 0xD1B54A32D192ED03ull;  // data RNG seed = train.seed ^ this

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Tokenizer make_tokenizer(const DataConfig& d) {
  if (d.tokenizer == "byte") return Tokenizer::byte_level();
  try {
    return Tokenizer::load(d.tokenizer);
  } catch (const Error& e) {
    fail("data.tokenizer: ", e.what());
  }
}

}  // namespace

std::string first_json_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string p = path.empty() ? it.key() : path + "." + it.key();
      if (!b.contains(it.key())) return p;
      std::string d = first_json_difference(it.value(), b[it.key()], p);
      if (!d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) return path.empty() ? it.key() : path + "." + it.key();
    return "";
  }
  if (a == b) return "";
  return path.empty() ? std::string("(root)") : path;
}

Trainer::Trainer(const TrainConfig& cfg, const TrainerOptions& opt, std::function<void(const std::string&)> on_note)
    : cfg_(cfg),
      run_dir_(!opt.run_dir.empty() ? opt.run_dir : !cfg.log.run_dir.empty() ? cfg.log.run_dir : "runs/train"),
      title_(opt.title),
      note_(std::move(on_note)),
      schedule_(cfg.schedule, cfg.train.lr, cfg.train.steps),
      plateau_(cfg.schedule.plateau, cfg.train.lr),
      data_rng_(static_cast<uint64_t>(cfg.train.seed) ^ kDataStream) {
  if (opt.job) {
    job_ = opt.job;
  } else {
    own_job_ = std::make_unique<Distributed>();
    job_ = own_job_.get();
  }
  setup(opt);
}

// In a job of several ranks every rank runs this; rank 0 alone deletes
// (--fresh), makes the token cache first (the others then find it) and opens
// the metrics; an error on any rank is raised on all of them.
void Trainer::setup(const TrainerOptions& opt) {
  const bool root = job_->is_root();
  ModelConfig mc;
  std::vector<CheckpointInfo> existing;
  const std::string cache_dir = cfg_.data.cache_dir.empty() ? run_dir_ : cfg_.data.cache_dir;
  job_->together([&] {
    mc = ModelConfig::from_json(cfg_.model);
    check_training_memory(estimate_training_memory(mc, cfg_.train), physical_memory_bytes(), mc, cfg_.train);
    tok_ = make_tokenizer(cfg_.data);
    check(mc.vocab_size >= tok_.vocab_size(), "model.vocab_size: ", mc.vocab_size,
          " is smaller than the vocabulary of data.tokenizer (", tok_.vocab_size(), ")");
    if (title_.empty()) title_ = fs::path(run_dir_).filename().string();

    // Which checkpoint to start from.
    existing = list_checkpoints(run_dir_);
    if (opt.resume == ResumeMode::fresh) {
      if (root) {
        std::error_code ec;
        fs::remove_all(checkpoints_root(run_dir_), ec);
        for (const char* f : {"metrics.jsonl", "loss.svg", kModelFile, kInt8File}) fs::remove(fs::path(run_dir_) / f, ec);
        if (!existing.empty())
          note("--fresh: removed " + std::to_string(existing.size()) + " checkpoint(s) of " + run_dir_);
      }
      existing.clear();
    }
    const bool want_resume = opt.resume == ResumeMode::require || cfg_.checkpoint.resume == "auto";
    if (opt.resume == ResumeMode::require)
      check(!existing.empty(), "--resume: no checkpoint in ", checkpoints_root(run_dir_));
    if (!existing.empty() && !want_resume)
      fail(run_dir_, " already holds checkpoints (newest: step ", existing.back().step,
           "): pass --resume to continue that run, or --fresh to start over");
    fs::create_directories(run_dir_);
    if (root) data_ = TokenDataset::prepare(cfg_.data, tok_, cache_dir, note_);
  });
  // Every rank must resume from the same checkpoint.
  double newest[2] = {existing.empty() ? -1.0 : static_cast<double>(existing.back().step), 0};
  newest[1] = -newest[0];
  job_->max(newest, 2);
  job_->together([&] {
    check(newest[0] == -newest[1], "the ranks see different checkpoints in ", checkpoints_root(run_dir_),
          " (newest step ", -newest[1], " to ", newest[0], "): every rank needs the same run directory");
    if (!root) data_ = TokenDataset::prepare(cfg_.data, tok_, cache_dir);
    data_.check_fits(cfg_.train.seq_len + 1, "train.seq_len " + std::to_string(cfg_.train.seq_len) +
                                                 ", data.val_fraction " + std::to_string(cfg_.data.val_fraction));

    model_ = std::make_unique<Model>(mc, static_cast<uint64_t>(cfg_.train.seed));
    check(cfg_.train.checkpoint_tokens % mc.chunk_size == 0, "train.checkpoint_tokens: ", cfg_.train.checkpoint_tokens,
          " is not a multiple of model.chunk_size ", mc.chunk_size);
    model_->set_checkpointing({Checkpointing::parse(cfg_.train.checkpointing), cfg_.train.checkpoint_tokens});
    if (cfg_.train.amp == "bf16") {
      model_->use_bf16(/*keep_f32=*/true);
      scaler_ = std::make_unique<LossScaler>();
    }
    opt_ = std::make_unique<AdamW>(model_->parameters(), decay_mask(model_->parameters(), cfg_.train), cfg_.train);
    if (job_->size() > 1)
      reducer_ = std::make_unique<GradReducer>(*job_, model_->parameters(), opt.bucket_bytes, opt.overlap);

    if (!existing.empty()) {
      resume_from(choose_resume_checkpoint(existing, opt.strict_resume, note_));
    } else if (root) {
      metrics_ = MetricsLog((fs::path(run_dir_) / "metrics.jsonl").string(), -1);
    }
  });
  // The step is captured and replayed; under mpirun the gradients are
  // all-reduced between the micro-batch and update graphs (after backward:
  // a replay runs no tape, so no bucket starts during it).
  if (cfg_.train.compile) make_compiled_step();
}

// Captured again when the QAT phase changes (qat_phase): the graph holds it.
void Trainer::make_compiled_step() {
  qat_phase_ = qat_phase(*model_);
  compiled_ = std::make_unique<CompiledStep>(*model_, *opt_, scaler_.get(), cfg_.train.grad_clip,
                                             cfg_.train.grad_accum, effective_config().dump());
}

Trainer::~Trainer() = default;

nlohmann::json Trainer::effective_config() const {
  nlohmann::json j = cfg_.to_json();
  j["model"] = ModelConfig::from_json(cfg_.model).to_json();
  j["log"]["run_dir"] = run_dir_;
  return j;
}

double Trainer::next_lr() const { return schedule_.lr(step_) * plateau_.scale(); }

StepResult Trainer::train_step() {
  const double t0 = now_s();
  alloc::reset_peak();
  const int64_t B = cfg_.train.batch_size, T = cfg_.train.seq_len, A = cfg_.train.grad_accum;
  const int64_t N = job_->size(), rank = job_->rank();
  const double lr = next_lr();
  qat_before_step(*model_, cfg_.qat, step_);
  // QAT attached or froze its observers: the step is captured again.
  if (compiled_ && qat_phase(*model_) != qat_phase_) make_compiled_step();
  double loss_sum = 0.0;
  ReduceStats reduce;
  for (int64_t a = 0; a < A; ++a) {
    Tensor batch;
    {
      prof::Scope ps("train.data");
      // A micro-batch of the job is N x B windows; this rank's are the
      // windows [rank B, rank B + B) of it, so the RNG stays in lock step.
      Generator g = data_rng_;
      g.advance(static_cast<uint64_t>(rank * B));
      batch = data_.train_batch(g, B, T + 1);  // [B, T+1]
      data_rng_.advance(static_cast<uint64_t>(N * B));
    }
    if (compiled_) {
      loss_sum += compiled_->micro_batch(batch);
      if (reducer_ && a == A - 1) reducer_->begin();  // every bucket starts in finish()
      continue;
    }
    Tensor loss = model_->loss(batch);
    loss_sum += loss.item();
    // The last backward's gradients are final: their buckets start in it.
    if (reducer_ && a == A - 1) reducer_->begin();
    // The mean over A micro-batches of equal size is the large batch's mean;
    // with amp the loss scale multiplies it (a power of two: exact).
    const double mult = (scaler_ ? scaler_->scale() : 1.0) / static_cast<double>(A);
    autograd::backward(mult != 1.0 ? ops::scale(loss, static_cast<float>(mult)) : loss);
  }
  if (reducer_) {
    prof::Scope ps("train.allreduce");
    reduce = reducer_->finish();  // every rank now holds the mean gradient
  }
  job_->sum(&loss_sum, 1);
  const double loss = loss_sum / static_cast<double>(A * N);
  if (!std::isfinite(loss))  // the same on every rank
    throw JobError("training diverged: the loss is " + std::to_string(loss) + " at step " + std::to_string(step_ + 1) +
                   " (try a lower train.lr or a smaller train.grad_clip)");
  double gn;
  bool stepped = true;
  {
    prof::Scope ps("train.clip_and_adamw");
    if (compiled_) {
      const CompiledStep::Update u = compiled_->update(lr);
      gn = u.norm, stepped = u.stepped;
    } else {
      gn = clip_grad_norm(model_->parameters(), cfg_.train.grad_clip, scaler_ ? 1.0 / scaler_->scale() : 1.0);
      if (scaler_) stepped = scaler_->update(std::isfinite(gn));
      if (stepped) opt_->step(lr);
      opt_->zero_grad();
      if (stepped && scaler_) model_->refresh_bf16_copies();
    }
  }
  ++step_;
  const double a = cfg_.schedule.plateau.smoothing;
  ema_ = a * ema_ + (1.0 - a) * loss;
  ++ema_count_;
  StepResult r;
  r.step = step_;
  r.loss = loss;
  r.smooth_loss = ema_ / (1.0 - std::pow(a, static_cast<double>(ema_count_)));
  r.lr = lr;
  r.grad_norm = gn;
  r.tokens = A * B * T * N;
  r.reduce = reduce;
  r.skipped = !stepped;
  r.loss_scale = scaler_ ? scaler_->scale() : 0.0;
  tokens_seen_ += r.tokens;
  r.seconds = now_s() - t0;
  r.peak_bytes = alloc::stats().peak_bytes;
  r.rss_bytes = resident_bytes();
  return r;
}

// The held-out windows of eval_batches batches of the job (N x B windows),
// read in micro-batches of B: rank r takes micro-batches r, r + N, ... and
// the sums meet on every rank (the plateau steps on them).
EvalResult Trainer::evaluate() {
  const double t0 = now_s();
  prof::Scope ps("train.evaluate");
  autograd::NoGradGuard no_grad;
  const int64_t N = job_->size(), B = cfg_.train.batch_size, W = cfg_.train.seq_len + 1;
  const int64_t windows = std::min(cfg_.log.eval_batches * B * N, data_.val_windows(W));
  double nats = 0.0;
  int64_t bytes = 0, tokens = 0;
  job_->together([&] {
    for (int64_t k = job_->rank(); k * B < windows; k += N) {
      Tensor batch = data_.val_batch(k, B, W);
      if (batch.size(0) > windows - k * B) batch = batch.slice(0, 0, windows - k * B).contiguous();
      const int64_t n = batch.size(0) * (W - 1);
      nats += static_cast<double>(model_->loss(batch).item()) * static_cast<double>(n);
      tokens += n;
      const int32_t* p = batch.data<int32_t>();
      for (int64_t b = 0; b < batch.size(0); ++b)
        for (int64_t t = 1; t < W; ++t) bytes += static_cast<int64_t>(tok_.token_bytes(p[b * W + t]).size());
    }
  });
  if (N > 1) {
    double sums[3] = {nats, static_cast<double>(bytes), static_cast<double>(tokens)};
    job_->sum(sums, 3);
    nats = sums[0], bytes = static_cast<int64_t>(sums[1]), tokens = static_cast<int64_t>(sums[2]);
  }
  EvalResult e;
  e.step = step_;
  e.tokens = tokens;
  e.loss = tokens ? nats / static_cast<double>(tokens) : 0.0;
  e.bpb = bytes ? nats / std::log(2.0) / static_cast<double>(bytes) : 0.0;
  e.seconds = now_s() - t0;
  last_eval_ = e;
  return e;
}

RunSummary Trainer::run(const RunHooks& hooks) {
  RunSummary s;
  s.start_step = step_;
  s.total_steps = cfg_.train.steps;
  const double wall0 = now_s();
  const std::string svg = (fs::path(run_dir_) / "loss.svg").string();
  const bool root = job_->is_root();
  s.world_size = job_->size();
  int64_t tokens = 0, interval_tokens = 0, steps = 0;
  double interval_secs = 0, interval_wait = 0;
  size_t interval_peak = 0, interval_rss = 0;
  bool evaluated_now = false;
  while (step_ < cfg_.train.steps) {
    const StepResult r = train_step();
    s.train_seconds += r.seconds;
    tokens += r.tokens;
    interval_tokens += r.tokens;
    interval_secs += r.seconds;
    interval_peak = std::max(interval_peak, r.peak_bytes);
    interval_rss = std::max(interval_rss, r.rss_bytes);
    s.step_peak_bytes = std::max(s.step_peak_bytes, r.peak_bytes);
    s.peak_rss_bytes = std::max(s.peak_rss_bytes, r.rss_bytes);
    ++steps;
    s.allreduce_wait_s += r.reduce.wait_seconds;
    s.allreduce_total_s += r.reduce.total_seconds;
    s.allreduce_bytes = r.reduce.bytes;
    s.allreduce_buckets = r.reduce.buckets;
    interval_wait += r.reduce.wait_seconds;
    const bool last = step_ == cfg_.train.steps;
    if (r.skipped && root) {
      metrics_.write({{"step", r.step}, {"skipped", true}, {"grad_norm", r.grad_norm}, {"loss_scale", r.loss_scale}});
      note("step " + std::to_string(r.step) + ": inf/nan gradients, update skipped; loss scale now " +
           std::to_string(r.loss_scale));
    }
    if ((step_ % cfg_.log.interval == 0 || last) && root) {
      nlohmann::json line = {{"step", r.step},
                             {"loss", r.loss},
                             {"smooth_loss", r.smooth_loss},
                             {"lr", r.lr},
                             {"grad_norm", r.grad_norm},
                             {"tokens_per_s", interval_secs > 0 ? interval_tokens / interval_secs : 0.0},
                             {"peak_bytes", interval_peak},
                             {"rss_bytes", interval_rss},
                             {"world_size", job_->size()}};
      if (scaler_) line["loss_scale"] = r.loss_scale;
      if (job_->size() > 1) line["allreduce_wait_s"] = interval_wait / static_cast<double>(cfg_.log.interval);
      metrics_.write(line);
    }
    if (step_ % cfg_.log.interval == 0 || last) {
      interval_tokens = 0;
      interval_secs = 0;
      interval_wait = 0;
      interval_peak = interval_rss = 0;
    }
    if (hooks.on_step) hooks.on_step(r);
    evaluated_now = (cfg_.log.eval_interval > 0 && step_ % cfg_.log.eval_interval == 0) || last;
    if (evaluated_now) {
      const EvalResult e = evaluate();
      const PlateauConfig& p = cfg_.schedule.plateau;
      bool reduced = false;
      if (p.enabled) reduced = plateau_.step(p.monitor == "val_loss" ? e.loss : r.smooth_loss);
      nlohmann::json line = {{"step", e.step}, {"val_loss", e.loss}, {"val_bpb", e.bpb}, {"lr", r.lr}};
      if (p.enabled) line["lr_scale"] = plateau_.scale();
      if (root) {
        metrics_.write(line);
        write_loss_svg(svg, metrics_.train_curve(), metrics_.val_curve(), cfg_.train.steps, title_);
      }
      if (hooks.on_eval) hooks.on_eval(e);
      if (reduced) note("plateau: no improvement in " + p.monitor + ", learning rate scaled to " +
                        std::to_string(plateau_.scale()) + " of the schedule");
    }
    // A stop (Ctrl-C) on any rank stops every rank after this step.
    const bool stop = job_->any(hooks.should_stop && hooks.should_stop());
    if ((cfg_.checkpoint.interval > 0 && step_ % cfg_.checkpoint.interval == 0) || last || stop) {
      const std::string dir = save_checkpoint();
      if (hooks.on_checkpoint) hooks.on_checkpoint(dir);
    }
    if (stop) {
      s.interrupted = step_ < cfg_.train.steps;
      break;
    }
  }
  if (step_ >= cfg_.train.steps) {
    if (!evaluated_now) {  // nothing ran in this session (already complete)
      const EvalResult e = evaluate();
      if (hooks.on_eval) hooks.on_eval(e);
    }
    job_->together([&] {
      if (root)
        save_model((fs::path(run_dir_) / kModelFile).string(), *model_, dtype_from_name(cfg_.checkpoint.dtype),
                   tokenizer_metadata(tok_));
      if (root && qat_active(*model_)) {
        save_int8_model((fs::path(run_dir_) / kInt8File).string(), *model_);
        note(std::string("qat: int8 model written to ") + (fs::path(run_dir_) / kInt8File).string());
      }
    });
  }
  if (steps > 0) {
    s.allreduce_wait_s /= static_cast<double>(steps);
    s.allreduce_total_s /= static_cast<double>(steps);
  }
  s.end_step = step_;
  s.wall_seconds = now_s() - wall0;
  s.tokens_per_s = s.train_seconds > 0 ? static_cast<double>(tokens) / s.train_seconds : 0.0;
  s.final_eval = last_eval_;
  s.last_checkpoint = last_checkpoint_;
  s.peak_bytes = std::max(s.step_peak_bytes, alloc::stats().peak_bytes);
  return s;
}

}  // namespace mmrec
