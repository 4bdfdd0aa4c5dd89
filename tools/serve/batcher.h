// Batched generation for mmrec-serve: streams that are at the same position
// (same prompt length, started together) share one model call per token, a
// [n, 1] batch through the packed weights, so the weights are read once per
// token for all n instead of once per stream. Requests with the same prompt
// length arriving less than a window apart form a cohort; each cohort runs
// on its own thread (cohorts run at once), and a stream that finishes or
// whose client leaves drops out of its cohort's batch at the next token.
// With `compile` a cohort's one-token calls replay a GenerationGraph of its
// batch (captured again when a stream drops out): its streams share one
// position, so one fixed-shape state serves them all.
//
//   Batcher b(model, pack, {.max_batch = 16, .window = std::chrono::milliseconds(10)});
//   std::unique_ptr<Batcher::Stream> s = b.start(req);
//   while (s->next()) piece += token_text(s->last_token());
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "models/model.h"
#include "serve/completion.h"

namespace mmrec::serve {

struct BatchOptions {
  int64_t max_batch = 16;  // streams in one cohort (1: every stream alone), at most 64
  std::chrono::microseconds window{10000};  // a forming cohort starts when none joined for this long
  bool compile = false;  // the one-token calls through a captured GenerationGraph (mmrec-serve --compile)
};

class Batcher {
  struct Slot;
  struct Cohort;

 public:
  // model and pack are shared read-only and must outlive the Batcher.
  Batcher(const Model& model, const InferencePack& pack, const BatchOptions& opt);
  ~Batcher();  // waits for the cohorts still running (their clients gone or done)
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // One request's tokens, produced by its cohort; the consumer side.
  class Stream {
   public:
    explicit Stream(std::shared_ptr<Slot> slot) : slot_(std::move(slot)) {}
    ~Stream();  // a stream dropped early (client gone) leaves its cohort
    // Waits for the next token; false once max_tokens are out. Throws what
    // the cohort's model call threw.
    bool next();
    int64_t last_token() const { return last_token_; }
    int64_t produced() const { return produced_; }
    int64_t prompt_tokens() const;

   private:
    std::shared_ptr<Slot> slot_;
    int64_t last_token_ = -1, produced_ = 0;
  };

  std::unique_ptr<Stream> start(const CompletionRequest& req);

  // Cohorts started so far, and the most streams one of them held.
  int64_t cohorts() const;
  int64_t largest_cohort() const;

 private:
  void run(const std::shared_ptr<Cohort>& c);

  const Model& model_;
  const InferencePack& pack_;
  BatchOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable idle_;    // running_ dropped
  std::condition_variable joined_;  // a stream joined a forming cohort
  std::vector<std::shared_ptr<Cohort>> forming_;  // still taking members
  int64_t running_ = 0, cohorts_ = 0, largest_ = 0;
};

// The rows of a batched state, in that order (a stream leaving its cohort).
State select_rows(const State& s, const std::vector<int64_t>& rows);

}  // namespace mmrec::serve
