// Model checkpoints: the parameters in safetensors with the config as metadata.
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/tape.h"
#include "models/quant.h"
#include "models/safetensors.h"

namespace mmrec {

void save_model(const std::string& path, const Model& model, DType dtype,
                const std::map<std::string, std::string>& metadata) {
  check(dtype == DType::f32 || dtype == DType::bf16, "save_model: dtype must be f32 or bf16, got ",
        dtype_name(dtype));
  std::vector<NamedTensor> tensors;
  for (const auto& [name, t] : model.parameters())
    tensors.emplace_back(name, dtype == DType::f32 ? t.detach() : t.detach().to(dtype));
  std::map<std::string, std::string> meta = metadata;
  meta["config"] = model.config().to_json().dump();
  meta["format"] = "mmrec";
  write_safetensors(path, tensors, meta);
}

Model load_model(const std::string& path, std::vector<std::string>* warnings) {
  return load_model(read_safetensors(path), warnings);  // every tensor checked against the file size
}

Model load_model(const Safetensors& file, std::vector<std::string>* warnings) {
  const std::string& path = file.path;
  auto it = file.metadata.find("config");
  check(it != file.metadata.end(), "load_model: '", path, "' has no \"config\" in its metadata");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    fail("load_model: '", path, "': the \"config\" metadata is not valid JSON: ", e.what());
  }
  std::vector<std::string> unknown;
  ModelConfig config;
  try {
    config = ModelConfig::from_json(j, &unknown);
  } catch (const Error& e) {
    fail("load_model: '", path, "': ", e.what());
  }
  if (warnings)
    for (const std::string& k : unknown)
      warnings->push_back("load_model: '" + path + "': ignoring the unknown key model." + k +
                          " of its \"config\" metadata");
  if (auto f = file.metadata.find("format"); f != file.metadata.end() && f->second == "mmrec-int8")
    return load_int8_model(file, config);
  // The file's tensors must hold exactly the model's parameters before the
  // model is built: a config never costs more memory than the file justifies.
  int64_t values = 0;
  for (const auto& [name, t] : file.tensors) values += t.numel();  // each bounded by the file size
  const int64_t want = Model::parameter_count(config);
  check(values == want, "load_model: '", path, "': its tensors hold ", values, " values, but its config (vocab_size ",
        config.vocab_size, ", dim ", config.dim, ", layers ", config.layers, ", ffn_dim ", config.ffn_dim,
        ") needs ", want, " parameters");
  Model model(config);
  load_weights(model, file);
  return model;
}

void load_weights(const Model& model, const Safetensors& file) {
  const std::string where = "load_weights: '" + file.path + "'";
  std::set<std::string> wanted;
  for (const auto& [name, p] : model.parameters()) {
    wanted.insert(name);
    check(file.has(name), where, ": missing tensor '", name, "' of shape ", p.shape());
    const Tensor t = file.get(name);
    check(t.shape() == p.shape(), where, ": tensor '", name, "' has shape ", t.shape(), ", the model needs ",
          p.shape());
    check(t.dtype() == DType::f32 || t.dtype() == DType::bf16, where, ": tensor '", name, "' has dtype ",
          dtype_name(t.dtype()), ", expected f32 or bf16");
  }
  for (const auto& [name, t] : file.tensors)
    check(wanted.count(name), where, ": unexpected tensor '", name, "' (not a parameter of this model)");
  autograd::NoGradGuard no_grad;
  for (const auto& [name, p] : model.parameters()) {
    Tensor dst = p;  // shares the parameter's storage
    dst.copy_from(file.get(name));
  }
}

}  // namespace mmrec
