// mmrec-serve's bounds on concurrent work: at most `streams` generations run
// at once and at most `queue` more wait for one; anything beyond is refused
// at once (the caller answers 503 with Retry-After). A Ticket holds its
// place and gives it back when destroyed, so a stream that ends early
// (a client gone mid-stream) frees its slot.
//
//   Admission adm(4, 16);
//   auto t = adm.enter();            // waits in the queue if all streams are busy
//   if (!t) return reply_503();      // queue full
//
// ConnectionPool is the server's thread pool: a fixed set of threads and a
// bounded backlog of accepted connections (enqueue blocks when it is full,
// which stops the accept loop and leaves further clients in the kernel's
// listen backlog) instead of cpp-httplib's unbounded job list.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace mmrec::serve {

class Admission {
 public:
  class Ticket {
   public:
    explicit Ticket(Admission& a) : a_(a) {}
    ~Ticket() { a_.leave(); }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    Admission& a_;
  };

  Admission(int64_t streams, int64_t queue) : streams_(streams), queue_(queue) {}

  // A running slot, after waiting in the queue if needed (at most max_wait);
  // nullptr when the queue is full or the wait timed out.
  std::unique_ptr<Ticket> enter(std::chrono::milliseconds max_wait = std::chrono::minutes(5)) {
    std::unique_lock<std::mutex> lock(m_);
    if (active_ >= streams_) {
      if (waiting_ >= queue_) return nullptr;
      ++waiting_;
      const bool got = cv_.wait_for(lock, max_wait, [&] { return active_ < streams_; });
      --waiting_;
      if (!got) return nullptr;
    }
    ++active_;
    return std::make_unique<Ticket>(*this);
  }
  int64_t active() const {
    std::lock_guard<std::mutex> lock(m_);
    return active_;
  }
  int64_t waiting() const {
    std::lock_guard<std::mutex> lock(m_);
    return waiting_;
  }
  int64_t streams() const { return streams_; }
  int64_t queue() const { return queue_; }

 private:
  void leave() {
    {
      std::lock_guard<std::mutex> lock(m_);
      --active_;
    }
    cv_.notify_one();
  }
  const int64_t streams_, queue_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  int64_t active_ = 0, waiting_ = 0;
};

class ConnectionPool : public httplib::TaskQueue {
 public:
  ConnectionPool(size_t threads, size_t backlog) : backlog_(backlog) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~ConnectionPool() override {
    if (!threads_.empty()) shutdown();
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(m_);
    room_.wait(lock, [&] { return jobs_.size() < backlog_ || stop_; });
    jobs_.push_back(std::move(fn));
    ready_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(m_);
        ready_.wait(lock, [&] { return !jobs_.empty() || stop_; });
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      fn();
    }
  }
  const size_t backlog_;
  std::mutex m_;
  std::condition_variable ready_, room_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

}  // namespace mmrec::serve
