// C API: streaming states (feed, logits, sampling, reset, copy).
#include <algorithm>
#include <cmath>

#include "autograd/tape.h"
#include "capi/handles.h"
#include "models/sampling.h"

namespace mmrec::capi {

mmrec_state& state_of(mmrec_state* s) {
  if (s == nullptr) throw ApiError(MMREC_ERR_HANDLE, "the state handle is NULL");
  if (s->tag != kStateTag || !s->model) throw ApiError(MMREC_ERR_HANDLE, "not a state handle");
  return *s;
}

const mmrec_state& state_of(const mmrec_state* s) { return state_of(const_cast<mmrec_state*>(s)); }

namespace {

Tensor clone_if_defined(const Tensor& t) { return t.defined() ? t.clone() : t; }

State deep_copy(const State& s) {
  State c;
  c.batch = s.batch;
  for (const LayerState& l : s.layers) {
    LayerState d;
    d.h = clone_if_defined(l.h);
    d.mem_keys = clone_if_defined(l.mem_keys);
    d.mem_values = clone_if_defined(l.mem_values);
    d.chunk_k_sum = clone_if_defined(l.chunk_k_sum);
    d.chunk_v_sum = clone_if_defined(l.chunk_v_sum);
    d.chunk_tokens = l.chunk_tokens;
    d.levels_kt = clone_if_defined(l.levels_kt);
    d.levels_v = clone_if_defined(l.levels_v);
    c.layers.push_back(std::move(d));
  }
  return c;
}

}  // namespace
}  // namespace mmrec::capi

using namespace mmrec;
using namespace mmrec::capi;

extern "C" {

mmrec_status mmrec_state_create(const mmrec_model* model, mmrec_state** out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const ModelData& m = model_of(model);
    require(out != nullptr, "out is NULL");
    auto s = std::make_unique<mmrec_state>();
    s->model = model->data;
    s->state = m.model.initial_state(1);
    *out = s.release();
  });
}

void mmrec_state_free(mmrec_state* state) {
  if (state != nullptr && state->tag == kStateTag) {
    state->tag = 0;
    delete state;
  }
}

mmrec_status mmrec_state_feed(mmrec_state* state, const int32_t* tokens, size_t n) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    mmrec_state& s = state_of(state);
    require(tokens != nullptr, "tokens is NULL");
    require(n >= 1, "n must be >= 1");
    const Model& model = s.model->model;
    const int64_t V = model.config().vocab_size;
    for (size_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= V)
        throw ApiError(MMREC_ERR_ARGUMENT, "token " + std::to_string(tokens[i]) + " at position " +
                                               std::to_string(i) + " is outside the model's vocab_size " +
                                               std::to_string(V));
    autograd::NoGradGuard no_grad;
    const Tensor ids = Tensor::from_vector(std::vector<int32_t>(tokens, tokens + n), {1, static_cast<int64_t>(n)});
    // Model::forward replaces the state only when it succeeds.
    const Tensor logits = model.forward(ids, s.state, n == 1 ? &s.model->pack_for_one_token() : nullptr);
    const float* last = logits.data<float>() + (static_cast<int64_t>(n) - 1) * V;
    s.logits.assign(last, last + V);
    s.position += static_cast<int64_t>(n);
  });
}

mmrec_status mmrec_state_logits(const mmrec_state* state, float* out, size_t cap) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const mmrec_state& s = state_of(state);
    if (s.logits.empty()) throw ApiError(MMREC_ERR_STATE, "no token has been fed yet");
    require(out != nullptr, "out is NULL");
    if (cap < s.logits.size())
      throw ApiError(MMREC_ERR_BUFFER, "the buffer holds " + std::to_string(cap) + " floats, " +
                                           std::to_string(s.logits.size()) + " (vocab_size) are needed");
    std::copy(s.logits.begin(), s.logits.end(), out);
  });
}

mmrec_status mmrec_state_sample(mmrec_state* state, float temperature, int32_t top_k, int32_t* out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    mmrec_state& s = state_of(state);
    require(std::isfinite(temperature) && temperature >= 0, "temperature must be finite and >= 0");
    require(top_k >= 0, "top_k must be >= 0 (0: the whole vocabulary)");
    require(out != nullptr, "out is NULL");
    if (s.logits.empty()) throw ApiError(MMREC_ERR_STATE, "no token has been fed yet");
    *out = static_cast<int32_t>(
        sample_token(s.logits.data(), static_cast<int64_t>(s.logits.size()), temperature, top_k, s.rng));
  });
}

mmrec_status mmrec_state_seed(mmrec_state* state, uint64_t seed) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] { state_of(state).rng = Generator(seed); });
}

mmrec_status mmrec_state_reset(mmrec_state* state) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    mmrec_state& s = state_of(state);
    s.state = s.model->model.initial_state(1);
    s.logits.clear();
    s.position = 0;
  });
}

mmrec_status mmrec_state_copy(const mmrec_state* state, mmrec_state** out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const mmrec_state& s = state_of(state);
    require(out != nullptr, "out is NULL");
    auto c = std::make_unique<mmrec_state>();
    c->model = s.model;
    c->state = deep_copy(s.state);
    c->logits = s.logits;
    c->rng = s.rng;
    c->position = s.position;
    *out = c.release();
  });
}

mmrec_status mmrec_state_position(const mmrec_state* state, int64_t* out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const mmrec_state& s = state_of(state);
    require(out != nullptr, "out is NULL");
    *out = s.position;
  });
}

}  // extern "C"
