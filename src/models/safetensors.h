// safetensors I/O: 8-byte little-endian header length, a JSON header of
// {name: {dtype, shape, data_offsets}} plus "__metadata__" (string values),
// then raw little-endian data. Writes are atomic (temporary file, fsync, rename).
//
//   write_safetensors("w.safetensors", {{"w", t}}, {{"config", cfg.dump()}});
//   Safetensors f = read_safetensors("w.safetensors");   // Error if corrupt or truncated
//   save_model("m.safetensors", model, DType::bf16);
//   Model m = load_model("m.safetensors");
#pragma once
#include <map>
#include <string>
#include <vector>

#include "models/model.h"
#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

struct Safetensors {
  std::vector<NamedTensor> tensors;             // in file order
  std::map<std::string, std::string> metadata;  // "__metadata__"
  // The tensor of that name, or an Error naming the file and the tensor.
  Tensor get(const std::string& name) const;
  bool has(const std::string& name) const;
  std::string path;
};

// Tensors are written in their own dtype (f32, bf16, i8, u8, i32, i64).
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
Safetensors read_safetensors(const std::string& path);

// The model's parameters (cast to dtype: f32 or bf16) with metadata "config"
// = the model section as a JSON string, plus any other `metadata` entries
// (e.g. "tokenizer": a BPE tokenizer's JSON).
void save_model(const std::string& path, const Model& model, DType dtype = DType::f32,
                const std::map<std::string, std::string>& metadata = {});
// Builds the model from the file's "config" and loads every parameter. The
// tensors are checked against the config before the model is built. Unknown
// keys of the config (a file from another writer) are ignored; with
// `warnings` given, one line per ignored key is appended to it.
Model load_model(const std::string& path, std::vector<std::string>* warnings = nullptr);
Model load_model(const Safetensors& file, std::vector<std::string>* warnings = nullptr);
// Copies every parameter of `file` into `model` (casting bf16 to f32); checks
// names, shapes and dtypes and reports the first mismatch.
void load_weights(const Model& model, const Safetensors& file);

}  // namespace mmrec

MMREC_API_END
