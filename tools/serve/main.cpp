// mmrec-serve: a local HTTP server for completions from a checkpoint
// (OpenAI completions convention, streaming by server-sent events) and/or
// the training dashboard of a run directory. Binds 127.0.0.1 unless told.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <httplib.h>

#include "autograd/tape.h"
#include "models/safetensors.h"
#include "tensor/threads.h"
#include "common/args.h"
#include "common/omp_env.h"
#include "serve/admission.h"
#include "serve/dashboard.h"
#include "serve/http_common.h"
#include "serve/inference.h"

using namespace mmrec;

namespace {

const char* kUsage =
    "usage: mmrec-serve [--checkpoint FILE] [--runs DIR] [--host ADDR] [--port N] [--parallel N] [--queue N]\n"
    "                   [--max-tokens N] [--max-prompt N] [--max-body BYTES] [--threads N] [--dtype f32|bf16]\n"
    "                   [--batch N] [--batch-window MS] [--compile]\n"
    "  --checkpoint FILE  serve completions from this model (POST /v1/completions, GET /v1/models);\n"
    "                     an int8 file (made by mmrec-quantize) runs on the int8 kernels\n"
    "  --runs DIR         serve the training dashboard of a run directory or of a directory of runs (GET /)\n"
    "  --host ADDR        address to bind (default 127.0.0.1: this machine only)\n"
    "  --port N           port (default 8080; 0 picks a free one)\n"
    "  --parallel N       completions generated at once (default 4)\n"
    "  --queue N          requests that may wait for a free stream (default 16); more get 503\n"
    "  --max-tokens N     largest max_tokens a request may ask (default 1024)\n"
    "  --max-prompt N     longest prompt in tokens (default 4096)\n"
    "  --max-body BYTES   largest request body (default 1048576); larger get 413\n"
    "  --threads N        compute threads (default 0 = all cores)\n"
    "  --dtype D          f32 (default) or bf16: the GEMM weights held and run in bf16, as mmrec-generate\n"
    "  --batch N          streams with the same prompt length, arriving less than the window apart, share\n"
    "                     one model call per token (default 16, at most 64; 1: every stream runs alone)\n"
    "  --batch-window MS  a forming batch starts when no stream joined it for this long (default 10;\n"
    "                     it waits at most 10 windows)\n"
    "  --compile          each batch's one-token step captured once and replayed (as mmrec-generate\n"
    "                     --compile: the same tokens, faster)\n"
    "At least one of --checkpoint and --runs is needed. Ctrl-C stops the server.\n";

}  // namespace

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  std::string checkpoint, runs, host = "127.0.0.1", dtype = "f32";
  int64_t port = 8080, threads = 0;
  serve::InferenceOptions opt;
  try {
    tools::Args args(argc, argv);
    while (args.next()) {
      if (args.is("--help") || args.is("-h")) {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (args.is("--checkpoint")) checkpoint = args.value();
      else if (args.is("--runs")) runs = args.value();
      else if (args.is("--host")) host = args.value();
      else if (args.is("--port")) port = args.int_value(0);
      else if (args.is("--parallel")) opt.streams = args.int_value(1);
      else if (args.is("--queue")) opt.queue = args.int_value(0);
      else if (args.is("--max-tokens")) opt.limits.max_tokens = args.int_value(1);
      else if (args.is("--max-prompt")) opt.limits.max_prompt_tokens = args.int_value(1);
      else if (args.is("--max-body")) opt.limits.max_body_bytes = static_cast<size_t>(args.int_value(64));
      else if (args.is("--threads")) threads = args.int_value(0);
      else if (args.is("--dtype")) dtype = args.choice_value({"f32", "bf16"});
      else if (args.is("--batch")) opt.batch.max_batch = args.int_value(1);
      else if (args.is("--compile")) opt.batch.compile = true;
      else if (args.is("--batch-window")) {
        const double ms = args.float_value();
        if (ms > 10000) throw tools::UsageError("--batch-window: at most 10000 ms, got " + std::to_string(ms));
        opt.batch.window = std::chrono::microseconds(static_cast<int64_t>(ms * 1000));
      }
      else args.unknown();
    }
    if (checkpoint.empty() && runs.empty()) throw tools::UsageError("--checkpoint or --runs is required (see --help)");
    if (port > 65535) throw tools::UsageError("--port: expected an integer in [0, 65535], got " + std::to_string(port));
    if (opt.streams > 256 || opt.queue > 4096)
      throw tools::UsageError("--parallel is at most 256 and --queue at most 4096");
    if (opt.batch.max_batch > 64) throw tools::UsageError("--batch is at most 64, got " + std::to_string(opt.batch.max_batch));
  } catch (const tools::UsageError& e) {
    std::fprintf(stderr, "mmrec-serve: %s\n", e.what());
    return 2;
  }
  // Signals go to one waiting thread (blocked everywhere else), which stops the server.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is a failed write, not a signal
  try {
    set_num_threads(static_cast<int>(threads));
    httplib::Server server;
    std::unique_ptr<serve::InferenceService> inference;
    std::unique_ptr<serve::Dashboard> dashboard;
    if (!checkpoint.empty()) {
      opt.name = std::filesystem::path(checkpoint).stem().string();
      Model model = load_model(checkpoint);
      if (dtype == "bf16") {
        check(model.quantization() == nullptr, "--dtype bf16: '", checkpoint, "' is an int8 checkpoint");
        model.use_bf16(/*keep_f32=*/false);
      }
      inference = std::make_unique<serve::InferenceService>(std::move(model), opt);
      inference->install(server);
    }
    if (!runs.empty()) {
      if (!std::filesystem::is_directory(runs)) throw std::runtime_error("--runs: '" + runs + "' is not a directory");
      dashboard = std::make_unique<serve::Dashboard>(runs);
      dashboard->install(server);
    }
    serve::install_error_handlers(server);
    server.set_payload_max_length(opt.limits.max_body_bytes);
    server.set_keep_alive_timeout(2);
    server.set_read_timeout(10);
    server.set_write_timeout(10);
    // Streams + queued requests + a few threads for quick replies (health, 503s, the page).
    const size_t pool = static_cast<size_t>(opt.streams + opt.queue + 8);
    server.new_task_queue = [pool] { return new serve::ConnectionPool(pool, pool); };
    const int bound = serve::bind_server(server, host, static_cast<int>(port));
    if (bound < 0) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port));
    const std::string what = inference ? " (completions: POST /v1/completions, " + inference->dtype() + " weights)" : "";
    std::printf("mmrec-serve: listening on http://%s:%d/%s%s\n", host.c_str(), bound, what.c_str(),
                dashboard ? " (dashboard: GET /)" : "");
    std::fflush(stdout);
    std::thread stopper([&] {
      int sig = 0;
      sigwait(&sigs, &sig);
      if (dashboard) dashboard->stop();
      server.stop();
    });
    const bool ok = server.listen_after_bind();
    if (!ok && server.is_running()) std::fprintf(stderr, "mmrec-serve: the server stopped on an error\n");
    pthread_kill(stopper.native_handle(), SIGTERM);  // wake the stopper if the server ended by itself
    stopper.join();
    std::printf("mmrec-serve: stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmrec-serve: %s\n", e.what());
    return 1;
  }
}
