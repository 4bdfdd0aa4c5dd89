// The `model` section of a config: MM-Rec hyper-parameters with the spec's
// defaults (../shared/spec/MODEL.md, "Configuration").
//   ModelConfig c = ModelConfig::from_json(j["model"]);   // errors name the field
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

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

  // Fills defaults, then checks every value; an invalid or unknown key, or a
  // wrong type, throws Error naming the field, e.g.
  // "model.heads: 6 does not divide model.dim 256".
  static ModelConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;  // every field, defaults resolved
  void validate() const;
  // A validated copy with ffn_dim and mdi_dim resolved (0 -> 4 * dim, dim / 4).
  ModelConfig resolved() const;
};

}  // namespace mmrec

MMREC_API_END
