// The C API's handle types and its one error boundary (internal to libmmrec).
// Every entry point runs its body through api_call, which turns each C++
// exception into a status and the thread's last-error message.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <mmrec/mmrec_c.h>

#include "models/model.h"
#include "tensor/random.h"
#include "train/tokenizer.h"

namespace mmrec::capi {

// A failure with its own status (argument checks in the C layer).
struct ApiError : std::runtime_error {
  ApiError(mmrec_status s, const std::string& what) : std::runtime_error(what), status(s) {}
  mmrec_status status;
};

void set_last_error(const std::string& message);

// Runs f() (which may throw); returns MMREC_OK, or the failure's status with
// the message "<function>: <what>". `fallback` is the status of an
// mmrec::Error from below (a bad file, a bad config ...).
template <class F>
mmrec_status api_call(const char* function, mmrec_status fallback, F&& f) noexcept {
  try {
    f();
    return MMREC_OK;
  } catch (const ApiError& e) {
    set_last_error(std::string(function) + ": " + e.what());
    return e.status;
  } catch (const std::bad_alloc&) {
    set_last_error(std::string(function) + ": out of memory");
    return MMREC_ERR_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(std::string(function) + ": " + e.what());
    return fallback;
  } catch (...) {
    set_last_error(std::string(function) + ": unknown failure");
    return MMREC_ERR_INTERNAL;
  }
}

inline void require(bool ok, const char* what) {
  if (!ok) throw ApiError(MMREC_ERR_ARGUMENT, what);
}

// Handles start with a tag, so that a NULL or foreign pointer is refused.
constexpr uint32_t kModelTag = 0x4d4d524d;    // "MMRM"
constexpr uint32_t kStateTag = 0x4d4d5253;    // "MMRS"
constexpr uint32_t kTrainerTag = 0x4d4d5254;  // "MMRT"

// What a model handle holds; states share it, so it outlives its handle.
struct ModelData {
  ModelData(Model m, Tokenizer t, DType d) : model(std::move(m)), tokenizer(std::move(t)), dtype(d) {}
  const Model model;
  const Tokenizer tokenizer;
  const DType dtype;  // of the weights in the file loaded
  // Weights packed for one-token calls, made on first use (the weights never
  // change: a trainer hands out copies).
  const InferencePack& pack_for_one_token() const;

 private:
  mutable std::once_flag pack_once_;
  mutable InferencePack pack_;
};

}  // namespace mmrec::capi

struct mmrec_model {
  uint32_t tag = mmrec::capi::kModelTag;
  std::shared_ptr<const mmrec::capi::ModelData> data;
};

struct mmrec_state {
  uint32_t tag = mmrec::capi::kStateTag;
  std::shared_ptr<const mmrec::capi::ModelData> model;
  mmrec::State state;
  std::vector<float> logits;  // of the last token fed; empty before the first
  mmrec::Generator rng{1};
  int64_t position = 0;
};

namespace mmrec::capi {

// The handle's data, or ApiError(MMREC_ERR_HANDLE).
const ModelData& model_of(const mmrec_model* m);
mmrec_state& state_of(mmrec_state* s);
const mmrec_state& state_of(const mmrec_state* s);

// A new model handle (the caller's *out is set only on success).
void emit_model(std::shared_ptr<const ModelData> data, mmrec_model** out);
DType to_dtype(mmrec_dtype d);

}  // namespace mmrec::capi
