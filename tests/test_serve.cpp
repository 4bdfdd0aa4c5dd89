// mmrec-serve end to end on a loopback port with a tiny checkpoint written
// here: completions (greedy equals mmrec-generate), streaming, 16 concurrent
// clients, the queue limit, malformed requests, a client gone mid-stream and
// a soak of 1,000 requests with stable memory, bf16 and int8 weights. meson
// passes the binaries' paths in MMREC_SERVE, MMREC_GENERATE and MMREC_QUANTIZE. All traffic goes to 127.0.0.1.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "models/safetensors.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace mmrec;
using nlohmann::json;

namespace {

std::string tmp(const std::string& name) { return "/tmp/mmrec_test_serve_" + std::to_string(::getpid()) + "_" + name; }

const char* tool(const char* env) {
  const char* bin = std::getenv(env);
  REQUIRE_MESSAGE(bin != nullptr, env, " is not set (run through meson test)");
  return bin;
}

// The tools' tiny model, saved once per process.
std::string tiny_checkpoint() {
  static const std::string path = [] {
    const Model m = test_util::tiny_model();
    const std::string p = tmp("tiny.safetensors");
    save_model(p, m);
    return p;
  }();
  static const struct Remove {
    ~Remove() { std::remove(path.c_str()); }
  } remove_at_exit;
  return path;
}

// mmrec-serve on a free loopback port; stopped (SIGTERM) when destroyed.
class Server {
 public:
  explicit Server(std::vector<std::string> args, const std::string& checkpoint = tiny_checkpoint()) {
    args.insert(args.begin(), {tool("MMREC_SERVE"), "--checkpoint", checkpoint, "--port", "0", "--threads", "1"});
    int out[2];
    REQUIRE(::pipe(out) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
    ::close(out[0]);
    const auto at = line.find("127.0.0.1:");
    REQUIRE_MESSAGE(at != std::string::npos, "mmrec-serve printed: ", line);
    port_ = std::atoi(line.c_str() + at + 10);
    REQUIRE(port_ > 0);
  }
  ~Server() {
    ::kill(pid_, SIGTERM);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    CHECK_MESSAGE((WIFEXITED(st) && WEXITSTATUS(st) == 0), "mmrec-serve did not stop cleanly on SIGTERM");
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30);
    return c;
  }
  // Resident memory of the server process, in kB.
  long rss_kb() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    for (std::string l; std::getline(f, l);)
      if (l.rfind("VmRSS:", 0) == 0) return std::atol(l.c_str() + 6);
    return -1;
  }
  json health() const {
    auto r = client().Get("/health");
    REQUIRE(r);
    return json::parse(r->body);
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

json post(const Server& s, const json& body, int expect = 200) {
  auto r = s.client().Post("/v1/completions", body.dump(), "application/json");
  REQUIRE(r);
  CHECK_MESSAGE(r->status == expect, r->body);
  return json::parse(r->body);
}

std::vector<int64_t> tokens_of(const json& reply) { return reply["choices"][0]["tokens"].get<std::vector<int64_t>>(); }

// The ids mmrec-generate prints for the same request (extra: more of its options).
std::vector<int64_t> generate_ids(const std::string& prompt, int n, double temperature, int top_k, int seed,
                                  const std::string& checkpoint = tiny_checkpoint(), const std::string& extra = "") {
  const std::string out = tmp("gen.txt");
  char cmd[2048];
  std::snprintf(cmd, sizeof cmd, "'%s' --checkpoint '%s' --prompt '%s' --tokens %d --temperature %g --top-k %d --seed %d --ids %s >%s",
                tool("MMREC_GENERATE"), checkpoint.c_str(), prompt.c_str(), n, temperature, top_k, seed,
                extra.c_str(), out.c_str());
  REQUIRE(std::system(cmd) == 0);
  std::ifstream f(out);
  std::vector<int64_t> ids;
  for (int64_t v; f >> v;) ids.push_back(v);
  std::remove(out.c_str());
  return ids;
}

// A streamed completion: the token of each event, whether [DONE] came last.
struct Streamed {
  std::vector<int64_t> tokens;
  std::string finish;
  bool done = false;
};

Streamed stream(const Server& s, json body) {
  body["stream"] = true;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string buf;
  Streamed out;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    for (size_t end; (end = buf.find("\n\n")) != std::string::npos; buf.erase(0, end + 2)) {
      const std::string ev = buf.substr(0, end);
      REQUIRE(ev.rfind("data: ", 0) == 0);
      if (ev == "data: [DONE]") {
        out.done = true;
        continue;
      }
      const json j = json::parse(ev.substr(6));
      const json& c = j["choices"][0];
      if (c.contains("token")) out.tokens.push_back(c["token"].get<int64_t>());
      if (!c["finish_reason"].is_null()) out.finish = c["finish_reason"].get<std::string>();
    }
    return true;
  };
  auto r = s.client().send(req);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/event-stream");
  return out;
}

template <class Pred>
bool eventually(Pred pred, double seconds = 10) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace

TEST_CASE("completions: greedy and seeded sampling equal mmrec-generate; streaming gives the same tokens") {
  Server s({});
  const json greedy = post(s, {{"prompt", "hello"}, {"max_tokens", 24}, {"temperature", 0}});
  CHECK(tokens_of(greedy) == generate_ids("hello", 24, 0, 0, 1));
  CHECK(greedy["object"] == "text_completion");
  CHECK(greedy["usage"]["prompt_tokens"] == 5);
  CHECK(greedy["usage"]["completion_tokens"] == 24);
  CHECK(greedy["choices"][0]["finish_reason"] == "length");
  const json sampled = post(s, {{"prompt", "abc"}, {"max_tokens", 20}, {"temperature", 0.8}, {"top_k", 5}, {"seed", 7}});
  CHECK(tokens_of(sampled) == generate_ids("abc", 20, 0.8, 5, 7));
  // A prompt as token ids is the same request.
  CHECK(tokens_of(post(s, {{"prompt", {104, 101, 108, 108, 111}}, {"max_tokens", 24}, {"temperature", 0}})) ==
        tokens_of(greedy));

  const Streamed st = stream(s, {{"prompt", "hello"}, {"max_tokens", 24}, {"temperature", 0}});
  CHECK(st.tokens == tokens_of(greedy));
  CHECK(st.finish == "length");
  CHECK(st.done);

  auto models = s.client().Get("/v1/models");
  REQUIRE(models);
  const json m = json::parse(models->body);
  CHECK(m["data"][0]["object"] == "model");
  CHECK(m["data"][0]["vocab_size"] == 256);
  CHECK(s.health()["status"] == "ok");
}

TEST_CASE("--dtype bf16 and int8 checkpoints: greedy output equals mmrec-generate's on the same weights") {
  {
    Server s({"--dtype", "bf16"});
    auto models = s.client().Get("/v1/models");
    REQUIRE(models);
    CHECK(json::parse(models->body)["data"][0]["dtype"] == "bf16");
    for (const char* prompt : {"hello", "bf16 weights"}) {
      const json r = post(s, {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}});
      CHECK(tokens_of(r) == generate_ids(prompt, 24, 0, 0, 1, tiny_checkpoint(), "--dtype bf16"));
    }
    const Streamed st = stream(s, {{"prompt", "hello"}, {"max_tokens", 24}, {"temperature", 0}});
    CHECK(st.tokens == generate_ids("hello", 24, 0, 0, 1, tiny_checkpoint(), "--dtype bf16"));
  }
  // An int8 file from mmrec-quantize, calibrated on a little text.
  const std::string data = tmp("calib.txt"), int8 = tmp("tiny.int8.safetensors");
  {
    std::ofstream f(data, std::ios::binary);
    for (int i = 0; i < 4; ++i) f << "The quick brown fox jumps over the lazy dog, " << i << " times.\n";
  }
  const std::string cmd = "'" + std::string(tool("MMREC_QUANTIZE")) + "' --checkpoint '" + tiny_checkpoint() + "' --out '" +
                          int8 + "' --data '" + data + "' --batches 4 --seq 32 >/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  {
    Server s({}, int8);
    auto models = s.client().Get("/v1/models");
    REQUIRE(models);
    CHECK(json::parse(models->body)["data"][0]["dtype"] == "int8");
    const json r = post(s, {{"prompt", "hello"}, {"max_tokens", 24}, {"temperature", 0}});
    const std::vector<int64_t> want = generate_ids("hello", 24, 0, 0, 1, int8);
    CHECK(tokens_of(r) == want);
    CHECK(want != generate_ids("hello", 24, 0, 0, 1));  // the int8 weights are what runs
    const json sampled = post(s, {{"prompt", "abc"}, {"max_tokens", 20}, {"temperature", 0.8}, {"top_k", 5}, {"seed", 7}});
    CHECK(tokens_of(sampled) == generate_ids("abc", 20, 0.8, 5, 7, int8));
  }
  // bf16 of an int8 file is refused in one line.
  const std::string err = tmp("bf16int8.txt");
  const std::string bad = "timeout 20 '" + std::string(tool("MMREC_SERVE")) + "' --checkpoint '" + int8 +
                          "' --dtype bf16 --port 0 >/dev/null 2>" + err;
  const int st = std::system(bad.c_str());
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 1));
  std::ifstream f(err);
  std::string line;
  std::getline(f, line);
  CHECK(line == "mmrec-serve: --dtype bf16: '" + int8 + "' is an int8 checkpoint");
  for (const std::string& p : {data, int8, err}) std::remove(p.c_str());
}

TEST_CASE("16 concurrent clients: each gets its own result (per-request state), batched or not, compiled or not") {
 std::vector<std::vector<int64_t>> eager_alone;
 for (const char* mode : {"4", "1", "4 --compile"}) {
  const std::string mode_arg = mode, batch = mode_arg.substr(0, 1);
  const bool compiled = mode_arg.find("--compile") != std::string::npos;
  CAPTURE(mode_arg);
  // A window long enough that clients started together surely share a batch.
  std::vector<std::string> args = {"--parallel", "4", "--queue", "16", "--batch", batch, "--batch-window", "100"};
  if (compiled) args.push_back("--compile");
  Server s(args);
  const int n = 16;
  std::vector<std::vector<int64_t>> alone(n), together(n);
  std::vector<std::string> failures(n);
  auto body = [](int i) {
    return json{{"prompt", "client " + std::to_string(i)}, {"max_tokens", 32}, {"temperature", 0.9}, {"seed", i}};
  };
  for (int i = 0; i < n; ++i) alone[i] = tokens_of(post(s, body(i)));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      if (i % 2) {  // half of them stream
        json b = body(i);
        b["stream"] = true;
        httplib::Client c = s.client();
        std::string all;
        auto r = c.Post("/v1/completions", b.dump(), "application/json");
        if (r && r->status == 200) ++ok;
        else failures[i] = r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error());
        std::istringstream in(r ? r->body : "");
        for (std::string l; std::getline(in, l);)
          if (l.rfind("data: {", 0) == 0) {
            const json j = json::parse(l.substr(6));
            if (j["choices"][0].contains("token")) together[i].push_back(j["choices"][0]["token"].get<int64_t>());
          }
      } else {
        auto r = s.client().Post("/v1/completions", body(i).dump(), "application/json");
        if (r && r->status == 200) {
          ++ok;
          together[i] = tokens_of(json::parse(r->body));
        } else {
          failures[i] = r ? std::to_string(r->status) + " " + r->body : httplib::to_string(r.error());
        }
      }
    });
  for (auto& t : threads) t.join();
  CHECK(ok == n);
  auto str = [](const std::vector<int64_t>& v) { return json(v).dump(); };
  for (int i = 0; i < n; ++i)
    CHECK_MESSAGE(together[i] == alone[i], "client ", i, ": alone ", str(alone[i]), ", together ", str(together[i]),
                  " ", failures[i]);
  CHECK(alone[0] != alone[2]);  // the requests differ, so mixing would show
  const json h = s.health();
  if (batch == "1") CHECK(h["largest_cohort"] == 1);
  else CHECK(h["largest_cohort"] > 1);  // streams of one prompt length did share calls
  if (!compiled && eager_alone.empty()) eager_alone = alone;
  if (compiled) CHECK(alone == eager_alone);  // the captured step gives the eager tokens
 }
}

TEST_CASE("the queue limit: a request beyond streams + queue gets 503 with Retry-After; a client gone frees its slot") {
  Server s({"--parallel", "1", "--queue", "1"});
  std::atomic<bool> release{false};
  std::atomic<int> events{0};
  // A: a long stream that reads slowly, then hangs up mid-stream.
  std::thread a([&] {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "a"}, {"max_tokens", 1000}, {"stream", true}}.dump();
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      ++events;
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return false;  // disconnect
    };
    s.client().send(req);
  });
  REQUIRE(eventually([&] { return events > 0; }));
  // B waits in the queue.
  json b_reply;
  std::thread b([&] { b_reply = post(s, {{"prompt", "b"}, {"max_tokens", 4}}); });
  REQUIRE(eventually([&] { return s.health()["queued"] == 1; }));
  json h = s.health();
  CHECK(h["streams_active"] == 1);
  // C: no room.
  auto c = s.client().Post("/v1/completions", json{{"prompt", "c"}, {"max_tokens", 4}}.dump(), "application/json");
  REQUIRE(c);
  CHECK(c->status == 503);
  CHECK(c->get_header_value("Retry-After") == "1");
  CHECK(json::parse(c->body)["error"]["type"] == "server_busy");
  // A hangs up: its slot goes to B, then nothing runs.
  release = true;
  a.join();
  b.join();
  CHECK(b_reply["usage"]["completion_tokens"] == 4);
  CHECK(eventually([&] {
    const json x = s.health();
    return x["streams_active"] == 0 && x["queued"] == 0;
  }));
  CHECK(events < 1000);
  CHECK(tokens_of(post(s, {{"prompt", "d"}, {"max_tokens", 3}})).size() == 3);
}

TEST_CASE("malformed requests get 400 (or 404/413) with a JSON error body, and the server keeps serving") {
  Server s({"--max-tokens", "64", "--max-prompt", "32", "--max-body", "4096"});
  struct Bad {
    std::string body, param;
  };
  const std::vector<Bad> bad = {
      {"", ""},
      {"{", ""},
      {"[1, 2]", ""},
      {"{\"prompt\": \"a\", \"temperature\": 1e99999}", ""},  // a number overflow is a syntax error too
      {"\"text\"", ""},
      {"{\"max_tokens\": 4}", "prompt"},
      {"{\"prompt\": 5}", "prompt"},
      {"{\"prompt\": \"\"}", "prompt"},
      {"{\"prompt\": []}", "prompt"},
      {"{\"prompt\": [1, 300]}", "prompt"},
      {"{\"prompt\": [1, -1]}", "prompt"},
      {"{\"prompt\": [1, \"a\"]}", "prompt"},
      {"{\"prompt\": \"" + std::string(33, 'x') + "\"}", "prompt"},
      {"{\"prompt\": \"a\", \"max_tokens\": 0}", "max_tokens"},
      {"{\"prompt\": \"a\", \"max_tokens\": 65}", "max_tokens"},
      {"{\"prompt\": \"a\", \"max_tokens\": \"4\"}", "max_tokens"},
      {"{\"prompt\": \"a\", \"max_tokens\": 4.5}", "max_tokens"},
      {"{\"prompt\": \"a\", \"temperature\": -0.1}", "temperature"},
      {"{\"prompt\": \"a\", \"temperature\": 2.5}", "temperature"},
      {"{\"prompt\": \"a\", \"temperature\": null}", "temperature"},
      {"{\"prompt\": \"a\", \"top_k\": -1}", "top_k"},
      {"{\"prompt\": \"a\", \"top_k\": 257}", "top_k"},
      {"{\"prompt\": \"a\", \"seed\": -3}", "seed"},
      {"{\"prompt\": \"a\", \"stream\": 1}", "stream"},
      {"{\"prompt\": \"a\", \"model\": 3}", "model"},
      {"{\"prompt\": \"a\", \"n\": 2}", "n"},
      {"{\"prompt\": \"a\", \"stop\": \"x\"}", "stop"},
      {"{\"prompt\": \"a\", \"bogus\": true}", "bogus"},
  };
  for (const Bad& b : bad) {
    auto r = s.client().Post("/v1/completions", b.body, "application/json");
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 400, b.body);
    const json e = json::parse(r->body, nullptr, false);
    REQUIRE_MESSAGE(e.is_object(), r->body);
    CHECK(e["error"]["type"] == "invalid_request_error");
    CHECK(!e["error"]["message"].get<std::string>().empty());
    if (!b.param.empty()) CHECK_MESSAGE(e["error"]["param"] == b.param, b.body);
  }
  auto big = s.client().Post("/v1/completions", std::string(5000, ' '), "application/json");
  REQUIRE(big);
  CHECK(big->status == 413);
  CHECK(json::parse(big->body)["error"]["code"] == 413);
  auto missing = s.client().Get("/v2/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  CHECK(json::parse(missing->body)["error"]["message"] == "no such endpoint: GET /v2/nothing");
  CHECK(s.health()["status"] == "ok");
  CHECK(tokens_of(post(s, {{"prompt", "ok"}, {"max_tokens", 5}})).size() == 5);
}

TEST_CASE("soak: 1,000 requests with stable memory") {
  Server s({"--parallel", "2", "--queue", "8"});
  std::atomic<int> ok{0}, done{0};
  auto worker = [&](int id, int count) {
    httplib::Client c = s.client();
    for (int i = 0; i < count; ++i) {
      const int k = id * 100000 + i;
      json b = {{"prompt", std::string(1 + k % 8, static_cast<char>('a' + k % 26))},
                {"max_tokens", 1 + k % 6}, {"seed", k}, {"stream", k % 3 == 0}};
      auto r = c.Post("/v1/completions", b.dump(), "application/json");
      if (r && r->status == 200) ++ok;
      ++done;
    }
  };
  auto run = [&](int per_thread) {
    std::vector<std::thread> t;
    for (int id = 0; id < 2; ++id) t.emplace_back(worker, id, per_thread);
    for (auto& x : t) x.join();
  };
  run(100);  // warm-up: caches, pools, primitives for every prompt length
  const long before = s.rss_kb();
  run(400);
  const long after = s.rss_kb();
  CHECK(done == 1000);
  CHECK(ok == 1000);
  MESSAGE("mmrec-serve resident memory after 200 requests ", before, " kB, after 1,000 ", after, " kB");
  if (test_util::kResidentSetBounded) CHECK(after - before < 4096);
}

TEST_CASE("mmrec-serve --runs is read-only: no stop endpoint, /api/runs says so") {
  test_util::TempDir runs;
  std::filesystem::create_directories(runs.path / "a");
  std::ofstream(runs / "a/metrics.jsonl") << "{\"step\": 1, \"loss\": 2.5}\n";
  Server s({"--runs", runs.path.string()});
  auto r = s.client().Get("/api/runs");
  REQUIRE(r);
  const json j = json::parse(r->body);
  CHECK(j["stoppable"] == false);
  CHECK(j["runs"][0]["name"] == "a");
  auto stop = s.client().Post("/api/stop", json{{"token", "x"}}.dump(), "application/json");
  REQUIRE(stop);
  CHECK(stop->status == 404);
}

TEST_CASE("mmrec-serve: argument errors exit 2 with one line; a missing checkpoint or a busy port exits 1") {
  auto run = [](const std::string& args) {
    const std::string err = tmp("err.txt");
    const int st = std::system(("timeout 20 '" + std::string(tool("MMREC_SERVE")) + "' " + args + " >/dev/null 2>" + err).c_str());
    std::ifstream f(err);
    std::stringstream ss;
    ss << f.rdbuf();
    std::remove(err.c_str());
    return std::pair<int, std::string>{WIFEXITED(st) ? WEXITSTATUS(st) : -1, ss.str()};
  };
  CHECK(run("") == std::pair<int, std::string>{2, "mmrec-serve: --checkpoint or --runs is required (see --help)\n"});
  CHECK(run("--port x --runs /tmp") ==
        std::pair<int, std::string>{2, "mmrec-serve: --port: expected an integer >= 0, got 'x'\n"});
  CHECK(run("--port 70000 --runs /tmp").first == 2);
  CHECK(run("--parallel 0 --runs /tmp").first == 2);
  CHECK(run("--batch 0 --runs /tmp").first == 2);
  CHECK(run("--batch 65 --runs /tmp") == std::pair<int, std::string>{2, "mmrec-serve: --batch is at most 64, got 65\n"});
  CHECK(run("--batch-window -1 --runs /tmp").first == 2);
  CHECK(run("--batch-window 20000 --runs /tmp").first == 2);
  CHECK(run("--dtype f16 --runs /tmp") ==
        std::pair<int, std::string>{2, "mmrec-serve: --dtype: expected one of f32, bf16, got 'f16'\n"});
  CHECK(run("--bogus").second == "mmrec-serve: unknown argument '--bogus' (see --help)\n");
  const auto missing = run("--checkpoint " + tmp("none.safetensors") + " --port 0");
  CHECK(missing.first == 1);
  CHECK(missing.second.rfind("mmrec-serve: read_safetensors: ", 0) == 0);
  CHECK(run("--runs " + tmp("no_such_dir") + " --port 0").first == 1);
  Server s({});
  const auto busy = run("--runs /tmp --port " + std::to_string(s.port()));
  CHECK(busy == std::pair<int, std::string>{1, "mmrec-serve: cannot listen on 127.0.0.1:" + std::to_string(s.port()) + "\n"});
}
