// mmrec-generate and mmrec-eval end to end on a tiny checkpoint written here,
// and every tool's argument errors. meson passes the binaries' paths in
// MMREC_GENERATE, MMREC_EVAL, MMREC_BENCH, MMREC_KERNELCHECK and MMREC_TOKENIZE.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/tape.h"
#include "models/safetensors.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace mmrec;
using nlohmann::json;
using test_util::tiny_model;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string tmp(const std::string& name) { return "/tmp/mmrec_test_tools_" + std::to_string(::getpid()) + "_" + name; }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

// Runs `tool args...`, capturing stdout and stderr.
Run run(const char* env, const std::vector<std::string>& args) {
  const char* bin = std::getenv(env);
  REQUIRE_MESSAGE(bin != nullptr, env, " is not set (run through meson test)");
  std::string cmd = quote(bin);
  for (const auto& a : args) {
    cmd.push_back(' ');
    cmd.append(quote(a));
  }
  const std::string o = tmp("stdout"), e = tmp("stderr");
  cmd.append(" >").append(o).append(" 2>").append(e);
  Run r;
  const int st = std::system(cmd.c_str());
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  std::remove(o.c_str());
  std::remove(e.c_str());
  return r;
}

}  // namespace

TEST_CASE("mmrec-generate: greedy output matches the library, sampling is seeded, errors are one line") {
  if (!std::getenv("MMREC_GENERATE")) return;
  const Model m = tiny_model();
  const std::string ckpt = tmp("g.safetensors");
  save_model(ckpt, m);
  const std::string prompt = "Hello, MM-Rec";

  // The reference: greedy decoding in process, token by token with the state.
  std::vector<int32_t> want;
  {
    autograd::NoGradGuard ng;
    State s = m.initial_state(1);
    std::vector<int32_t> p(prompt.begin(), prompt.end());
    Tensor l = m.forward(Tensor::from_vector(p, {1, static_cast<int64_t>(p.size())}), s);
    int64_t row = static_cast<int64_t>(p.size()) - 1;
    for (int n = 0; n < 20; ++n) {
      const float* r = l.data<float>() + row * 256;
      const int32_t next = static_cast<int32_t>(std::max_element(r, r + 256) - r);
      want.push_back(next);
      l = m.forward(Tensor::from_vector(std::vector<int32_t>{next}, {1, 1}), s);
      row = 0;
    }
  }
  Run ids = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "20", "--temperature", "0",
                                   "--ids"});
  REQUIRE(ids.status == 0);
  CHECK(ids.err.empty());
  std::string expect;
  for (size_t i = 0; i < want.size(); ++i) {
    if (i) expect.push_back(' ');
    expect.append(std::to_string(want[i]));
  }
  CHECK(ids.out == expect + "\n");

  Run text = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "20", "--temperature", "0"});
  REQUIRE(text.status == 0);
  std::string expect_text = prompt;
  for (int32_t t : want) expect_text += static_cast<char>(t);
  CHECK(text.out == expect_text);

  auto sampled = [&](const char* seed) {
    return run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "30", "--seed", seed,
                                  "--temperature", "1.5", "--top-k", "40", "--ids"});
  };
  Run s1 = sampled("5"), s2 = sampled("5"), s3 = sampled("6");
  CHECK(s1.status == 0);
  CHECK(s1.out == s2.out);
  CHECK(s1.out != s3.out);
  std::istringstream is(s1.out);
  int count = 0;
  for (int64_t id; is >> id; ++count) CHECK((id >= 0 && id < 256));
  CHECK(count == 30);

  Run help = run("MMREC_GENERATE", {"--help"});
  CHECK(help.status == 0);
  CHECK(help.out.find("usage: mmrec-generate") == 0);

  Run missing = run("MMREC_GENERATE", {"--checkpoint", tmp("nope.safetensors"), "--prompt", "a", "--tokens", "3"});
  CHECK(missing.status != 0);
  CHECK(missing.err == "mmrec-generate: read_safetensors: '" + tmp("nope.safetensors") +
                           "': cannot open: No such file or directory\n");
  Run bad = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", "a", "--tokens", "x"});
  CHECK(bad.status == 2);
  CHECK(bad.err == "mmrec-generate: --tokens: expected an integer >= 0, got 'x'\n");
  Run unknown = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--bogus"});
  CHECK(unknown.status == 2);
  CHECK(unknown.err == "mmrec-generate: unknown argument '--bogus' (see --help)\n");
  Run noprompt = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--tokens", "3"});
  CHECK(noprompt.status == 2);

  // A vocabulary smaller than a prompt byte is a clear error.
  Model small(ModelConfig::from_json(json{{"vocab_size", 64}, {"dim", 8}, {"layers", 1}, {"heads", 2}}), 1);
  save_model(ckpt, small);
  Run range = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", "ab", "--tokens", "3"});
  CHECK(range.status == 1);
  CHECK(range.err == "mmrec-generate: prompt byte 97 at position 0 is out of range for the model's vocab_size 64\n");
  std::remove(ckpt.c_str());
}

TEST_CASE("mmrec-eval: loss over the stream matches the library and does not depend on --seq") {
  if (!std::getenv("MMREC_EVAL")) return;
  const Model m = tiny_model();
  const std::string ckpt = tmp("e.safetensors"), data = tmp("data.txt");
  save_model(ckpt, m);
  const std::string text = "The quick brown fox jumps over the lazy dog; MM-Rec streams it in chunks.\n";
  {
    std::ofstream f(data, std::ios::binary);
    f << text;
  }
  double want;
  {
    autograd::NoGradGuard ng;
    std::vector<int32_t> ids(text.begin(), text.end());
    want = m.loss(Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())})).item();
  }
  for (const char* seq : {"512", "7", "1", "4"}) {
    CAPTURE(seq);
    Run r = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--seq", seq, "--json"});
    REQUIRE(r.status == 0);
    json j = json::parse(r.out);
    CHECK(j["predicted"] == text.size() - 1);
    CHECK(j["loss"].get<double>() == doctest::Approx(want).epsilon(1e-5));
    CHECK(j["bpb"].get<double>() == doctest::Approx(want / std::log(2.0)).epsilon(1e-5));
  }
  Run t = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data});
  CHECK(t.status == 0);
  CHECK(t.out.find("bits per byte") != std::string::npos);
  CHECK(run("MMREC_EVAL", {"--help"}).out.find("usage: mmrec-eval") == 0);
  Run missing = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", tmp("none.txt")});
  CHECK(missing.status == 1);
  CHECK(missing.err == "mmrec-eval: cannot open data file '" + tmp("none.txt") + "'\n");
  Run bad = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--seq", "0"});
  CHECK(bad.status == 2);
  CHECK(bad.err == "mmrec-eval: --seq: expected an integer >= 1, got '0'\n");
  {
    std::ofstream f(data, std::ios::binary);
    f << "x";
  }
  Run one = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data});
  CHECK(one.status == 1);
  CHECK(one.err == "mmrec-eval: data file '" + data + "' has 1 bytes; at least 2 are needed\n");
  std::remove(ckpt.c_str());
  std::remove(data.c_str());
}

TEST_CASE("bench, kernelcheck and tokenize: argument errors exit 2 with one line; filters match measurement names") {
  const std::vector<std::tuple<const char*, std::vector<std::string>, std::string>> cases = {
      {"MMREC_BENCH", {"--reps", "0"}, "mmrec-bench: --reps: expected an integer >= 1, got '0'\n"},
      {"MMREC_BENCH", {"--threads", "two"}, "mmrec-bench: --threads: expected an integer >= 0, got 'two'\n"},
      {"MMREC_BENCH", {"--filter"}, "mmrec-bench: --filter: missing value\n"},
      {"MMREC_KERNELCHECK", {"--reps", "3"}, "mmrec-kernelcheck: unknown argument '--reps' (see --help)\n"},
      {"MMREC_KERNELCHECK", {"--threads", "-1"}, "mmrec-kernelcheck: --threads: expected an integer >= 0, got '-1'\n"},
      {"MMREC_TOKENIZE", {"--vocab", "4k"}, "mmrec-tokenize: --vocab: expected an integer >= 1, got '4k'\n"},
      {"MMREC_TOKENIZE", {"--format", "csv"}, "mmrec-tokenize: --format must be auto, text or jsonl, got 'csv'\n"},
  };
  for (const auto& [tool, args, err] : cases) {
    CAPTURE(tool);
    const Run r = run(tool, args);
    CHECK(r.status == 2);
    CHECK(r.err == err);
  }
  // A whole measurement name selects just that measurement.
  const Run one = run("MMREC_BENCH", {"--filter", "triad_32MiB", "--reps", "1", "--json"});
  CHECK(one.status == 0);
  CHECK(json::parse(one.out)["name"] == "triad_32MiB");
}
