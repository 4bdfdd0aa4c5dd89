// mmrec-quantize: writes an int8 checkpoint (README "Quantization") from
// either a QAT checkpoint directory (its observers give the scales) or an f32
// model file calibrated on text (post-training quantization).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "common/args.h"
#include "common/omp_env.h"
#include "models/quant.h"
#include "models/safetensors.h"
#include "train/checkpoint.h"

using namespace mmrec;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: mmrec-quantize --checkpoint IN --out OUT [--data TEXTFILE] [--batches N] [--seq N]\n"
    "                      [--layers a,b,...] [--head] [--averaging C]\n"
    "  --checkpoint IN  a checkpoint directory of a QAT run (runs/x/checkpoints/step-N): its\n"
    "                   observers give the scales; or a model file (f32/bf16 safetensors):\n"
    "                   post-training quantization, calibrated on --data\n"
    "  --out OUT        the int8 safetensors file to write\n"
    "  --data TEXTFILE  calibration text (one token per byte), read from its start\n"
    "  --batches N      calibration calls (default 16) of --seq tokens (default 512), state carried\n"
    "  --layers LIST    block linears to quantize (default all: qkvz,gate,decay.fc1,decay.fc2,\n"
    "                   context.fc1,context.fc2,attn_out,ffn.fc1,ffn.fc2); model files only\n"
    "  --head           also quantize the output head; model files only\n"
    "  --averaging C    observers' averaging constant in (0, 1] (default 0.01); model files only\n";

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(static_cast<bool>(f), "cannot open data file '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A QAT checkpoint directory: weights, the qat section and the observer state.
Model from_qat_checkpoint(const std::string& dir) {
  Model model = load_model((fs::path(dir) / "model.safetensors").string());
  const TrainState st = read_train_state((fs::path(dir) / "train_state.bin").string());
  check(st.meta.contains("qat") && st.meta.at("qat").value("active", false), "checkpoint ", dir,
        " is not from a QAT step (no active qat state); quantize its model.safetensors with --data instead");
  const nlohmann::json& qj = st.meta.at("config").at("qat");
  QuantConfig qc;
  qc.layers = qj.at("layers").get<std::vector<std::string>>();
  qc.head = qj.at("head").get<bool>();
  qc.averaging_constant = qj.at("averaging_constant").get<float>();
  auto q = std::make_shared<ModelQuant>(model, qc);
  std::vector<NamedTensor> mine;
  for (const auto& [name, t] : st.tensors)
    if (name.rfind("qat.", 0) == 0) mine.emplace_back(name.substr(4), t);
  q->load_state(mine);
  model.set_quantization(q);
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);
  std::string in, out, data;
  int64_t batches = 16, seq = 512;
  QuantConfig qc;
  bool model_options = false;
  try {
    tools::Args args(argc, argv);
    while (args.next()) {
      if (args.is("--help") || args.is("-h")) {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (args.is("--checkpoint")) in = args.value();
      else if (args.is("--out")) out = args.value();
      else if (args.is("--data")) data = args.value();
      else if (args.is("--batches")) batches = args.int_value(1);
      else if (args.is("--seq")) seq = args.int_value(1);
      else if (args.is("--layers")) qc.layers = split_list(args.value()), model_options = true;
      else if (args.is("--head")) qc.head = true, model_options = true;
      else if (args.is("--averaging")) {
        const std::string v = args.value();
        char* end = nullptr;
        const double c = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !(c > 0 && c <= 1))
          throw tools::UsageError("--averaging: expected a number in (0, 1], got '" + v + "'");
        qc.averaging_constant = static_cast<float>(c);
        model_options = true;
      } else args.unknown();
    }
    if (in.empty()) throw tools::UsageError("--checkpoint is required (see --help)");
    if (out.empty()) throw tools::UsageError("--out is required (see --help)");
    if (fs::is_directory(in) && (model_options || !data.empty()))
      throw tools::UsageError("a QAT checkpoint directory takes its layers and scales from the run: "
                              "--data, --layers, --head and --averaging apply to model files");
    if (!fs::is_directory(in) && data.empty())
      throw tools::UsageError("--data is required to calibrate a model file (see --help)");
  } catch (const tools::UsageError& e) {
    std::fprintf(stderr, "mmrec-quantize: %s\n", e.what());
    return 2;
  }
  try {
    autograd::NoGradGuard no_grad;
    Model model = fs::is_directory(in) ? from_qat_checkpoint(in) : load_model(in);
    if (!fs::is_directory(in)) {
      check(model.quantization() == nullptr, "'", in, "' is already an int8 model");
      auto q = std::make_shared<ModelQuant>(model, qc);
      q->mode = QuantMode::observe;
      model.set_quantization(q);
      const std::string bytes = read_file(data);
      const int64_t V = model.config().vocab_size;
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(bytes.size()), batches * seq);
      check(n >= 1, "data file '", data, "' is empty");
      State state = model.initial_state(1);
      int64_t calls = 0;
      for (int64_t s = 0; s < n; s += seq, ++calls) {
        const int64_t len = std::min(seq, n - s);
        std::vector<int32_t> ids(static_cast<size_t>(len));
        for (int64_t i = 0; i < len; ++i) {
          ids[static_cast<size_t>(i)] = static_cast<unsigned char>(bytes[static_cast<size_t>(s + i)]);
          check(ids[static_cast<size_t>(i)] < V, "byte ", ids[static_cast<size_t>(i)], " at offset ", s + i,
                " is out of range for the model's vocab_size ", V);
        }
        model.forward(Tensor::from_vector(ids, {1, len}), state);
      }
      std::fprintf(stderr, "calibrated on %lld tokens (%lld calls of up to %lld)\n", static_cast<long long>(n),
                   static_cast<long long>(calls), static_cast<long long>(seq));
    }
    save_int8_model(out, model);
    std::printf("%s: %zu quantized linears, %lld bytes\n", out.c_str(), model.quantization()->sites().size(),
                static_cast<long long>(fs::file_size(out)));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmrec-quantize: %s\n", e.what());
    return 1;
  }
}
