#include "models/config.h"

#include <cmath>
#include <set>

#include "tensor/error.h"

namespace mmrec {
namespace {

using json = nlohmann::json;

const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "vocab_size",   "dim",        "layers",     "heads",          "ffn_dim",  "mdi_dim",
      "memory_slots", "hds_levels", "chunk_size", "tie_embeddings", "norm_eps", "recurrence",
      "ignore_index"};
  return keys;
}

// The value as the config file spells it, for messages: `"a"`, `2.5`, `true`.
std::string spelled(const json& v) { return v.dump(); }

int64_t get_int(const json& v, const std::string& key) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    check(u <= static_cast<uint64_t>(INT64_MAX), "model.", key, ": ", spelled(v), " is too large");
    return static_cast<int64_t>(u);
  }
  fail("model.", key, ": expected an integer, got ", spelled(v));
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, std::vector<std::string>* unknown) {
  ModelConfig c;
  if (j.is_null()) return c.resolved();  // no `model` section: every default
  check(j.is_object(), "model: expected an object, got ", spelled(j));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (!known_keys().count(key)) {
      if (!unknown) fail("model.", key, ": unknown key");
      unknown->push_back(key);
      continue;
    }
    if (key == "vocab_size") c.vocab_size = get_int(v, key);
    else if (key == "dim") c.dim = get_int(v, key);
    else if (key == "layers") c.layers = get_int(v, key);
    else if (key == "heads") c.heads = get_int(v, key);
    else if (key == "ffn_dim") c.ffn_dim = get_int(v, key);
    else if (key == "mdi_dim") c.mdi_dim = get_int(v, key);
    else if (key == "memory_slots") c.memory_slots = get_int(v, key);
    else if (key == "hds_levels") c.hds_levels = get_int(v, key);
    else if (key == "chunk_size") c.chunk_size = get_int(v, key);
    else if (key == "ignore_index") c.ignore_index = get_int(v, key);
    else if (key == "tie_embeddings") {
      check(v.is_boolean(), "model.tie_embeddings: expected true or false, got ", spelled(v));
      c.tie_embeddings = v.get<bool>();
    } else if (key == "norm_eps") {
      check(v.is_number(), "model.norm_eps: expected a number, got ", spelled(v));
      const double e = v.get<double>();  // a double outside the float range is not cast
      check(e > 0, "model.norm_eps: must be > 0, got ", spelled(v));
      check(e < 1, "model.norm_eps: must be < 1, got ", spelled(v));
      c.norm_eps = static_cast<float>(e);
    } else if (key == "recurrence") {
      check(v.is_string(), "model.recurrence: expected \"parallel\" or \"sequential\", got ", spelled(v));
      c.recurrence = v.get<std::string>();
    }
  }
  return c.resolved();
}

ModelConfig ModelConfig::resolved() const {
  validate();
  ModelConfig c = *this;
  if (c.ffn_dim == 0) c.ffn_dim = 4 * c.dim;
  if (c.mdi_dim == 0) c.mdi_dim = c.dim / 4;
  return c;
}

nlohmann::json ModelConfig::to_json() const {
  const ModelConfig c = resolved();
  json j{{"vocab_size", c.vocab_size},     {"dim", c.dim},
              {"layers", c.layers},             {"heads", c.heads},
              {"ffn_dim", c.ffn_dim},           {"mdi_dim", c.mdi_dim},
              {"memory_slots", c.memory_slots}, {"hds_levels", c.hds_levels},
              {"chunk_size", c.chunk_size},     {"recurrence", c.recurrence},
              {"tie_embeddings", c.tie_embeddings}, {"norm_eps", c.norm_eps}};
  if (c.ignore_index != -1) j["ignore_index"] = c.ignore_index;  // files without it stay as they were
  return j;
}

void ModelConfig::validate() const {
  auto in_range = [](const char* key, int64_t v, int64_t lo, int64_t hi) {
    check(v >= lo, "model.", key, ": must be >= ", lo, ", got ", v);
    check(v <= hi, "model.", key, ": must be <= ", hi, ", got ", v);
  };
  in_range("vocab_size", vocab_size, 1, kMaxVocab);
  in_range("dim", dim, 1, kMaxDim);
  in_range("layers", layers, 1, kMaxLayers);
  in_range("heads", heads, 1, kMaxDim);
  check(dim % heads == 0, "model.heads: ", heads, " does not divide model.dim ", dim);
  in_range("ffn_dim", ffn_dim, 0, kMaxFfn);
  in_range("mdi_dim", mdi_dim, 0, kMaxDim);
  check(mdi_dim > 0 || dim / 4 >= 1, "model.mdi_dim: the default dim / 4 is 0 for model.dim ", dim,
        "; set model.mdi_dim");
  in_range("memory_slots", memory_slots, 0, kMaxSlots);
  in_range("hds_levels", hds_levels, 1, 16);
  in_range("chunk_size", chunk_size, 1, kMaxChunk);
  check(ignore_index < 0 || ignore_index < vocab_size, "model.ignore_index: ", ignore_index,
        " is neither negative (none) nor an id below model.vocab_size ", vocab_size);
  check(recurrence == "parallel" || recurrence == "sequential",
        "model.recurrence: expected \"parallel\" or \"sequential\", got \"", recurrence, "\"");
  check(norm_eps > 0 && std::isfinite(norm_eps), "model.norm_eps: must be a finite number > 0, got ", norm_eps);
}

}  // namespace mmrec
