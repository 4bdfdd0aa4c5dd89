// mmrec-bench: speed and memory measurements (never timed tests).
//   mmrec-bench [--filter NAME] [--json] [--threads N] [--reps N] [--model CONFIG.json] [--compile] [--list]
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

#include "bench/bench.h"
#include "common/args.h"
#include "common/omp_env.h"
#include "models/config.h"
#include "tensor/error.h"
#include "tensor/threads.h"

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  std::string filter, model_file;
  bool json = false, list = false, compiled = false;
  int threads = 0, reps = 7;
  try {
    mmrec::tools::Args args(argc, argv);
    while (args.next()) {
      if (args.is("--filter")) filter = args.value();
      else if (args.is("--json")) json = true;
      else if (args.is("--threads")) threads = static_cast<int>(args.int_value(0));
      else if (args.is("--reps")) reps = static_cast<int>(args.int_value(1));
      else if (args.is("--model")) model_file = args.value();
      else if (args.is("--list")) list = true;
      else if (args.is("--compile")) compiled = true;
      else if (args.is("--help") || args.is("-h")) {
        std::printf(
            "usage: mmrec-bench [--filter NAME] [--json] [--threads N] [--reps N] [--model CONFIG.json] [--compile]\n"
            "                   [--list]\n"
            "  Runs the benchmark suites whose measurements match NAME (substring) and prints\n"
            "  a table, or one JSON object per measurement with --json. Figures are medians.\n"
            "  --model runs the model suite on the \"model\" section of CONFIG.json instead of\n"
            "  the bench config (dim 512, 4 layers). --compile runs the model suite's training\n"
            "  step, inference and generation rows captured and replayed (autograd::compile);\n"
            "  the model_compiled_* and model_generate_compiled rows compare both in one run.\n");
        return 0;
      } else args.unknown();
    }
  } catch (const mmrec::tools::UsageError& e) {
    std::fprintf(stderr, "mmrec-bench: %s\n", e.what());
    return 2;
  }
  try {
    if (list) {
      for (auto& [name, s] : bench::suites()) std::printf("%s\n", name.c_str());
      return 0;
    }
    mmrec::set_num_threads(threads);
    bench::Context ctx(filter, json, reps);
    ctx.set_compiled(compiled);
    if (!model_file.empty()) {
      std::ifstream f(model_file);
      mmrec::check(f.good(), "--model: cannot read '", model_file, "'");
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(f);
      } catch (const nlohmann::json::exception& e) {
        mmrec::fail("--model: ", model_file, " is not JSON: ", e.what());
      }
      mmrec::check(j.is_object() && j.contains("model"), "--model: ", model_file, " has no \"model\" section");
      (void)mmrec::ModelConfig::from_json(j["model"]);  // its errors name the key
      ctx.set_model(j["model"]);
    }
    for (auto& [name, suite] : bench::suites()) suite(ctx);
    if (ctx.reported() == 0) {
      std::fprintf(stderr, "mmrec-bench: no measurement matches filter '%s'\n", filter.c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmrec-bench: %s\n", e.what());
    return 1;
  }
}
