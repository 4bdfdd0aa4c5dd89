// One completion request of mmrec-serve: its parsing and checking (every
// malformed field is a BadRequest naming it) and its generation state, so
// that concurrent requests share only the read-only model and packed weights.
//
//   CompletionRequest req = parse_completion(body, limits, model.config().vocab_size);
//   Completion c(model, pack, req);
//   while (c.next()) piece += token_text(c.last_token());
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/model.h"
#include "tensor/random.h"

namespace mmrec::serve {

struct Limits {
  size_t max_body_bytes = 1 << 20;  // request bodies above this get 413
  int64_t max_prompt_tokens = 4096;
  int64_t max_tokens = 1024;        // per request
};

// A request the server refuses with 400; param names the offending field.
struct BadRequest : std::runtime_error {
  BadRequest(const std::string& message, std::string param_name = "")
      : std::runtime_error(message), param(std::move(param_name)) {}
  std::string param;
};

// The OpenAI completions fields mmrec honours. prompt is a string (its bytes
// are the tokens) or an array of token ids.
struct CompletionRequest {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = all tokens
  uint64_t seed = 1;
  bool stream = false;
};

CompletionRequest parse_completion(const std::string& body, const Limits& limits, int64_t vocab_size);

// The text of a token: its byte below 256, else "<id>" (as mmrec-generate prints).
std::string token_text(int64_t token);

// The generation of one request: the prompt is fed on the first next(), then
// one token per call through the 1-row packed weights, exactly as
// mmrec-generate does (greedy outputs are identical).
class Completion {
 public:
  // Completions of one model run on as many threads at once as there are
  // streams: the model and the pack are only read, and every oneDNN
  // primitive runs with the calling thread's scratchpad
  // (ops/kernels/dnnl_context.h).
  Completion(const Model& model, const InferencePack& pack, const CompletionRequest& req);
  // Produces the next token; false once max_tokens are out.
  bool next();
  int64_t last_token() const { return last_token_; }
  int64_t produced() const { return produced_; }
  int64_t prompt_tokens() const { return static_cast<int64_t>(req_.prompt.size()); }

 private:
  const Model& model_;
  const InferencePack& pack_;
  CompletionRequest req_;
  Generator gen_;
  State state_;
  Tensor logits_;
  int64_t row_ = 0, produced_ = 0, last_token_ = -1;
};

// Holds back the bytes of an incomplete UTF-8 sequence, so that a stream
// sent piece by piece never splits a character.
class Utf8Pieces {
 public:
  // Appends text; returns what can be sent now.
  std::string push(const std::string& text);
  // What is still held (sent at the end, invalid bytes and all).
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace mmrec::serve
