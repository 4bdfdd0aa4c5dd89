#include "serve/dashboard.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "serve/http_common.h"

namespace mmrec::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Run {
  std::string name;
  fs::path dir;
};

// The run itself when dir holds metrics.jsonl, else its subdirectories that do.
std::vector<Run> find_runs(const std::string& dir) {
  fs::path root = fs::absolute(dir).lexically_normal();
  if (root.filename().empty()) root = root.parent_path();
  std::error_code ec;
  if (fs::exists(root / "metrics.jsonl", ec)) return {{root.filename().string(), root}};
  std::vector<Run> runs;
  for (const auto& e : fs::directory_iterator(root, ec))
    if (e.is_directory(ec) && fs::exists(e.path() / "metrics.jsonl", ec))
      runs.push_back({e.path().filename().string(), e.path()});
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.name < b.name; });
  return runs;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json run_info(const Run& r) {
  json info = {{"name", r.name}, {"dir", r.dir.string()}, {"config", nullptr}};
  std::error_code ec;
  std::ifstream cf(r.dir / "config.json");
  if (cf) {
    try {
      info["config"] = json::parse(cf);
    } catch (const json::exception&) {
    }
  }
  json ckpts = json::array();
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(r.dir / "checkpoints", ec))
    if (e.is_directory(ec) && e.path().filename().string().rfind("step-", 0) == 0) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    const fs::path w = d / "model.safetensors";
    const auto bytes = fs::file_size(w, ec);
    ckpts.push_back({{"name", d.filename().string()},
                     {"step", std::strtoll(d.filename().string().c_str() + 5, nullptr, 10)},
                     {"bytes", ec ? 0 : bytes}});
  }
  info["checkpoints"] = ckpts;
  info["final_model"] = fs::exists(r.dir / "model.safetensors", ec);
  return info;
}

// Reads the complete lines appended to a file since `offset` (at most
// max_bytes); a file that shrank (a run started over) is read from the start
// and `reset` is set.
std::vector<std::string> new_lines(const fs::path& path, uint64_t& offset, bool& reset, size_t max_bytes) {
  std::vector<std::string> lines;
  reset = false;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return lines;
  if (size < offset) offset = 0, reset = true;
  if (size == offset) return lines;
  std::ifstream f(path, std::ios::binary);
  if (!f) return lines;
  f.seekg(static_cast<std::streamoff>(offset));
  std::string buf(std::min<uint64_t>(size - offset, max_bytes), '\0');
  f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  buf.resize(static_cast<size_t>(f.gcount()));
  const size_t end = buf.rfind('\n');
  if (end == std::string::npos) return lines;
  std::istringstream in(buf.substr(0, end + 1));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  offset += end + 1;
  return lines;
}

// One client's view of the runs: how far each file has been sent.
struct Tail {
  std::map<std::string, Run> runs;
  std::map<std::string, uint64_t> offsets;  // "<run>/<file>"
  std::chrono::steady_clock::time_point last_scan{}, last_write = std::chrono::steady_clock::now();
};

std::string poll(const std::string& dir, Tail& t) {
  std::string out;
  const auto now = std::chrono::steady_clock::now();
  if (t.runs.empty() || now - t.last_scan > std::chrono::seconds(2)) {
    t.last_scan = now;
    for (const Run& r : find_runs(dir))
      if (t.runs.emplace(r.name, r).second) out += "event: run\ndata: " + dump(run_info(r)) + "\n\n";
  }
  for (const auto& [name, r] : t.runs) {
    for (const char* file : {"metrics.jsonl", "samples.jsonl"}) {
      bool reset = false;
      const std::string kind = std::strcmp(file, "metrics.jsonl") == 0 ? "metric" : "sample";
      for (const std::string& line : new_lines(r.dir / file, t.offsets[name + "/" + file], reset, 1 << 20)) {
        if (reset) out += "event: reset\ndata: " + dump({{"run", name}, {"kind", kind}}) + "\n\n", reset = false;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) continue;  // a line being written, or not ours
        j["run"] = name;
        out += "event: " + kind + "\ndata: " + dump(j) + "\n\n";
      }
    }
  }
  return out;
}

}  // namespace

std::string random_token() {
  std::random_device rd;
  std::string t;
  static const char* hex = "0123456789abcdef";
  for (int i = 0; i < 4; ++i)
    for (uint32_t v = rd(), k = 0; k < 8; ++k, v >>= 4) t += hex[v & 15];
  return t;
}

void Dashboard::install(httplib::Server& server) {
  for (unsigned long i = 0; i < kDashboardAssetCount; ++i) {
    const Asset& a = kDashboardAssets[i];
    server.Get(a.path, [&a](const httplib::Request&, httplib::Response& res) {
      res.set_content(reinterpret_cast<const char*>(a.data), a.size, a.content_type);
      res.set_header("Cache-Control", "no-cache");
    });
  }
  const std::string dir = dir_;
  const bool stoppable = static_cast<bool>(control_.stop);
  server.Get("/api/runs", [dir, stoppable](const httplib::Request&, httplib::Response& res) {
    json runs = json::array();
    for (const Run& r : find_runs(dir)) runs.push_back(run_info(r));
    reply_json(res, dump({{"dir", dir}, {"runs", runs}, {"stoppable", stoppable}}));
  });
  if (stoppable) {
    server.Post("/api/stop", [control = control_, sent = stop_sent_](const httplib::Request& req, httplib::Response& res) {
      const json j = json::parse(req.body, nullptr, false);
      if (!j.is_object() || !j.contains("token") || !j["token"].is_string())
        return reply_error(res, 400, "the body must be {\"token\": \"...\"} (the token mmrec-train printed)", "token");
      const std::string got = j["token"].get<std::string>();
      // Compared in constant time: the reply's timing tells nothing about the token.
      unsigned diff = got.size() != control.token.size();
      for (size_t i = 0; i < got.size() && i < control.token.size(); ++i) diff |= static_cast<unsigned>(got[i] ^ control.token[i]);
      if (diff != 0) return reply_error(res, 403, "wrong stop token (mmrec-train printed it beside the dashboard address)", "token");
      if (!sent->exchange(true)) control.stop();
      reply_json(res, dump({{"status", "stopping"},
                            {"message", "the run writes a checkpoint and exits, as on Ctrl-C"}}));
    });
  }
  auto stopping = stopping_;
  server.Get("/api/events", [dir, stopping](const httplib::Request&, httplib::Response& res) {
    auto tail = std::make_shared<Tail>();
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [dir, tail, stopping](size_t, httplib::DataSink& sink) {
      if (stopping->load()) return false;
      std::string out = poll(dir, *tail);
      const auto now = std::chrono::steady_clock::now();
      if (out.empty() && now - tail->last_write > std::chrono::seconds(5)) out = ": ping\n\n";  // finds a gone client
      if (out.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        return true;
      }
      tail->last_write = now;
      return sink.write(out.data(), out.size());
    });
  });
}

}  // namespace mmrec::serve
