// mmrec-serve's inference endpoints, in the OpenAI completions convention:
// POST /v1/completions (JSON, or server-sent events token by token with
// "stream": true), GET /v1/models, GET /health. Generation runs on the
// handler's thread with its own state; the model and its 1-row packed
// weights are shared read-only.
//
//   InferenceService svc(load_model(path), {.name = "tiny", .streams = 4, .queue = 16});
//   svc.install(server);
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include <httplib.h>

#include "models/model.h"
#include "serve/admission.h"
#include "serve/completion.h"

namespace mmrec::serve {

struct InferenceOptions {
  std::string name = "mmrec";  // the model id clients see
  int64_t streams = 4;         // generations at once
  int64_t queue = 16;          // requests waiting for one; more get 503
  Limits limits{};
};

class InferenceService {
 public:
  InferenceService(Model model, const InferenceOptions& opt);
  void install(httplib::Server& server);
  const Admission& admission() const { return admission_; }
  // The weights generation runs on: "f32", "bf16" (Model::use_bf16) or "int8" (an int8 file).
  std::string dtype() const;

 private:
  void completions(const httplib::Request& req, httplib::Response& res);
  std::string next_id();

  Model model_;
  InferencePack pack_;
  InferenceOptions opt_;
  Admission admission_;
  std::atomic<int64_t> served_{0};
};

}  // namespace mmrec::serve
