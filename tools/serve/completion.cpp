#include "serve/completion.h"

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "models/sampling.h"

namespace mmrec::serve {

using nlohmann::json;

namespace {

std::string type_name(const json& v) {
  return v.is_string() ? "a string" : v.is_boolean() ? "a boolean" : v.is_number() ? "a number"
       : v.is_array() ? "an array" : v.is_object() ? "an object" : "null";
}

int64_t integer_field(const json& v, const char* name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer())
    throw BadRequest(std::string(name) + ": expected an integer, got " + type_name(v), name);
  const double d = v.get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw BadRequest(std::string(name) + ": " + v.dump() + " is out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]", name);
  return v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
}

}  // namespace

CompletionRequest parse_completion(const std::string& body, const Limits& limits, int64_t vocab_size) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number overflow
    throw BadRequest(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw BadRequest("the body must be a JSON object, got " + type_name(j));
  CompletionRequest r;
  if (!j.contains("prompt")) throw BadRequest("prompt: required", "prompt");
  const json& p = j["prompt"];
  if (p.is_string()) {
    for (unsigned char c : p.get<std::string>()) r.prompt.push_back(c);
  } else if (p.is_array()) {
    for (const json& t : p) r.prompt.push_back(static_cast<int32_t>(integer_field(t, "prompt", 0, vocab_size - 1)));
  } else {
    throw BadRequest("prompt: expected a string or an array of token ids, got " + type_name(p), "prompt");
  }
  if (r.prompt.empty()) throw BadRequest("prompt: must not be empty", "prompt");
  if (static_cast<int64_t>(r.prompt.size()) > limits.max_prompt_tokens)
    throw BadRequest("prompt: " + std::to_string(r.prompt.size()) + " tokens, more than the server's limit of " +
                     std::to_string(limits.max_prompt_tokens), "prompt");
  for (size_t i = 0; i < r.prompt.size(); ++i)
    if (r.prompt[i] >= vocab_size)
      throw BadRequest("prompt: byte " + std::to_string(r.prompt[i]) + " at position " + std::to_string(i) +
                       " is out of range for the model's vocab_size " + std::to_string(vocab_size), "prompt");
  for (const auto& [key, v] : j.items()) {
    if (key == "prompt") continue;
    if (key == "max_tokens") r.max_tokens = integer_field(v, "max_tokens", 1, limits.max_tokens);
    else if (key == "top_k") r.top_k = integer_field(v, "top_k", 0, vocab_size);
    else if (key == "seed") r.seed = static_cast<uint64_t>(integer_field(v, "seed", 0, INT64_MAX));
    else if (key == "temperature") {
      if (!v.is_number()) throw BadRequest("temperature: expected a number, got " + type_name(v), key);
      r.temperature = v.get<double>();
      if (!(r.temperature >= 0 && r.temperature <= 2))
        throw BadRequest("temperature: " + v.dump() + " is out of range [0, 2]", key);
    } else if (key == "stream") {
      if (!v.is_boolean()) throw BadRequest("stream: expected a boolean, got " + type_name(v), key);
      r.stream = v.get<bool>();
    } else if (key == "model" || key == "user") {
      if (!v.is_string()) throw BadRequest(key + ": expected a string, got " + type_name(v), key);
    } else if (key == "n") {
      integer_field(v, "n", 1, 1);
    } else if (key == "stop") {
      if (!v.is_null()) throw BadRequest("stop: stop sequences are not supported", key);
    } else {
      throw BadRequest(key + ": unknown field (mmrec-serve takes prompt, max_tokens, temperature, top_k, seed, "
                             "stream, model, n, user)", key);
    }
  }
  return r;
}

std::string token_text(int64_t token) {
  if (token < 256) return std::string(1, static_cast<char>(token));
  std::string s = "<";  // appended, not `"<" + ... + ">"`: GCC 12 warns falsely (-Wrestrict) on that
  s += std::to_string(token);
  s += '>';
  return s;
}

Completion::Completion(const Model& model, const InferencePack& pack, const CompletionRequest& req)
    : model_(model), pack_(pack), req_(req), gen_(req.seed) {}

bool Completion::next() {
  if (produced_ >= req_.max_tokens) return false;
  autograd::NoGradGuard no_grad;
  const int64_t V = model_.config().vocab_size;
  if (produced_ == 0) {
    state_ = model_.initial_state(1);
    const int64_t T = static_cast<int64_t>(req_.prompt.size());
    logits_ = model_.forward(Tensor::from_vector(req_.prompt, {1, T}), state_);
    row_ = T - 1;
  } else {
    logits_ = model_.forward(Tensor::from_vector(std::vector<int32_t>{static_cast<int32_t>(last_token_)}, {1, 1}),
                             state_, &pack_);
    row_ = 0;
  }
  last_token_ = mmrec::sample_token(logits_.data<float>() + row_ * V, V, req_.temperature, req_.top_k, gen_);
  ++produced_;
  return true;
}

std::string Utf8Pieces::push(const std::string& text) {
  pending_ += text;
  // Find where a trailing, still incomplete sequence starts.
  size_t cut = pending_.size();
  for (size_t back = 1; back <= 3 && back <= pending_.size(); ++back) {
    const auto c = static_cast<unsigned char>(pending_[pending_.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    if (need > back) cut = pending_.size() - back;
    break;
  }
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string Utf8Pieces::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace mmrec::serve
