// mmrec-generate and mmrec-eval end to end on a tiny checkpoint written here,
// and every tool's argument errors. meson passes the binaries' paths in
// MMREC_GENERATE, MMREC_EVAL, MMREC_BENCH, MMREC_KERNELCHECK and MMREC_TOKENIZE.
#include <doctest/doctest.h>

#include <sys/resource.h>
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
  // Timings on stderr at the end, nothing else.
  CHECK(ids.err.find("\nmmrec-generate: prompt 13 tokens in ") == 0);
  CHECK(ids.err.find("tokens/s), generated 20 tokens in ") != std::string::npos);
  CHECK(std::count(ids.err.begin(), ids.err.end(), '\n') == 2);
  std::string expect;
  for (size_t i = 0; i < want.size(); ++i) {
    if (i) expect.push_back(' ');
    expect.append(std::to_string(want[i]));
  }
  CHECK(ids.out == expect + "\n");
  // --compile: the replayed fixed-shape step gives the same tokens, through
  // the memory filling (3 slots of 4-token chunks) and dropping slots.
  Run compiled = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "20", "--temperature",
                                        "0", "--ids", "--compile"});
  REQUIRE(compiled.status == 0);
  CHECK(compiled.out == ids.out);
  CHECK(compiled.err.find("tokens/s), generated 20 tokens in ") != std::string::npos);
  CHECK(compiled.err.find("graph generate: ") == std::string::npos);
  // MMREC_PASSES=0: the graph captured with no pass (MMREC_DEBUG=1 shows
  // nothing fused), the same tokens.
  ::setenv("MMREC_PASSES", "0", 1);
  ::setenv("MMREC_DEBUG", "1", 1);
  const Run unfused = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "20",
                                             "--temperature", "0", "--ids", "--compile"});
  ::unsetenv("MMREC_PASSES");
  ::unsetenv("MMREC_DEBUG");
  REQUIRE(unfused.status == 0);
  CHECK(unfused.out == ids.out);
  CHECK(unfused.err.find("graph generate: ") != std::string::npos);
  CHECK(unfused.err.find(" 0 fused away)") != std::string::npos);
  auto long_run = [&](bool c) {
    std::vector<std::string> a = {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "120", "--temperature", "0.8",
                                  "--seed", "3", "--ids"};
    if (c) a.push_back("--compile");
    return run("MMREC_GENERATE", a);
  };
  const Run le = long_run(false), lc = long_run(true);
  CHECK(le.status == 0);
  CHECK(lc.out == le.out);

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
  // --compile: calls of --seq tokens replayed over the fixed-shape state (3
  // slots of 4-token chunks: filled, then dropping), the last call eager.
  for (const char* seq : {"4", "8", "1", "512"}) {
    CAPTURE(seq);
    Run r = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--seq", seq, "--json", "--compile"});
    REQUIRE(r.status == 0);
    json j = json::parse(r.out);
    CHECK(j["compile"] == true);
    CHECK(j["predicted"] == text.size() - 1);
    CHECK(j["loss"].get<double>() == doctest::Approx(want).epsilon(1e-5));
  }
  Run unaligned = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--seq", "7", "--compile"});
  CHECK(unaligned.status == 1);
  CHECK(unaligned.err == "mmrec-eval: --compile: --seq 7 must be 1 or a multiple of the model's chunk_size 4\n");
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

TEST_CASE("--dtype bf16: mmrec-generate and mmrec-eval run the library's bf16 model; a bad dtype exits 2") {
  if (!std::getenv("MMREC_GENERATE") || !std::getenv("MMREC_EVAL")) return;
  const std::string ckpt = tmp("b.safetensors"), data = tmp("b.txt");
  save_model(ckpt, tiny_model());
  Model h = load_model(ckpt);
  h.use_bf16(/*keep_f32=*/false);
  const std::string prompt = "Hello, bf16";
  std::string want;
  {
    autograd::NoGradGuard ng;
    const InferencePack pack = h.pack_for_inference(1);  // as the tool: the prompt plain, then packed
    State s = h.initial_state(1);
    std::vector<int32_t> p(prompt.begin(), prompt.end());
    Tensor l = h.forward(Tensor::from_vector(p, {1, static_cast<int64_t>(p.size())}), s);
    int64_t row = static_cast<int64_t>(p.size()) - 1;
    for (int n = 0; n < 12; ++n) {
      const float* r = l.data<float>() + row * 256;
      const int32_t next = static_cast<int32_t>(std::max_element(r, r + 256) - r);
      want += (n ? " " : "") + std::to_string(next);
      l = h.forward(Tensor::from_vector(std::vector<int32_t>{next}, {1, 1}), s, &pack);
      row = 0;
    }
  }
  Run g = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "12", "--temperature", "0",
                                 "--ids", "--dtype", "bf16"});
  REQUIRE(g.status == 0);
  CHECK(g.out == want + "\n");
  const std::string text = "A bf16 model reads this text as one stream of bytes.\n";
  {
    std::ofstream f(data, std::ios::binary);
    f << text;
  }
  double loss;
  {
    autograd::NoGradGuard ng;
    std::vector<int32_t> ids(text.begin(), text.end());
    loss = h.loss(Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())})).item();
  }
  Run e = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--json", "--dtype", "bf16"});
  REQUIRE(e.status == 0);
  const json j = json::parse(e.out);
  CHECK(j["dtype"] == "bf16");
  CHECK(j["loss"].get<double>() == doctest::Approx(loss).epsilon(1e-5));
  Run bad = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", "a", "--tokens", "1", "--dtype", "f16"});
  CHECK(bad.status == 2);
  CHECK(bad.err == "mmrec-generate: --dtype: expected one of f32, bf16, got 'f16'\n");
  bad = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--dtype", "f16"});
  CHECK(bad.status == 2);
  CHECK(bad.err == "mmrec-eval: --dtype: expected one of f32, bf16, got 'f16'\n");
  std::remove(ckpt.c_str());
  std::remove(data.c_str());
}

TEST_CASE("mmrec-generate --prompt-file (and - for stdin): same text as --prompt, memory flat in the prompt length") {
  if (!std::getenv("MMREC_GENERATE")) return;
  const Model m = tiny_model();
  const std::string ckpt = tmp("pf.safetensors"), pf = tmp("prompt.txt");
  save_model(ckpt, m);
  const std::string prompt = "Hello, MM-Rec";
  {
    std::ofstream f(pf, std::ios::binary);
    f << prompt;
  }
  const Run a = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", prompt, "--tokens", "20", "--temperature", "0"});
  const Run b = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt-file", pf, "--tokens", "20", "--temperature", "0"});
  REQUIRE(a.status == 0);
  CHECK(b.status == 0);
  CHECK(b.out == a.out);
  const std::string o = tmp("stdin.out");
  const std::string cmd = quote(std::getenv("MMREC_GENERATE")) + " --checkpoint " + quote(ckpt) +
                          " --prompt-file - --tokens 20 --temperature 0 < " + quote(pf) + " > " + quote(o);
  CHECK(std::system(cmd.c_str()) == 0);
  CHECK(slurp(o) == a.out);
  std::remove(o.c_str());
  const Run both = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", "a", "--prompt-file", pf, "--tokens", "1"});
  CHECK(both.status == 2);
  CHECK(both.err == "mmrec-generate: give --prompt or --prompt-file, not both\n");
  const Run none = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt-file", tmp("none.txt"), "--tokens", "1"});
  CHECK(none.status == 1);
  CHECK(none.err == "mmrec-generate: cannot open prompt file '" + tmp("none.txt") + "': No such file or directory\n");

  // A prompt 13x longer costs no more memory: it is fed chunk_size tokens at a
  // time (both prompts fill the 4 memory slots, the state's only growth).
  Model wide(ModelConfig::from_json(json{{"dim", 64}, {"layers", 2}, {"heads", 2}, {"chunk_size", 128},
                                         {"memory_slots", 4}}), 1);
  save_model(ckpt, wide);
  auto peak_rss_kb = [&](size_t bytes) {
    std::string text;
    for (size_t i = 0; text.size() < bytes; ++i) text += "the cat sees the red ball " + std::to_string(i) + ". ";
    text.resize(bytes);
    {
      std::ofstream f(pf, std::ios::binary);
      f << text;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      const char* bin = std::getenv("MMREC_GENERATE");
      std::freopen("/dev/null", "w", stdout);
      ::execl(bin, bin, "--checkpoint", ckpt.c_str(), "--prompt-file", pf.c_str(), "--tokens", "1", nullptr);
      std::_Exit(127);
    }
    int status = 0;
    struct rusage ru {};
    ::wait4(pid, &status, 0, &ru);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    return static_cast<long>(ru.ru_maxrss);
  };
  const long small = peak_rss_kb(3000), large = peak_rss_kb(40000);
  MESSAGE("peak RSS: 3 KB prompt ", small, " KiB, 40 KB prompt ", large, " KiB");
  if (test_util::kResidentSetBounded)
    CHECK(large < small + 4 * 1024);  // fed in one call, activations grow with the prompt
  std::remove(ckpt.c_str());
  std::remove(pf.c_str());
}

TEST_CASE("mmrec-eval and mmrec-generate: a directory is named as one; unknown checkpoint keys are warnings") {
  if (!std::getenv("MMREC_EVAL") || !std::getenv("MMREC_GENERATE")) return;
  const Model m = tiny_model();
  const std::string ckpt = tmp("w.safetensors");
  json cfg = m.config().to_json();
  cfg["dropout"] = 0.1;
  write_safetensors(ckpt, m.parameters(), {{"config", cfg.dump()}});
  const Run dir = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", "/tmp"});
  CHECK(dir.status == 1);
  CHECK(dir.err == "mmrec-eval: data file '/tmp' is a directory (give one text file)\n");
  const Run g = run("MMREC_GENERATE", {"--checkpoint", ckpt, "--prompt", "ab", "--tokens", "2"});
  CHECK(g.status == 0);
  // The warning first; the timings line follows it.
  CHECK(g.err.rfind("mmrec-generate: warning: load_model: '" + ckpt +
                        "': ignoring the unknown key model.dropout of its \"config\" metadata\n",
                    0) == 0);
  std::remove(ckpt.c_str());
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

  // --model: the model suite on a user's model section; its errors exit 1 naming the key.
  const std::string cfg = tmp("bench_model.json"), bad = tmp("bench_bad.json");
  {
    std::ofstream(cfg) << R"({"model": {"dim": 16, "layers": 1, "heads": 2, "vocab_size": 32, "memory_slots": 4)"
                       << R"(, "chunk_size": 8}})";
    std::ofstream(bad) << R"({"model": {"dim": "x"}})";
  }
  const Run m = run("MMREC_BENCH", {"--model", cfg, "--filter", "model_compiled_step_8x1024", "--reps", "1", "--json"});
  REQUIRE(m.status == 0);
  const json row = json::parse(m.out.substr(0, m.out.find('\n')));  // then its rows by op kind
  CHECK(row["name"] == "model_compiled_step_8x1024");
  CHECK(m.out.find("\"name\":\"model_compiled_step_8x1024 gemm\"") != std::string::npos);
  CHECK(row["planned_mib"].get<double>() > 0);
  CHECK(row["ratio"].get<double>() > 0);
  // The floor: the step's GEMM flops at a rate at least that of all its GEMMs together.
  CHECK(row["gemm_gflop"].get<double>() > 0);
  CHECK(row["best_gflops"].get<double>() >= row["gemm_gflops"].get<double>());
  CHECK(row["floor_ms"].get<double>() <= row["gemm_ms"].get<double>() * (1 + 1e-9));
  CHECK(row["eager_vs_floor"].get<double>() > 0);
  // The non-GEMM calls' traffic, compiled and with the passes off (eager's calls).
  CHECK(row["non_gemm_mib"].get<double>() > 0);
  CHECK(row["unfused_non_gemm_mib"].get<double>() > 0);
  CHECK(row["non_gemm_fastest_ms"].get<double>() > 0);
  CHECK(row["non_gemm_mib_ratio"].get<double>() ==
        doctest::Approx(row["non_gemm_mib"].get<double>() / row["unfused_non_gemm_mib"].get<double>()));
  // Compiled generation against eager, with its per-kind rows; --compile runs the suite's own rows replayed.
  const Run gen = run("MMREC_BENCH", {"--model", cfg, "--filter", "model_generate_compiled", "--reps", "1", "--json"});
  REQUIRE(gen.status == 0);
  std::istringstream lines(gen.out);
  std::string line;
  std::getline(lines, line);
  const json gj = json::parse(line);
  CHECK(gj["name"] == "model_generate_compiled");
  CHECK(gj["ratio"].get<double>() > 0);
  CHECK(gj["limit_tokens_s"].get<double>() > 0);
  bool packed_row = false;
  while (std::getline(lines, line)) packed_row |= json::parse(line)["name"] == "model_generate_compiled linear_packed";
  CHECK(packed_row);
  const Run inf = run("MMREC_BENCH", {"--model", cfg, "--filter", "model_inference_1x8192", "--reps", "1", "--json",
                                      "--compile"});
  REQUIRE(inf.status == 0);
  CHECK(json::parse(inf.out.substr(0, inf.out.find('\n')))["compiled"] == true);
  const Run e = run("MMREC_BENCH", {"--model", bad});
  CHECK(e.status == 1);
  CHECK(e.err == "mmrec-bench: model.dim: expected an integer, got \"x\"\n");
  std::remove(cfg.c_str());
  std::remove(bad.c_str());
}

TEST_CASE("mmrec-quantize: post-training int8 export; mmrec-eval runs it in int8 and through fake quantization") {
  if (!std::getenv("MMREC_QUANTIZE")) return;
  const Model m = tiny_model();
  const std::string ckpt = tmp("q.safetensors"), out = tmp("q.int8.safetensors"), data = tmp("qdata.txt");
  save_model(ckpt, m);
  const std::string text = "The quick brown fox jumps over the lazy dog; MM-Rec streams it in chunks.\n";
  {
    std::ofstream f(data, std::ios::binary);
    f << text << text;
  }
  Run q = run("MMREC_QUANTIZE", {"--checkpoint", ckpt, "--out", out, "--data", data, "--batches", "2", "--seq", "16"});
  REQUIRE_MESSAGE(q.status == 0, q.err);
  CHECK(q.out.find("18 quantized linears") != std::string::npos);
  CHECK(q.err.find("calibrated on 32 tokens (2 calls of up to 16)") != std::string::npos);
  Safetensors f = read_safetensors(out);
  CHECK(f.metadata.at("format") == "mmrec-int8");
  CHECK(f.get("blocks.1.decay.fc2.weight").dtype() == DType::i8);
  Run f32 = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--json"});
  Run i8 = run("MMREC_EVAL", {"--checkpoint", out, "--data", data, "--json"});
  Run fq = run("MMREC_EVAL", {"--checkpoint", out, "--data", data, "--json", "--fake-quant"});
  REQUIRE(f32.status == 0);
  REQUIRE(i8.status == 0);
  REQUIRE(fq.status == 0);
  const double l32 = json::parse(f32.out)["loss"], l8 = json::parse(i8.out)["loss"], lfq = json::parse(fq.out)["loss"];
  CHECK(l8 == doctest::Approx(lfq).epsilon(1e-5));  // int8 kernels = the fake-quant forward
  CHECK(l8 == doctest::Approx(l32).epsilon(0.05));   // and close to f32
  // Compiled, the int8 model gives the same loss and the same tokens.
  Run i8c = run("MMREC_EVAL", {"--checkpoint", out, "--data", data, "--json", "--compile", "--seq", "8"});
  REQUIRE(i8c.status == 0);
  CHECK(json::parse(i8c.out)["loss"].get<double>() == doctest::Approx(l8).epsilon(1e-5));
  if (std::getenv("MMREC_GENERATE")) {
    auto gen = [&](bool c) {
      std::vector<std::string> a = {"--checkpoint", out, "--prompt", "int8 model", "--tokens", "40", "--temperature",
                                    "0", "--ids"};
      if (c) a.push_back("--compile");
      return run("MMREC_GENERATE", a);
    };
    const Run ge = gen(false), gc = gen(true);
    CHECK(ge.status == 0);
    CHECK(gc.out == ge.out);
  }
  Run no_data = run("MMREC_QUANTIZE", {"--checkpoint", ckpt, "--out", out});
  CHECK(no_data.status == 2);
  CHECK(no_data.err == "mmrec-quantize: --data is required to calibrate a model file (see --help)\n");
  Run bad = run("MMREC_QUANTIZE", {"--checkpoint", ckpt, "--out", out, "--data", data, "--layers", "qkvz,nope"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("unknown layer \"nope\"") != std::string::npos);
  Run again = run("MMREC_QUANTIZE", {"--checkpoint", out, "--out", tmp("q2.safetensors"), "--data", data});
  CHECK(again.status == 1);
  CHECK(again.err.find("is already an int8 model") != std::string::npos);
  Run notint8 = run("MMREC_EVAL", {"--checkpoint", ckpt, "--data", data, "--fake-quant"});
  CHECK(notint8.status == 1);
  CHECK(run("MMREC_QUANTIZE", {"--help"}).out.find("usage: mmrec-quantize") == 0);
  for (const auto& p : {ckpt, out, data}) std::remove(p.c_str());
}
