// mmrec-serve's inference endpoints, in the OpenAI completions convention:
// POST /v1/completions (JSON, or server-sent events token by token with
// "stream": true), GET /v1/models, GET /health. Generation runs in cohorts
// (serve/batcher.h): streams at the same position share one batched model
// call per token, and cohorts run at once on their own threads; the model
// and its packed weights are shared read-only.
//
//   InferenceService svc(load_model(path), {.name = "tiny", .streams = 4, .queue = 16});
//   svc.install(server);
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <httplib.h>

#include "models/model.h"
#include "serve/admission.h"
#include "serve/batcher.h"
#include "serve/completion.h"

namespace mmrec::serve {

struct InferenceOptions {
  std::string name = "mmrec";  // the model id clients see
  int64_t streams = 4;         // generations at once
  int64_t queue = 16;          // requests waiting for one; more get 503
  BatchOptions batch{};        // streams sharing one model call per token
  Limits limits{};
};

class InferenceService {
 public:
  InferenceService(Model model, const InferenceOptions& opt);
  void install(httplib::Server& server);
  const Admission& admission() const { return admission_; }
  // The weights generation runs on: "f32", "bf16" (Model::use_bf16) or "int8" (an int8 file).
  std::string dtype() const;
  // Cohorts started and the most streams one held (Batcher).
  std::pair<int64_t, int64_t> batcher_stats() const { return {batcher_->cohorts(), batcher_->largest_cohort()}; }

 private:
  void completions(const httplib::Request& req, httplib::Response& res);
  std::string next_id();

  Model model_;
  InferencePack pack_;
  InferenceOptions opt_;
  Admission admission_;
  std::unique_ptr<Batcher> batcher_;  // after model_ and pack_, which it reads
  std::atomic<int64_t> served_{0};
};

}  // namespace mmrec::serve
