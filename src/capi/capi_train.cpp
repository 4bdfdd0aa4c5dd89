// C API: training on in-memory text (model, AdamW, schedule, clipping: the
// pieces tools/mmrec-train uses, without files, evaluation or checkpoints).
#include <cmath>
#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "capi/handles.h"
#include "ops/elementwise.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/train_config.h"
#include "train/trainer.h"

struct mmrec_trainer {
  mmrec_trainer(const mmrec::TrainConfig& c, mmrec::Model m, mmrec::Tokenizer t)
      : cfg(c),
        model(std::move(m)),
        tokenizer(std::move(t)),
        opt(model.parameters(), mmrec::decay_mask(model.parameters(), cfg.train), cfg.train),
        schedule(cfg.schedule, cfg.train.lr, cfg.train.steps),
        data_rng(static_cast<uint64_t>(cfg.train.seed) ^ 0xD1B54A32D192ED03ull) {}

  uint32_t tag = mmrec::capi::kTrainerTag;
  mmrec::TrainConfig cfg;
  mmrec::Model model;
  mmrec::Tokenizer tokenizer;
  mmrec::AdamW opt;
  mmrec::LrSchedule schedule;
  mmrec::Generator data_rng;
  std::vector<int32_t> tokens;  // the text to train on
  int64_t step = 0;
};

namespace mmrec::capi {
namespace {

mmrec_trainer& trainer_of(mmrec_trainer* t) {
  if (t == nullptr) throw ApiError(MMREC_ERR_HANDLE, "the trainer handle is NULL");
  if (t->tag != kTrainerTag) throw ApiError(MMREC_ERR_HANDLE, "not a trainer handle");
  return *t;
}

// A model of the same config holding a copy of m's weights.
Model copy_model(const Model& m) {
  Model c(m.config());
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < m.parameters().size(); ++i) {
    Tensor dst = c.parameters()[i].second;
    dst.copy_from(m.parameters()[i].second);
  }
  return c;
}

Tokenizer config_tokenizer(const std::string& spec) {
  if (spec == "byte") return Tokenizer::byte_level();
  try {
    return Tokenizer::load(spec);
  } catch (const Error& e) {
    throw ApiError(MMREC_ERR_CONFIG, std::string("data.tokenizer: ") + e.what());
  }
}

// B windows of W consecutive tokens, each starting at a position drawn from g.
Tensor draw_batch(const std::vector<int32_t>& tokens, Generator& g, int64_t B, int64_t W) {
  const uint64_t starts = tokens.size() - static_cast<size_t>(W) + 1;
  std::vector<int32_t> v;
  v.reserve(static_cast<size_t>(B * W));
  for (int64_t b = 0; b < B; ++b) {
    const size_t s = static_cast<size_t>(g.next_u64() % starts);
    v.insert(v.end(), tokens.begin() + static_cast<std::ptrdiff_t>(s),
             tokens.begin() + static_cast<std::ptrdiff_t>(s + static_cast<size_t>(W)));
  }
  return Tensor::from_vector(v, {B, W});
}

}  // namespace
}  // namespace mmrec::capi

using namespace mmrec;
using namespace mmrec::capi;

extern "C" {

mmrec_status mmrec_trainer_create(const char* config_json, const mmrec_model* init, mmrec_trainer** out) {
  return api_call(__func__, MMREC_ERR_CONFIG, [&] {
    require(config_json != nullptr, "config_json is NULL");
    require(out != nullptr, "out is NULL");
    const ModelData* base = init != nullptr ? &model_of(init) : nullptr;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(config_json);
    } catch (const nlohmann::json::exception& e) {
      throw ApiError(MMREC_ERR_CONFIG, std::string("config_json is not valid JSON: ") + e.what());
    }
    require(j.is_object(), "config_json must be a JSON object");
    if (base != nullptr && !j.contains("model")) j["model"] = base->model.config().to_json();
    // The text comes from memory: of the data section only the tokenizer is used.
    nlohmann::json data = {{"source", "synthetic"}};
    if (j.contains("data") && j["data"].is_object() && j["data"].contains("tokenizer"))
      data["tokenizer"] = j["data"]["tokenizer"];
    j["data"] = data;
    const TrainConfig cfg = TrainConfig::from_json(j);
    const ModelConfig mc = ModelConfig::from_json(cfg.model);
    if (base != nullptr) {
      const std::string diff = first_json_difference(mc.resolved().to_json(), base->model.config().to_json());
      if (!diff.empty())
        throw ApiError(MMREC_ERR_CONFIG, "model." + diff + ": differs from the initial model's config");
    }
    Tokenizer tok = base != nullptr ? base->tokenizer : config_tokenizer(cfg.data.tokenizer);
    check(mc.vocab_size >= tok.vocab_size(), "model.vocab_size: ", mc.vocab_size,
          " is smaller than the tokenizer's ", tok.vocab_size(), " ids");
    Model model = base != nullptr ? copy_model(base->model) : Model(mc, static_cast<uint64_t>(cfg.train.seed));
    *out = new mmrec_trainer(cfg, std::move(model), std::move(tok));
  });
}

void mmrec_trainer_free(mmrec_trainer* trainer) {
  if (trainer != nullptr && trainer->tag == kTrainerTag) {
    trainer->tag = 0;
    delete trainer;
  }
}

mmrec_status mmrec_trainer_set_text(mmrec_trainer* trainer, const char* text, size_t len) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    mmrec_trainer& t = trainer_of(trainer);
    require(text != nullptr, "text is NULL");
    std::vector<int32_t> ids = t.tokenizer.encode(std::string_view(text, len));
    const int64_t window = t.cfg.train.seq_len + 1;
    if (static_cast<int64_t>(ids.size()) < window)
      throw ApiError(MMREC_ERR_ARGUMENT, "the text has " + std::to_string(ids.size()) +
                                             " tokens, train.seq_len + 1 = " + std::to_string(window) +
                                             " are needed");
    t.tokens = std::move(ids);
  });
}

mmrec_status mmrec_trainer_step(mmrec_trainer* trainer, mmrec_step_result* out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    mmrec_trainer& t = trainer_of(trainer);
    if (t.tokens.empty()) throw ApiError(MMREC_ERR_STATE, "no text to train on (call mmrec_trainer_set_text)");
    const int64_t B = t.cfg.train.batch_size, W = t.cfg.train.seq_len + 1, A = t.cfg.train.grad_accum;
    const double lr = t.schedule.lr(t.step);
    double loss_sum = 0.0;
    try {
      for (int64_t a = 0; a < A; ++a) {
        Tensor loss = t.model.loss(draw_batch(t.tokens, t.data_rng, B, W));
        loss_sum += loss.item();
        // The mean over A equal micro-batches is the mean of one large batch.
        autograd::backward(A > 1 ? ops::scale(loss, 1.0f / static_cast<float>(A)) : loss);
      }
    } catch (...) {
      t.opt.zero_grad();  // no half-accumulated gradient is left for the next step
      throw;
    }
    const double loss = loss_sum / static_cast<double>(A);
    if (!std::isfinite(loss)) {
      t.opt.zero_grad();
      throw ApiError(MMREC_ERR_INTERNAL, "training diverged: the loss is " + std::to_string(loss) + " at step " +
                                             std::to_string(t.step + 1) + " (try a lower train.lr)");
    }
    const double gn = clip_grad_norm(t.model.parameters(), t.cfg.train.grad_clip);
    t.opt.step(lr);
    t.opt.zero_grad();
    ++t.step;
    if (out != nullptr) *out = mmrec_step_result{t.step, loss, lr, gn};
  });
}

mmrec_status mmrec_trainer_model(const mmrec_trainer* trainer, mmrec_model** out) {
  return api_call(__func__, MMREC_ERR_INTERNAL, [&] {
    const mmrec_trainer& t = trainer_of(const_cast<mmrec_trainer*>(trainer));
    require(out != nullptr, "out is NULL");
    emit_model(std::make_shared<const ModelData>(copy_model(t.model), t.tokenizer, DType::f32), out);
  });
}

}  // extern "C"
