// The trainer's checkpoints: writing one (rank 0, atomically) and resuming
// from one with every piece of state restored exactly (bit-identical losses).
#include <filesystem>

#include "models/profile.h"
#include "models/quant.h"
#include "models/safetensors.h"
#include "train/checkpoint.h"
#include "train/fileio.h"
#include "train/qat.h"
#include "train/trainer.h"

namespace mmrec {
namespace fs = std::filesystem;

namespace {
constexpr const char* kModelFile = kCheckpointModelFile;
constexpr const char* kStateFile = kCheckpointStateFile;

// Settings that may change between a checkpoint and its resumption.
nlohmann::json comparable(nlohmann::json c) {
  c.erase("log");
  c.erase("checkpoint");
  c["train"].erase("steps");
  c["train"].erase("threads");
  c["train"].erase("compile");  // the same losses either way
  c["data"].erase("cache_dir");
  if (c["train"].value("amp", "none") == "none") c["train"].erase("amp");  // checkpoints from before the key
  c.erase("qat");  // QAT may start on the resume of an f32 run
  return c;
}
}  // namespace

std::string Trainer::save_checkpoint() {
  // Rank 0 writes; the others learn its directory (or its error).
  std::string dir;
  job_->together([&] {
    if (job_->is_root()) dir = save_checkpoint_here();
  });
  job_->broadcast(dir);
  last_checkpoint_step_ = step_;
  last_checkpoint_ = dir;
  return dir;
}

std::string Trainer::save_checkpoint_here() {
  prof::Scope ps("train.checkpoint");
  nlohmann::json meta;
  meta["format"] = "mmrec-train-state";
  meta["version"] = 1;
  meta["step"] = step_;
  meta["tokens_seen"] = tokens_seen_;
  meta["world_size"] = job_->size();
  meta["config"] = effective_config();
  meta["optimizer"] = {{"kind", "adamw"}, {"steps", opt_->steps()}};
  meta["plateau"] = plateau_.state();
  meta["ema"] = {{"value", double_bits(ema_)}, {"count", ema_count_}};
  if (scaler_) meta["amp"] = scaler_->state();
  meta["qat"] = {{"active", qat_active(*model_)}};
  meta["rng"] = {{"data", {{"seed", data_rng_.seed()}, {"offset", data_rng_.offset()}}}};
  meta["data"] = {{"key", hex64(data_.key())}, {"tokens", data_.size()}, {"tokenizer", tok_.fingerprint()}};
  meta["last_eval"] = {{"step", last_eval_.step}, {"loss", double_bits(last_eval_.loss)},
                       {"bpb", double_bits(last_eval_.bpb)}};
  const std::string dir = commit_checkpoint(run_dir_, step_, [&](const std::string& tmp) {
    const std::string model_path = (fs::path(tmp) / kModelFile).string();
    save_model(model_path, *model_, DType::f32, tokenizer_metadata(tok_));
    meta["model_file"] = {{"name", kModelFile},
                          {"bytes", fs::file_size(model_path)},
                          {"hash", hex64(hash_file(model_path))}};
    std::vector<NamedTensor> tensors = opt_->state_tensors();
    for (auto& t : qat_state_tensors(*model_)) tensors.push_back(std::move(t));
    write_train_state((fs::path(tmp) / kStateFile).string(), {meta, tensors});
  });
  prune_checkpoints(run_dir_, cfg_.checkpoint.keep);
  return dir;
}

void Trainer::resume_from(const std::string& dir) {
  const std::string where = "checkpoint " + dir;
  const TrainState st = read_train_state((fs::path(dir) / kStateFile).string());
  const nlohmann::json& m = st.meta;
  try {
    check(m.value("format", "") == "mmrec-train-state" && m.value("version", 0) == 1, where,
          ": unknown training state format");
    const std::string diff = first_json_difference(comparable(m.at("config")), comparable(effective_config()));
    if (!diff.empty()) {
      nlohmann::json a = m.at("config"), b = effective_config();
      std::string path(1, '/');  // "a.b" -> "/a/b"
      path += diff;
      std::replace(path.begin(), path.end(), '.', '/');
      const auto ptr = nlohmann::json::json_pointer(path);
      fail(where, " does not match the config: ", diff, " is ", a.contains(ptr) ? a[ptr].dump() : "absent",
           " in the checkpoint and ", b.contains(ptr) ? b[ptr].dump() : "absent",
           " in the config (use another --run-dir, or --fresh to start over)");
    }
    const int64_t ranks = m.value("world_size", int64_t{1});
    check(ranks == job_->size(), where, " was written by a job of ", ranks, " rank(s) and this one has ",
          job_->size(), ": resume it with mpirun -np ", ranks,
          " (another count would change the batch of every step), or start over with --fresh");
    const auto& d = m.at("data");
    check(d.at("key").get<std::string>() == hex64(data_.key()) && d.at("tokens").get<int64_t>() == data_.size(),
          where, ": the training data changed since the checkpoint (token cache key ", d.at("key").get<std::string>(),
          ", now ", hex64(data_.key()), ")");
    const std::string model_path = (fs::path(dir) / kModelFile).string();
    check(fs::exists(model_path), where, ": ", kModelFile, " is missing");
    const auto& mf = m.at("model_file");
    check(fs::file_size(model_path) == mf.at("bytes").get<uint64_t>() &&
              hex64(hash_file(model_path)) == mf.at("hash").get<std::string>(),
          where, ": ", kModelFile, " is corrupt (its hash does not match the one in ", kStateFile, ")");
    load_weights(*model_, read_safetensors(model_path));
    if (scaler_) {
      model_->refresh_bf16_copies();
      scaler_->load_state(m.at("amp"));
    }
    opt_->load_state(st.tensors, m.at("optimizer").at("steps").get<int64_t>());
    plateau_.load_state(m.at("plateau"));
    if (cfg_.qat.enabled && m.contains("qat") && m.at("qat").value("active", false))
      qat_resume(*model_, cfg_.qat, st.tensors);
    ema_ = from_double_bits(m.at("ema").at("value"), "ema");
    ema_count_ = m.at("ema").at("count").get<int64_t>();
    const auto& rng = m.at("rng").at("data");
    data_rng_.set_state(rng.at("seed").get<uint64_t>(), rng.at("offset").get<uint64_t>());
    step_ = m.at("step").get<int64_t>();
    tokens_seen_ = m.at("tokens_seen").get<int64_t>();
    const auto& le = m.at("last_eval");
    last_eval_.step = le.at("step").get<int64_t>();
    last_eval_.loss = from_double_bits(le.at("loss"), "last_eval.loss");
    last_eval_.bpb = from_double_bits(le.at("bpb"), "last_eval.bpb");
    check(step_ >= 0 && tokens_seen_ >= 0 && ema_count_ >= 0 && last_eval_.step >= 0 && last_eval_.step <= step_,
          where, ": malformed training state: step ", step_, ", tokens_seen ", tokens_seen_, ", ema count ",
          ema_count_, ", last_eval step ", last_eval_.step, " out of range");
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": malformed training state: ", e.what());
  }
  resumed_from_ = step_;
  last_checkpoint_step_ = step_;
  last_checkpoint_ = dir;
  if (job_->is_root()) metrics_ = MetricsLog((fs::path(run_dir_) / "metrics.jsonl").string(), step_);
  note("resumed from " + dir + " (step " + std::to_string(step_) + ")");
}

}  // namespace mmrec
