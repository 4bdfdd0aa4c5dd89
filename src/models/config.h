// The `model` section of a config: MM-Rec hyper-parameters with the spec's
// defaults (../shared/spec/MODEL.md, "Configuration").
//   ModelConfig c = ModelConfig::from_json(j["model"]);   // errors name the field
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t dim = 256;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t ffn_dim = 0;   // 0: 4 * dim
  int64_t mdi_dim = 0;   // 0: dim / 4
  int64_t memory_slots = 64;
  int64_t hds_levels = 3;
  int64_t chunk_size = 128;
  std::string recurrence = "parallel";  // "parallel" | "sequential"
  bool tie_embeddings = true;
  float norm_eps = 1e-6f;
  int64_t ignore_index = -1;  // loss target skipped (-1: none; MODEL.md "Model")

  // Upper bounds (validate() enforces them; they keep every size product,
  // e.g. 4 * dim * dim, far from int64 overflow).
  static constexpr int64_t kMaxVocab = int64_t{1} << 24, kMaxDim = int64_t{1} << 16,
                           kMaxLayers = 4096, kMaxFfn = int64_t{1} << 20, kMaxSlots = int64_t{1} << 16,
                           kMaxChunk = int64_t{1} << 20;

  // Fills defaults, then checks every value; an invalid or unknown key, or a
  // wrong type, throws Error naming the field, e.g.
  // "model.heads: 6 does not divide model.dim 256". With `unknown` given
  // (checkpoints written by other programs), unknown keys are appended to it
  // instead of being errors.
  static ModelConfig from_json(const nlohmann::json& j, std::vector<std::string>* unknown = nullptr);
  nlohmann::json to_json() const;  // every field, defaults resolved
  void validate() const;
  // A validated copy with ffn_dim and mdi_dim resolved (0 -> 4 * dim, dim / 4).
  ModelConfig resolved() const;
};

}  // namespace mmrec

MMREC_API_END
