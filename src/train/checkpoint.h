// Training checkpoints. A checkpoint is a directory
// <run_dir>/checkpoints/step-00000100/ holding model.safetensors (the
// weights, loadable by mmrec-generate) and train_state.bin (optimizer
// moments and a JSON record of the step, schedules, RNG and data position,
// plus the model file's hash). It is filled in a temporary directory and
// renamed into place, so a reader sees a whole checkpoint or none.
//
//   write_train_state(dir + "/train_state.bin", {meta, opt.state_tensors()});
//   TrainState s = read_train_state(path);          // Error if corrupt or truncated
//   auto list = list_checkpoints(run_dir);          // oldest first
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mmrec {

using NamedTensor = std::pair<std::string, Tensor>;

struct TrainState {
  nlohmann::json meta;               // step, schedule and plateau, RNG, data, config, ...
  std::vector<NamedTensor> tensors;  // optimizer moments (any dtype)
};

// File layout: "MMRECTS1", u64 header length, JSON header {meta, tensors:
// [{name, dtype, shape, offset, bytes}]}, 64-byte aligned data, then a u64
// hash of everything before it. Written atomically.
void write_train_state(const std::string& path, const TrainState& s);
TrainState read_train_state(const std::string& path);

struct CheckpointInfo {
  int64_t step;
  std::string dir;
};

// The files of a checkpoint directory.
inline constexpr const char* kCheckpointModelFile = "model.safetensors";
inline constexpr const char* kCheckpointStateFile = "train_state.bin";

// Why a checkpoint directory cannot be resumed from ("" when it is intact):
// its training state is unreadable or fails its checksum, or its weights
// file is missing or does not match the hash recorded in the state.
std::string checkpoint_problem(const std::string& dir);
// The newest intact checkpoint of `list` (oldest first, as list_checkpoints
// gives). Each newer damaged one is reported through `note` and skipped; with
// `strict`, a damaged newest one is an Error naming the intact one to use.
// None intact is an Error.
std::string choose_resume_checkpoint(const std::vector<CheckpointInfo>& list, bool strict,
                                     const std::function<void(const std::string&)>& note);

std::string checkpoints_root(const std::string& run_dir);  // <run_dir>/checkpoints
// Complete checkpoints (step-<n> directories), oldest first. Leftover
// temporary directories of an interrupted write are ignored.
std::vector<CheckpointInfo> list_checkpoints(const std::string& run_dir);
// Creates <root>/step-<n>.tmp-<pid>, lets `fill` write the files, fsyncs and
// renames it to <root>/step-<n> (replacing an older one of the same step).
// Returns the final directory.
std::string commit_checkpoint(const std::string& run_dir, int64_t step,
                              const std::function<void(const std::string& tmp_dir)>& fill);
// Removes all but the newest `keep` checkpoints (keep <= 0: none removed),
// and stale temporary directories.
void prune_checkpoints(const std::string& run_dir, int64_t keep);

}  // namespace mmrec
