#include "serve/batcher.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <optional>
#include <stdexcept>
#include <thread>

#include "autograd/tape.h"
#include "models/generation.h"
#include "models/sampling.h"

namespace mmrec::serve {

// One request as its cohort sees it: its settings, its sampler, and the
// tokens handed over to the consumer.
struct Batcher::Slot {
  explicit Slot(const CompletionRequest& r) : req(r), gen(r.seed) {}
  CompletionRequest req;
  Generator gen;              // used by the cohort thread only
  int64_t sampled = 0;        // cohort thread only
  std::atomic<bool> gone{false};  // the consumer left
  std::mutex mu;
  std::condition_variable cv;
  std::deque<int64_t> ready;  // sampled, not yet taken
  bool finished = false;
  std::string error;

  void push(int64_t token) {
    std::lock_guard<std::mutex> lock(mu);
    ready.push_back(token);
    cv.notify_one();
  }
  void finish(const std::string& why = "") {
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
    error = why;
    cv.notify_one();
  }
  bool wants_more() const { return sampled < req.max_tokens && !gone.load(std::memory_order_relaxed); }
};

struct Batcher::Cohort {
  int64_t prompt_tokens = 0;
  std::vector<std::shared_ptr<Slot>> members;
};

Batcher::Stream::~Stream() { slot_->gone = true; }

bool Batcher::Stream::next() {
  std::unique_lock<std::mutex> lock(slot_->mu);
  slot_->cv.wait(lock, [&] { return !slot_->ready.empty() || slot_->finished; });
  if (slot_->ready.empty()) {
    if (!slot_->error.empty()) throw std::runtime_error(slot_->error);
    return false;
  }
  last_token_ = slot_->ready.front();
  slot_->ready.pop_front();
  ++produced_;
  return true;
}

int64_t Batcher::Stream::prompt_tokens() const { return static_cast<int64_t>(slot_->req.prompt.size()); }

Batcher::Batcher(const Model& model, const InferencePack& pack, const BatchOptions& opt)
    : model_(model), pack_(pack), opt_(opt) {
  check(opt.max_batch >= 1 && opt.max_batch <= 64, "Batcher: max_batch must be in [1, 64], got ", opt.max_batch);
}

Batcher::~Batcher() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return running_ == 0; });
}

int64_t Batcher::cohorts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cohorts_;
}

int64_t Batcher::largest_cohort() const {
  std::lock_guard<std::mutex> lock(mu_);
  return largest_;
}

std::unique_ptr<Batcher::Stream> Batcher::start(const CompletionRequest& req) {
  auto slot = std::make_shared<Slot>(req);
  const auto T = static_cast<int64_t>(req.prompt.size());
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& c : forming_)
    if (c->prompt_tokens == T && static_cast<int64_t>(c->members.size()) < opt_.max_batch) {
      c->members.push_back(slot);
      largest_ = std::max(largest_, static_cast<int64_t>(c->members.size()));
      joined_.notify_all();
      return std::make_unique<Stream>(slot);
    }
  auto c = std::make_shared<Cohort>();
  c->prompt_tokens = T;
  c->members.push_back(slot);
  if (opt_.max_batch > 1) forming_.push_back(c);
  ++running_, ++cohorts_;
  largest_ = std::max<int64_t>(largest_, 1);
  std::thread([this, c] { run(c); }).detach();  // ~Batcher waits for running_ to drop to 0
  return std::make_unique<Stream>(slot);
}

void Batcher::run(const std::shared_ptr<Cohort>& c) {
  if (opt_.max_batch > 1) {
    // Others with this prompt length join meanwhile: the cohort starts when
    // none has joined for a window (clients started together arrive spread
    // out on a busy machine), when it is full, or after 10 windows.
    std::unique_lock<std::mutex> lock(mu_);
    const auto cap = std::chrono::steady_clock::now() + 10 * opt_.window;
    for (size_t seen = 0; static_cast<int64_t>(seen = c->members.size()) < opt_.max_batch;) {
      const bool joined = joined_.wait_for(lock, opt_.window, [&] { return c->members.size() != seen; });
      if (!joined || std::chrono::steady_clock::now() >= cap) break;
    }
    forming_.erase(std::find(forming_.begin(), forming_.end(), c));
  }
  const std::vector<std::shared_ptr<Slot>>& all = c->members;  // fixed from here on
  const int64_t V = model_.config().vocab_size, T = c->prompt_tokens;
  try {
    autograd::NoGradGuard no_grad;
    // The prompts in one [n, T] call; then one [m, 1] call per token for the
    // m streams still wanting tokens (rows[i]: the stream in batch row i).
    std::vector<int32_t> ids;
    for (const auto& s : all) ids.insert(ids.end(), s->req.prompt.begin(), s->req.prompt.end());
    const auto n = static_cast<int64_t>(all.size());
    State state = model_.initial_state(n);
    Tensor logits = model_.forward(Tensor::from_vector(ids, {n, T}), state);
    std::vector<int64_t> rows(static_cast<size_t>(n)), last(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
    int64_t stride = T, at = T - 1;  // where row i's logits start: (i * stride + at) * V
    std::optional<GenerationGraph> graph;  // compile: the state lives in its fixed-shape buffers
    if (opt_.compile) graph.emplace(model_, state, &pack_);
    while (true) {
      for (size_t r = 0; r < rows.size(); ++r) {
        Slot& s = *all[static_cast<size_t>(rows[r])];
        const float* l = logits.data<float>() + (static_cast<int64_t>(r) * stride + at) * V;
        last[r] = sample_token(l, V, s.req.temperature, s.req.top_k, s.gen);
        ++s.sampled;
        s.push(last[r]);
      }
      // Keep the rows whose streams want more.
      std::vector<int64_t> keep, next_rows;
      std::vector<int32_t> next;
      for (size_t r = 0; r < rows.size(); ++r)
        if (all[static_cast<size_t>(rows[r])]->wants_more()) {
          keep.push_back(static_cast<int64_t>(r));
          next_rows.push_back(rows[r]);
          next.push_back(static_cast<int32_t>(last[r]));
        }
      if (keep.empty()) break;
      if (keep.size() != rows.size()) {
        state = select_rows(graph ? graph->state() : state, keep);
        if (graph) graph.emplace(model_, state, &pack_);  // the smaller batch: captured again
      }
      rows = next_rows;
      const auto m = static_cast<int64_t>(rows.size());
      const Tensor tokens = Tensor::from_vector(next, {m, 1});
      logits = graph ? graph->step(tokens) : model_.forward(tokens, state, &pack_);
      stride = 1, at = 0;
    }
    for (const auto& s : all) s->finish();
  } catch (const std::exception& e) {
    for (const auto& s : all) s->finish(e.what());
  } catch (...) {  // every consumer must wake up, whatever was thrown
    for (const auto& s : all) s->finish("generation failed");
  }
  std::lock_guard<std::mutex> lock(mu_);
  --running_;
  idle_.notify_all();
}

State select_rows(const State& s, const std::vector<int64_t>& rows) {
  const auto n = static_cast<int64_t>(rows.size());
  auto pick = [&](const Tensor& t) {
    if (!t.defined()) return t;
    Shape shape = t.shape();
    shape[0] = n;
    Tensor out = Tensor::empty(shape, t.dtype());
    for (int64_t i = 0; i < n; ++i) {
      Tensor dst = out.slice(0, i, i + 1);
      dst.copy_from(t.slice(0, rows[static_cast<size_t>(i)], rows[static_cast<size_t>(i)] + 1));
    }
    return out;
  };
  State out;
  out.batch = n;
  for (const LayerState& l : s.layers) {
    LayerState k;
    k.h = pick(l.h);
    k.mem_keys = pick(l.mem_keys);
    k.mem_values = pick(l.mem_values);
    k.chunk_k_sum = pick(l.chunk_k_sum);
    k.chunk_v_sum = pick(l.chunk_v_sum);
    k.chunk_tokens = l.chunk_tokens;
    // levels_kt / levels_v stay undefined: the model recomputes them.
    out.layers.push_back(std::move(k));
  }
  return out;
}

}  // namespace mmrec::serve
