#include "serve/inference.h"

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "serve/http_common.h"

namespace mmrec::serve {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// One streamed completion: its slot, its generation state, the bytes held
// back to keep characters whole.
struct Stream {
  std::unique_ptr<Admission::Ticket> ticket;
  std::unique_ptr<Batcher::Stream> completion;
  Utf8Pieces pieces;
  std::string id;
  int64_t created = 0;
  bool finished = false;
};

}  // namespace

InferenceService::InferenceService(Model model, const InferenceOptions& opt)
    : model_(std::move(model)), opt_(opt), admission_(opt.streams, opt.queue) {
  pack_ = model_.pack_for_inference(1);
  batcher_ = std::make_unique<Batcher>(model_, pack_, opt_.batch);
}

std::string InferenceService::dtype() const {
  return model_.quantization() ? "int8" : model_.uses_bf16() ? "bf16" : "f32";
}

std::string InferenceService::next_id() { return "cmpl-" + std::to_string(++served_); }

void InferenceService::install(httplib::Server& server) {
  server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    reply_json(res, json{{"status", "ok"},
                         {"streams_active", admission_.active()},
                         {"queued", admission_.waiting()},
                         {"streams", admission_.streams()},
                         {"cohorts", batcher_->cohorts()},
                         {"largest_cohort", batcher_->largest_cohort()},
                         {"queue", admission_.queue()}}
                        .dump());
  });
  server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const ModelConfig& c = model_.config();
    reply_json(res, json{{"object", "list"},
                         {"data", json::array({json{{"id", opt_.name},
                                                    {"object", "model"},
                                                    {"created", 0},
                                                    {"owned_by", "mmrec"},
                                                    {"parameters", model_.num_parameters()},
                                                    {"dtype", dtype()},
                                                    {"vocab_size", c.vocab_size},
                                                    {"dim", c.dim},
                                                    {"layers", c.layers}}})}}
                        .dump());
  });
  server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res); });
}

void InferenceService::completions(const httplib::Request& http, httplib::Response& res) {
  CompletionRequest req;
  try {
    req = parse_completion(http.body, opt_.limits, model_.config().vocab_size);
  } catch (const BadRequest& e) {
    reply_error(res, 400, e.what(), e.param);
    return;
  }
  std::unique_ptr<Admission::Ticket> ticket = admission_.enter();
  if (!ticket) {
    res.set_header("Retry-After", "1");
    reply_error(res, 503, "the server is busy (" + std::to_string(admission_.streams()) + " streams running, " +
                              std::to_string(admission_.queue()) + " requests waiting): retry later");
    return;
  }
  const std::string id = next_id();
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  if (!req.stream) {
    std::unique_ptr<Batcher::Stream> stream = batcher_->start(req);
    Batcher::Stream& c = *stream;
    std::string text;
    std::vector<int64_t> tokens;
    while (c.next()) {
      tokens.push_back(c.last_token());
      text += token_text(c.last_token());
    }
    ticket.reset();
    json choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", "length"},
                   {"tokens", tokens}};
    reply_json(res, dump({{"id", id},
                          {"object", "text_completion"},
                          {"created", created},
                          {"model", opt_.name},
                          {"choices", json::array({choice})},
                          {"usage",
                           {{"prompt_tokens", c.prompt_tokens()},
                            {"completion_tokens", c.produced()},
                            {"total_tokens", c.prompt_tokens() + c.produced()}}}}));
    return;
  }
  // Streaming: one event per token, generated as the client reads. The
  // stream (and its slot) lives as long as the provider, which cpp-httplib
  // drops when the response ends or a write fails (client gone).
  auto st = std::make_shared<Stream>(Stream{std::move(ticket), batcher_->start(req), {}, id, created});
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  const std::string name = opt_.name;
  res.set_chunked_content_provider("text/event-stream", [st, name](size_t, httplib::DataSink& sink) {
    auto event = [&](const std::string& text, const json& token, const json& finish) {
      json choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
      if (!token.is_null()) choice["token"] = token;
      const std::string line = "data: " + dump({{"id", st->id},
                                                 {"object", "text_completion"},
                                                 {"created", st->created},
                                                 {"model", name},
                                                 {"choices", json::array({choice})}}) +
                               "\n\n";
      return sink.write(line.data(), line.size());
    };
    if (st->completion->next()) {
      const std::string piece = st->pieces.push(token_text(st->completion->last_token()));
      return event(piece, st->completion->last_token(), nullptr);
    }
    const bool ok = event(st->pieces.flush(), nullptr, "length");
    static const std::string done = "data: [DONE]\n\n";
    if (ok && sink.write(done.data(), done.size())) {
      st->ticket.reset();
      sink.done();
      return true;
    }
    return false;
  });
}

}  // namespace mmrec::serve
