#include "serve/run_files.h"

#include <cstdio>
#include <filesystem>
#include <httplib.h>
#include <stdexcept>
#include <vector>

#include "autograd/tape.h"
#include "models/sampling.h"
#include "serve/admission.h"
#include "serve/dashboard.h"
#include "serve/http_common.h"
#include "train/fileio.h"

namespace mmrec::serve {

namespace fs = std::filesystem;

void write_run_config(const std::string& run_dir, const nlohmann::json& config) {
  fs::create_directories(run_dir);
  write_file_atomic((fs::path(run_dir) / "config.json").string(), config.dump(2) + "\n");
}

void append_eval_sample(const std::string& run_dir, const Model& model, const Tokenizer& tok, int64_t step,
                        int64_t tokens) {
  autograd::NoGradGuard no_grad;
  const std::string prompt = "The ";
  std::vector<int32_t> ids = tok.encode(prompt);
  const int64_t V = model.config().vocab_size;
  Generator g(static_cast<uint64_t>(step));
  State state = model.initial_state(1);
  Tensor logits = model.forward(Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())}), state);
  int64_t row = static_cast<int64_t>(ids.size()) - 1;
  std::vector<int32_t> out;
  for (int64_t n = 0; n < tokens; ++n) {
    const int64_t next = mmrec::sample_token(logits.data<float>() + row * V, V, 0.8, 40, g);
    out.push_back(static_cast<int32_t>(next));
    if (n + 1 == tokens) break;
    logits = model.forward(Tensor::from_vector(std::vector<int32_t>{static_cast<int32_t>(next)}, {1, 1}), state);
    row = 0;
  }
  const std::string line =
      nlohmann::json{{"step", step}, {"prompt", prompt}, {"text", tok.decode(out)}}.dump(
          -1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::FILE* f = std::fopen((fs::path(run_dir) / "samples.jsonl").c_str(), "ab");
  if (!f) throw std::runtime_error("cannot append to " + (fs::path(run_dir) / "samples.jsonl").string());
  std::fwrite(line.data(), 1, line.size(), f);
  std::fclose(f);
}

DashboardServer::DashboardServer(const std::string& dir, const std::string& host, int port, std::function<void()> stop)
    : server_(std::make_unique<httplib::Server>()), token_(stop ? random_token() : "") {
  dashboard_ = std::make_unique<Dashboard>(dir, StopControl{token_, std::move(stop)});
  dashboard_->install(*server_);
  install_error_handlers(*server_);
  server_->set_keep_alive_timeout(2);
  server_->new_task_queue = [] { return new ConnectionPool(8, 8); };
  port_ = bind_server(*server_, host, port);
  if (port_ < 0) throw std::runtime_error("--dashboard: cannot listen on " + host + ":" + std::to_string(port));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

DashboardServer::~DashboardServer() {
  dashboard_->stop();
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace mmrec::serve
