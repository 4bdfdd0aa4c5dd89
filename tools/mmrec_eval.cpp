// mmrec-eval: mean next-token loss of a checkpoint on a text file, read as
// one byte stream and fed in calls of --seq tokens with the state carried, so
// every byte but the first is predicted from everything before it.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/generation.h"
#include "models/profile.h"
#include "models/quant.h"
#include "models/safetensors.h"
#include "common/args.h"
#include "common/omp_env.h"
#include "common/profile_print.h"

using namespace mmrec;
using mmrec::tools::print_profile;

namespace {

const char* kUsage =
    "usage: mmrec-eval --checkpoint FILE --data TEXTFILE [--seq N] [--json] [--dtype f32|bf16] [--fake-quant]\n"
    "                  [--compile]\n"
    "  --checkpoint FILE  a model saved by mmrec (safetensors with its config)\n"
    "  --data TEXTFILE    evaluated as one byte stream (one token per byte)\n"
    "  --seq N            tokens per forward call, state carried between calls (default 512)\n"
    "  --fake-quant       an int8 checkpoint through fake quantization in f32 (the QAT forward)\n"
    "                     instead of its int8 matmuls\n"
    "  --compile          capture a call of --seq tokens once and replay it for every call (the same\n"
    "                     loss up to float rounding; --seq must be 1 or a multiple of chunk_size;\n"
    "                     the last, shorter call runs eagerly)\n"
    "  --json             print one JSON object instead of text\n"
    "  --dtype D          f32 (default) or bf16: the GEMM weights held and run in bf16\n"
    "Prints the mean next-token loss in nats and bits per byte over every byte but the first.\n";

}  // namespace

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  std::string checkpoint, data;
  int64_t seq = 512;
  bool json = false, fake_quant = false, compiled = false;
  std::string dtype = "f32";
  try {
    tools::Args args(argc, argv);
    while (args.next()) {
      if (args.is("--help") || args.is("-h")) {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (args.is("--checkpoint")) checkpoint = args.value();
      else if (args.is("--data")) data = args.value();
      else if (args.is("--seq")) seq = args.int_value(1);
      else if (args.is("--json")) json = true;
      else if (args.is("--dtype")) dtype = args.choice_value({"f32", "bf16"});
      else if (args.is("--fake-quant")) fake_quant = true;
      else if (args.is("--compile")) compiled = true;
      else args.unknown();
    }
    if (checkpoint.empty()) throw tools::UsageError("--checkpoint is required (see --help)");
    if (data.empty()) throw tools::UsageError("--data is required (see --help)");
  } catch (const tools::UsageError& e) {
    std::fprintf(stderr, "mmrec-eval: %s\n", e.what());
    return 2;
  }
  try {
    autograd::NoGradGuard no_grad;
    std::error_code ec;
    check(!std::filesystem::is_directory(data, ec), "data file '", data, "' is a directory (give one text file)");
    std::ifstream f(data, std::ios::binary);
    check(static_cast<bool>(f), "cannot open data file '", data, "'");
    std::vector<std::string> warnings;
    Model model = load_model(checkpoint, &warnings);
    for (const std::string& w : warnings) std::fprintf(stderr, "mmrec-eval: warning: %s\n", w.c_str());
    if (fake_quant) {
      check(model.quantization() != nullptr, "--fake-quant: '", checkpoint, "' is not an int8 checkpoint");
      model.quantization()->mode = QuantMode::fake;
      model.quantization()->observers_enabled = false;
    }
    if (dtype == "bf16") {
      check(model.quantization() == nullptr, "--dtype bf16: '", checkpoint, "' is an int8 checkpoint");
      model.use_bf16(/*keep_f32=*/false);
    }
    const int64_t V = model.config().vocab_size;
    const auto t0 = std::chrono::steady_clock::now();
    State state = model.initial_state(1);
    // --compile: calls of --seq tokens over a fixed-shape copy of the state,
    // captured by the first and replayed by the others.
    std::optional<FixedState> fixed;
    std::optional<autograd::CompiledFn> step;
    if (compiled) {
      check(seq == 1 || seq % model.config().chunk_size == 0, "--compile: --seq ", seq,
            " must be 1 or a multiple of the model's chunk_size ", model.config().chunk_size);
      fixed = FixedState::from(model, state);
      autograd::CompileOptions opt;
      opt.name = "eval";
      opt.config = model.config().to_json().dump();
      step.emplace(autograd::compile(
          [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{model.forward_fixed(in[0], *fixed)}; },
          opt));
    }
    double nll = 0;
    // The file is read one call at a time (memory does not grow with it):
    // buf holds a call's tokens and, last, the first token of the next call,
    // which its last position is scored against.
    std::vector<char> buf(static_cast<size_t>(seq) + 1);
    std::vector<int32_t> ids(buf.size());
    int64_t N = 0;  // bytes read so far
    auto read_into = [&](size_t from) {
      f.read(buf.data() + from, static_cast<std::streamsize>(buf.size() - from));
      const int64_t got = f.gcount();
      for (int64_t i = 0; i < got; ++i) {
        const int32_t id = static_cast<unsigned char>(buf[from + static_cast<size_t>(i)]);
        check(id < V, "byte ", id, " at offset ", N + i, " of '", data, "' is out of range for the model's vocab_size ",
              V);
        ids[from + static_cast<size_t>(i)] = id;
      }
      N += got;
      return static_cast<int64_t>(from) + got;
    };
    for (int64_t have = read_into(0); have >= 2; have = read_into(1)) {
      const int64_t n = have - 1;
      const Tensor call = Tensor::from_vector(std::vector<int32_t>(ids.begin(), ids.begin() + n), {1, n});
      Tensor logits;  // [1, n, V]
      if (step && n == seq) {
        logits = (*step)({call})[0];
      } else {
        if (step) state = fixed->to_state(), step.reset();  // the last call, eagerly
        logits = model.forward(call, state);
      }
      const float* l = logits.data<float>();
      for (int64_t t = 0; t < n; ++t) {
        const float* row = l + t * V;
        double mx = row[0];
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
        double z = 0;
        for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
        nll += mx + std::log(z) - row[ids[static_cast<size_t>(t + 1)]];
      }
      buf[0] = buf[static_cast<size_t>(n)];
      ids[0] = ids[static_cast<size_t>(n)];
    }
    check(N >= 2, "data file '", data, "' has ", N, " bytes; at least 2 are needed");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t predicted = N - 1;
    const double loss = nll / static_cast<double>(predicted), bpb = loss / std::log(2.0);
    if (json) {
      nlohmann::json j = {{"checkpoint", checkpoint}, {"data", data},       {"bytes", N}, {"fake_quant", fake_quant},
                          {"predicted", predicted},   {"seq", seq},         {"loss", loss},
                          {"bpb", bpb},               {"seconds", seconds}, {"tokens_per_second", predicted / seconds},
                          {"dtype", dtype}, {"compile", compiled}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%s: %lld bytes, %lld predicted, loss %.6f nats, %.6f bits per byte (%.0f tokens/s)\n",
                  data.c_str(), static_cast<long long>(N), static_cast<long long>(predicted), loss, bpb,
                  predicted / seconds);
    }
    print_profile();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmrec-eval: %s\n", e.what());
    return 1;
  }
}
