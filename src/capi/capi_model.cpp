// C API: the library, models and their tokenizer.
#include <cstring>
#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "capi/handles.h"
#include "models/safetensors.h"
#include "tensor/threads.h"

namespace mmrec::capi {

namespace {
thread_local std::string t_last_error;
}

void set_last_error(const std::string& message) { t_last_error = message; }

const InferencePack& ModelData::pack_for_one_token() const {
  std::call_once(pack_once_, [&] { pack_ = model.pack_for_inference(1); });
  return pack_;
}

const ModelData& model_of(const mmrec_model* m) {
  if (m == nullptr) throw ApiError(MMREC_ERR_HANDLE, "the model handle is NULL");
  if (m->tag != kModelTag || !m->data) throw ApiError(MMREC_ERR_HANDLE, "not a model handle");
  return *m->data;
}

void emit_model(std::shared_ptr<const ModelData> data, mmrec_model** out) {
  auto h = std::make_unique<mmrec_model>();
  h->data = std::move(data);
  *out = h.release();
}

DType to_dtype(mmrec_dtype d) {
  switch (d) {
    case MMREC_DTYPE_F32: return DType::f32;
    case MMREC_DTYPE_BF16: return DType::bf16;
    case MMREC_DTYPE_I8: return DType::i8;
  }
  throw ApiError(MMREC_ERR_ARGUMENT, "unknown dtype " + std::to_string(static_cast<int>(d)));
}

namespace {

mmrec_dtype from_dtype(DType d) {
  switch (d) {
    case DType::f32: return MMREC_DTYPE_F32;
    case DType::bf16: return MMREC_DTYPE_BF16;
    case DType::i8: return MMREC_DTYPE_I8;
    default: throw ApiError(MMREC_ERR_UNSUPPORTED, "weights of dtype " + std::string(dtype_name(d)));
  }
}

// Copies n bytes (plus a NUL if `nul`) into a caller's buffer of cap bytes.
void copy_out(const char* src, size_t n, bool nul, char* buf, size_t cap, size_t* out_len) {
  require(out_len != nullptr, "out_len is NULL");
  require(buf != nullptr || cap == 0, "buf is NULL but cap is not 0");
  if (cap < n + (nul ? 1 : 0)) {
    *out_len = n;
    throw ApiError(MMREC_ERR_BUFFER, "the buffer holds " + std::to_string(cap) + " bytes, " +
                                         std::to_string(n + (nul ? 1 : 0)) + " are needed");
  }
  if (n) std::memcpy(buf, src, n);
  if (nul) buf[n] = '\0';
  *out_len = n;
}

}  // namespace
}  // namespace mmrec::capi

using namespace mmrec;
using namespace mmrec::capi;

extern "C" {

const char* mmrec_version(void) { return "0.1.0"; }

const char* mmrec_last_error(void) { return t_last_error.c_str(); }

const char* mmrec_status_name(mmrec_status status) {
  switch (status) {
    case MMREC_OK: return "MMREC_OK";
    case MMREC_ERR_ARGUMENT: return "MMREC_ERR_ARGUMENT";
    case MMREC_ERR_HANDLE: return "MMREC_ERR_HANDLE";
    case MMREC_ERR_FILE: return "MMREC_ERR_FILE";
    case MMREC_ERR_CONFIG: return "MMREC_ERR_CONFIG";
    case MMREC_ERR_BUFFER: return "MMREC_ERR_BUFFER";
    case MMREC_ERR_MEMORY: return "MMREC_ERR_MEMORY";
    case MMREC_ERR_UNSUPPORTED: return "MMREC_ERR_UNSUPPORTED";
    case MMREC_ERR_STATE: return "MMREC_ERR_STATE";
    case MMREC_ERR_INTERNAL: return "MMREC_ERR_INTERNAL";
  }
  return "unknown status";
}

mmrec_status mmrec_set_num_threads(int threads) {
  return api_call(__func__, MMREC_ERR_ARGUMENT, [&] {
    require(threads >= 0, "threads must be >= 0 (0: all cores)");
    set_num_threads(threads);
  });
}

mmrec_status mmrec_model_load(const char* path, mmrec_model** out) {
  return api_call(__func__, MMREC_ERR_FILE, [&] {
    require(path != nullptr, "path is NULL");
    require(out != nullptr, "out is NULL");
    const Safetensors file = read_safetensors(path);
    Model model = load_model(file);
    Tokenizer tok = tokenizer_from_metadata(file.metadata, path);
    if (tok.vocab_size() > model.config().vocab_size)
      throw ApiError(MMREC_ERR_FILE, std::string(path) + ": its tokenizer has " + std::to_string(tok.vocab_size()) +
                                         " ids, the model's vocab_size is " +
                                         std::to_string(model.config().vocab_size));
    const DType dtype = file.get(model.parameters().front().first).dtype();
    emit_model(std::make_shared<const ModelData>(std::move(model), std::move(tok), dtype), out);
  });
}

mmrec_status mmrec_model_create(const char* config_json, uint64_t seed, mmrec_model** out) {
  return api_call(__func__, MMREC_ERR_CONFIG, [&] {
    require(config_json != nullptr, "config_json is NULL");
    require(out != nullptr, "out is NULL");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(config_json);
    } catch (const nlohmann::json::exception& e) {
      throw ApiError(MMREC_ERR_CONFIG, std::string("config_json is not valid JSON: ") + e.what());
    }
    Model model(ModelConfig::from_json(j), seed);
    check(model.config().vocab_size >= 256, "model.vocab_size: ", model.config().vocab_size,
          " is smaller than the byte-level tokenizer's 256 ids");
    emit_model(std::make_shared<const ModelData>(std::move(model), Tokenizer::byte_level(), DType::f32), out);
  });
}

void mmrec_model_free(mmrec_model* model) {
  if (model != nullptr && model->tag == kModelTag) {
    model->tag = 0;
    delete model;
  }
}

mmrec_status mmrec_model_save(const mmrec_model* model, const char* path, mmrec_dtype dtype) {
  return api_call(__func__, MMREC_ERR_FILE, [&] {
    const ModelData& m = model_of(model);
    require(path != nullptr, "path is NULL");
    const DType d = to_dtype(dtype);
    if (d != DType::f32 && d != DType::bf16)
      throw ApiError(MMREC_ERR_UNSUPPORTED, "this build saves f32 or bf16 weights, not " +
                                                std::string(dtype_name(d)));
    save_model(path, m.model, d, tokenizer_metadata(m.tokenizer));
  });
}

mmrec_status mmrec_model_vocab_size(const mmrec_model* model, int32_t* out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const ModelData& m = model_of(model);
    require(out != nullptr, "out is NULL");
    *out = static_cast<int32_t>(m.model.config().vocab_size);
  });
}

mmrec_status mmrec_model_num_parameters(const mmrec_model* model, int64_t* out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const ModelData& m = model_of(model);
    require(out != nullptr, "out is NULL");
    *out = m.model.num_parameters();
  });
}

mmrec_status mmrec_model_dtype(const mmrec_model* model, mmrec_dtype* out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const ModelData& m = model_of(model);
    require(out != nullptr, "out is NULL");
    *out = from_dtype(m.dtype);
  });
}

mmrec_status mmrec_model_config_json(const mmrec_model* model, char* buf, size_t cap, size_t* out_len) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const std::string s = model_of(model).model.config().to_json().dump();
    copy_out(s.data(), s.size(), true, buf, cap, out_len);
  });
}

mmrec_status mmrec_tokenize(const mmrec_model* model, const char* text, size_t len, int32_t* ids, size_t cap,
                            size_t* out_len) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const ModelData& m = model_of(model);
    require(text != nullptr || len == 0, "text is NULL");
    require(ids != nullptr || cap == 0, "ids is NULL but cap is not 0");
    require(out_len != nullptr, "out_len is NULL");
    const std::vector<int32_t> v = m.tokenizer.encode(std::string_view(text ? text : "", len));
    if (v.size() > cap) {
      *out_len = v.size();
      throw ApiError(MMREC_ERR_BUFFER, "the buffer holds " + std::to_string(cap) + " ids, " +
                                           std::to_string(v.size()) + " are needed");
    }
    std::copy(v.begin(), v.end(), ids);
    *out_len = v.size();
  });
}

mmrec_status mmrec_detokenize(const mmrec_model* model, const int32_t* ids, size_t n, char* buf, size_t cap,
                              size_t* out_len) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const ModelData& m = model_of(model);
    require(ids != nullptr || n == 0, "ids is NULL");
    const int64_t V = m.tokenizer.vocab_size();
    for (size_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= V)
        throw ApiError(MMREC_ERR_ARGUMENT, "token " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                               " is outside the tokenizer's " + std::to_string(V) + " ids");
    const std::string s = m.tokenizer.decode(std::vector<int32_t>(ids, ids + n));
    copy_out(s.data(), s.size(), false, buf, cap, out_len);
  });
}

}  // extern "C"
