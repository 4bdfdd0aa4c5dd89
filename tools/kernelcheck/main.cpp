// mmrec-kernelcheck: every kernel against its scalar reference.
//   mmrec-kernelcheck [--filter NAME] [--json] [--threads N]
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "kernelcheck/kernelcheck.h"
#include "common/args.h"
#include "common/omp_env.h"
#include "tensor/threads.h"

namespace {
void usage() {
  std::fprintf(stderr,
               "usage: mmrec-kernelcheck [--filter NAME] [--json] [--threads N]\n"
               "  Runs every kernel, forward and backward, against its scalar reference and\n"
               "  prints one row per kernel and shape. Exit status 1 if any row fails.\n");
}
}  // namespace

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  std::string filter;
  bool json = false;
  int threads = 0;
  try {
    mmrec::tools::Args args(argc, argv);
    while (args.next()) {
      if (args.is("--filter")) filter = args.value();
      else if (args.is("--json")) json = true;
      else if (args.is("--threads")) threads = static_cast<int>(args.int_value(0));
      else if (args.is("--help") || args.is("-h")) {
        usage();
        return 0;
      } else args.unknown();
    }
  } catch (const mmrec::tools::UsageError& e) {
    std::fprintf(stderr, "mmrec-kernelcheck: %s\n", e.what());
    return 2;
  }
  try {
    mmrec::set_num_threads(threads);
    kc::Context ctx(filter);
    for (auto& [name, suite] : kc::suites()) suite(ctx);
    int failed = 0;
    if (!json)
      std::printf("%-28s %-22s %11s %11s %9s %11s %11s  %s\n", "kernel", "shape", "max_abs", "max_rel", "tol",
                  "kernel_us", "ref_us", "ok");
    for (const kc::Row& r : ctx.rows()) {
      failed += !r.ok;
      if (json) {
        nlohmann::json j = {{"kernel", r.kernel}, {"shape", r.shape},         {"max_abs", r.max_abs},
                            {"max_rel", r.max_rel}, {"tol", r.tol},           {"kernel_us", r.kernel_us},
                            {"ref_us", r.ref_us},   {"ok", r.ok}};
        if (!r.note.empty()) j["note"] = r.note;
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%-28s %-22s %11.3g %11.3g %9.2g %11.1f %11.1f  %s%s%s\n", r.kernel.c_str(), r.shape.c_str(),
                    r.max_abs, r.max_rel, r.tol, r.kernel_us, r.ref_us, r.ok ? "ok" : "FAIL",
                    r.note.empty() ? "" : "  ", r.note.c_str());
      }
    }
    if (!json) std::printf("%zu rows, %d failed\n", ctx.rows().size(), failed);
    if (ctx.rows().empty()) {
      std::fprintf(stderr, "mmrec-kernelcheck: no kernel matches filter '%s'\n", filter.c_str());
      return 1;
    }
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmrec-kernelcheck: %s\n", e.what());
    return 1;
  }
}
