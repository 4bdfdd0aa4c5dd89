// What mmrec-train adds to a run directory for the dashboard, and the
// dashboard server it runs beside training (--dashboard [PORT]):
// config.json (the effective config) and samples.jsonl (one generated text
// per evaluation: {"step", "prompt", "text"}).
//
//   serve::write_run_config(run_dir, trainer.effective_config());
//   serve::append_eval_sample(run_dir, trainer.model(), trainer.tokenizer(), step);
//   serve::DashboardServer d(run_dir, "127.0.0.1", 8080);   // serves until destroyed
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "models/model.h"
#include "train/tokenizer.h"

namespace httplib {
class Server;
}

namespace mmrec::serve {

class Dashboard;

void write_run_config(const std::string& run_dir, const nlohmann::json& config);

// Generates `tokens` tokens after "The " (temperature 0.8, top-k 40, seed =
// step) with the current weights and appends them to samples.jsonl.
void append_eval_sample(const std::string& run_dir, const Model& model, const Tokenizer& tok, int64_t step,
                        int64_t tokens = 96);

// The dashboard of one directory on its own thread; port 0 picks a free one.
// With a stop action, the page may stop the run with the token this makes
// (token(): print it on the terminal). Throws when it cannot listen.
class DashboardServer {
 public:
  DashboardServer(const std::string& dir, const std::string& host, int port, std::function<void()> stop = {});
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;
  int port() const { return port_; }
  const std::string& token() const { return token_; }  // empty without a stop action

 private:
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<Dashboard> dashboard_;
  std::thread thread_;
  int port_ = 0;
  std::string token_;
};

}  // namespace mmrec::serve
