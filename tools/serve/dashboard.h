// The training dashboard: a page (embedded in the binary, uPlot bundled, no
// request leaves the machine) with live charts of one run or of every run
// under a directory, fed by server-sent events that tail each run's
// metrics.jsonl and samples.jsonl; the run's config.json and checkpoints.
// Read-only (it never writes to a run), unless given a stop control: then
// POST /api/stop with the control's token (printed on the training's
// terminal) asks the run to stop as Ctrl-C does.
//
//   Dashboard d("runs");          // every subdirectory holding metrics.jsonl
//   d.install(server);            // GET /, /assets/*, /api/runs, /api/events
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <httplib.h>

namespace mmrec::serve {

// What stops the run the dashboard shows: a secret token and the action.
struct StopControl {
  std::string token;           // POST /api/stop must carry it ({"token": "..."})
  std::function<void()> stop;  // called once, on the first request with the right token
};

// A random token of 32 hex digits (std::random_device: the kernel's entropy).
std::string random_token();

class Dashboard {
 public:
  // dir is one run (it holds metrics.jsonl) or a directory of runs.
  explicit Dashboard(std::string dir, StopControl control = {}) : dir_(std::move(dir)), control_(std::move(control)) {}
  void install(httplib::Server& server);
  // Ends the open event streams (call before Server::stop, whose thread pool
  // waits for them).
  void stop() { stopping_->store(true); }

 private:
  std::string dir_;
  StopControl control_;
  std::shared_ptr<std::atomic<bool>> stop_sent_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> stopping_ = std::make_shared<std::atomic<bool>>(false);
};

// The page's files, generated at build time from tools/serve/page/ and the
// uPlot package (embed_assets.py).
struct Asset {
  const char* path;  // "/", "/assets/uPlot.iife.min.js", ...
  const char* content_type;
  const unsigned char* data;
  unsigned long size;
};
extern const Asset kDashboardAssets[];
extern const unsigned long kDashboardAssetCount;

}  // namespace mmrec::serve
