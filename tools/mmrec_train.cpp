// mmrec-train: trains an MM-Rec model from a JSON config (see the README,
// "Training"), leaving checkpoints that mmrec-generate loads.
//
//   mmrec-train configs/tiny.json                 # runs/tiny/
//   mmrec-train configs/small.json --resume       # continue from the newest checkpoint
//   mpirun -np 4 mmrec-train configs/small.json   # data parallel over 4 processes
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "models/model.h"
#include "models/profile.h"
#include "ops/kernels/dnnl_context.h"
#include "tensor/threads.h"
#include "train/distributed.h"
#include "train/metrics.h"
#include "train/trainer.h"
#include "common/args.h"
#include "common/omp_env.h"
#include "serve/run_files.h"

using namespace mmrec;

namespace {
volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_signal(int sig) {
  if (g_stop) {  // a second signal: give up at once
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop = sig;
}

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: [mpirun -np N] mmrec-train CONFIG.json [--resume | --strict-resume] [--fresh]\n"
               "                   [--run-dir DIR] [--bucket-mb MB] [--no-overlap] [--dashboard [PORT]]\n"
               "  --resume        continue from the newest intact checkpoint in the run directory\n"
               "                  (a damaged newer one is skipped, with a note)\n"
               "  --strict-resume as --resume, but a damaged newest checkpoint is an error\n"
               "  --fresh         delete the run directory's checkpoints and metrics, start over\n"
               "  --run-dir DIR   where checkpoints, metrics.jsonl and loss.svg go\n"
               "                  (default: log.run_dir of the config, else runs/<config name>)\n"
               "  --bucket-mb MB  under mpirun: gradient all-reduce bucket size (default 4)\n"
               "  --no-overlap    under mpirun: all-reduce after backward, not during it\n"
               "  --dashboard [PORT]  live charts of this run at http://127.0.0.1:PORT/ (default 8080; 0: any);\n"
               "                  the stop token printed beside it lets the page stop the run as Ctrl-C does\n"
               "Ctrl-C writes a checkpoint and exits; --resume continues bit-identically.\n");
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string mb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}
}  // namespace

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  Distributed job(&argc, &argv);           // one rank of mpirun -np N, or a job of one
  // Every rank runs the same steps: rank 0 prints them, the others print
  // only an error of their own.
  if (!job.is_root() && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
  std::FILE* err = job.is_root() ? stderr : stdout;
  std::string config_path, run_dir;
  ResumeMode resume = ResumeMode::config;
  double bucket_mb = 4;
  bool overlap = true;
  bool strict = false;
  int dashboard_port = -1;  // -1: no dashboard
  try {
    tools::Args args(argc, argv);
    while (args.next()) {
      const std::string& a = args.flag();
      if (a == "--resume") {
        resume = ResumeMode::require;
      } else if (a == "--strict-resume") {
        resume = ResumeMode::require, strict = true;
      } else if (a == "--fresh") {
        resume = ResumeMode::fresh;
      } else if (a == "--run-dir") {
        run_dir = args.value();
      } else if (a == "--bucket-mb") {
        bucket_mb = args.float_value();
        if (bucket_mb <= 0) throw tools::UsageError("--bucket-mb: expected a number > 0");
      } else if (a == "--no-overlap") {
        overlap = false;
      } else if (a == "--dashboard") {
        dashboard_port = 8080;
        if (args.plain_follows()) {  // an optional port: the next argument when it is a number
          const std::string next = args.peek();
          if (!next.empty() && next.find_first_not_of("0123456789") == std::string::npos) {
            dashboard_port = static_cast<int>(args.int_value(0));
            if (dashboard_port > 65535) throw tools::UsageError("--dashboard: port " + next + " is above 65535");
          }
        }
      } else if (a == "-h" || a == "--help") {
        usage(stdout);
        return 0;
      } else if (!a.empty() && a[0] != '-' && config_path.empty()) {
        config_path = a;
      } else {
        args.unknown();
      }
    }
  } catch (const tools::UsageError& e) {
    usage(err);
    std::fprintf(err, "mmrec-train: %s\n", e.what());
    return 2;
  }
  if (config_path.empty()) {
    usage(err);
    return 2;
  }
  bool live = false;
  try {
    TrainConfig cfg;
    job.together([&] { cfg = TrainConfig::load(config_path); });
    set_num_threads(static_cast<int>(cfg.train.threads));  // 0: the cores this process may run on
    if (cfg.train.threads == 0 && job.local_size() > 1)    // the machine's cores shared among its ranks
      set_num_threads(std::clamp(static_cast<int>(std::thread::hardware_concurrency()) / job.local_size(), 1,
                                 num_threads()));
    if (run_dir.empty()) run_dir = cfg.log.run_dir.empty() ? default_run_dir(config_path) : cfg.log.run_dir;
    const std::string& mode = cfg.log.progress;
    live = mode == "live" || (mode == "auto" && ::isatty(STDOUT_FILENO));
    const bool lines = mode == "lines" || (mode == "auto" && !live);

    auto note = [&](const std::string& s) { std::printf("%s\n", s.c_str()), std::fflush(stdout); };
    const std::string title = std::filesystem::path(config_path).stem().string();
    Trainer trainer(cfg,
                    {.run_dir = run_dir, .resume = resume, .title = title, .strict_resume = strict, .job = &job,
                     .bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20)), .overlap = overlap},
                    note);
    const Model& model = trainer.model();
    std::unique_ptr<serve::DashboardServer> dashboard;  // the run's files and page: rank 0 only
    if (job.is_root()) {
      serve::write_run_config(run_dir, trainer.effective_config());
      std::error_code no_error;
      if (resume == ResumeMode::fresh) std::filesystem::remove(std::filesystem::path(run_dir) / "samples.jsonl", no_error);
    }
    std::signal(SIGINT, on_signal);  // from here on, Ctrl-C (or the page's stop) checkpoints and exits 0
    std::signal(SIGTERM, on_signal);
    if (dashboard_port >= 0 && job.is_root()) {
      // Stop from the page = Ctrl-C: the same signal, the same checkpoint and exit 0.
      dashboard = std::make_unique<serve::DashboardServer>(run_dir, "127.0.0.1", dashboard_port,
                                                           [] { std::raise(SIGINT); });
      std::printf("dashboard: http://127.0.0.1:%d/ (stop token: %s)\n", dashboard->port(), dashboard->token().c_str());
    }
    std::printf("model: %lld parameters (dim %lld, %lld layers, vocab %lld); data: %s tokens (%s held out), "
                "tokenizer %s\n",
                static_cast<long long>(model.num_parameters()), static_cast<long long>(model.config().dim),
                static_cast<long long>(model.config().layers), static_cast<long long>(model.config().vocab_size),
                format_count(static_cast<double>(trainer.data().train_tokens())).c_str(),
                format_count(static_cast<double>(trainer.data().val_tokens())).c_str(),
                trainer.tokenizer().fingerprint().c_str());
    std::printf("training %lld steps of %lld x %lld tokens (x%lld accumulation) on %d thread(s)%s in %s\n",
                static_cast<long long>(cfg.train.steps), static_cast<long long>(cfg.train.batch_size),
                static_cast<long long>(cfg.train.seq_len), static_cast<long long>(cfg.train.grad_accum),
                num_threads(), job.size() > 1 ? (" x " + std::to_string(job.size()) + " ranks").c_str() : "",
                run_dir.c_str());
    if (cfg.train.amp == "bf16" && !kernels::dnnl_has_avx512())
      std::printf("note: this CPU has no AVX-512, where oneDNN 2.6 has its bf16 GEMMs: train.amp \"bf16\" runs them "
                  "on operands widened to f32, no faster than f32 (README, \"CPUs\")\n");
    std::fflush(stdout);

    const double t0 = now_s();
    const int64_t first = trainer.step();
    double last_draw = 0;
    RunHooks hooks;
    double tps = 0;  // tokens/s, smoothed over steps
    hooks.on_step = [&](const StepResult& r) {
      const double el = now_s() - t0;
      const double inst = r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0;
      tps = tps == 0 ? inst : 0.9 * tps + 0.1 * inst;
      const bool due = r.step % cfg.log.interval == 0 || r.step == cfg.train.steps;
      if (!(live || (lines && due))) return;
      if (live && !due && el - last_draw < 0.1) return;
      last_draw = el;
      ProgressInfo p;
      p.step = r.step;
      p.total = cfg.train.steps;
      p.loss = r.smooth_loss;
      p.lr = r.lr;
      p.grad_norm = r.grad_norm;
      p.tokens_per_s = tps;
      p.elapsed_s = el;
      const int64_t done = r.step - first;
      p.eta_s = done > 0 ? el / static_cast<double>(done) * static_cast<double>(cfg.train.steps - r.step) : 0;
      if (live) std::printf("\r%s\x1b[K", format_progress(p).c_str());
      else std::printf("%s\n", format_progress(p).c_str());
      std::fflush(stdout);
    };
    hooks.on_eval = [&](const EvalResult& e) {
      std::printf("%seval  step %lld: val loss %.4f, val bpb %.4f (%s tokens, %.1f s)\n", live ? "\r\x1b[K" : "",
                  static_cast<long long>(e.step), e.loss, e.bpb, format_count(static_cast<double>(e.tokens)).c_str(),
                  e.seconds);
      std::fflush(stdout);
      if (job.is_root()) serve::append_eval_sample(run_dir, trainer.model(), trainer.tokenizer(), e.step);
    };
    hooks.on_checkpoint = [&](const std::string& dir) {
      if (!live) std::printf("checkpoint %s\n", dir.c_str());
      std::fflush(stdout);
    };
    hooks.should_stop = [] { return g_stop != 0; };
    const RunSummary s = trainer.run(hooks);
    if (live) std::printf("\n");

    struct rusage ru;
    ::getrusage(RUSAGE_SELF, &ru);
    const std::string dir = run_dir;
    std::printf("%s: steps %lld..%lld of %lld in %s (training %s), %s tokens/s\n",
                s.interrupted ? "interrupted" : "done", static_cast<long long>(s.start_step),
                static_cast<long long>(s.end_step), static_cast<long long>(s.total_steps),
                format_duration(s.wall_seconds).c_str(), format_duration(s.train_seconds).c_str(),
                format_count(s.tokens_per_s).c_str());
    if (s.final_eval.step > 0)
      std::printf("%s validation (step %lld): loss %.4f nats/token, %.4f bits/byte\n",
                  s.interrupted ? "last" : "final", static_cast<long long>(s.final_eval.step), s.final_eval.loss,
                  s.final_eval.bpb);
    if (s.world_size > 1)
      std::printf("data parallel: %d ranks; all-reduce of %s per step in %d buckets (%s): %.1f ms per step, %.1f ms "
                  "of it after backward (not hidden)\n",
                  s.world_size, mb(static_cast<double>(s.allreduce_bytes)).c_str(), s.allreduce_buckets,
                  overlap ? "started during backward" : "after backward", s.allreduce_total_s * 1e3,
                  s.allreduce_wait_s * 1e3);
    std::printf("peak memory: %s in tensors (mmrec allocator; a training step at most %s), %s resident\n",
                mb(static_cast<double>(s.peak_bytes)).c_str(), mb(static_cast<double>(s.step_peak_bytes)).c_str(),
                mb(static_cast<double>(ru.ru_maxrss) * 1024).c_str());
    if (s.interrupted) {
      std::printf("interrupted at step %lld/%lld: checkpoint %s\ncontinue with: mmrec-train %s --resume --run-dir %s\n",
                  static_cast<long long>(s.end_step), static_cast<long long>(s.total_steps),
                  s.last_checkpoint.c_str(), config_path.c_str(), run_dir.c_str());
      return 0;
    }
    if (prof::enabled()) {  // MMREC_PROFILE=1
      std::printf("profile (MMREC_PROFILE=1), seconds by scope:\n");
      for (const auto& e : prof::report())
        std::printf("  %-28s %9.3f s %9lld calls\n", e.name.c_str(), e.seconds, static_cast<long long>(e.calls));
    }
    std::printf("weights: %s/model.safetensors; checkpoint: %s\nmetrics: %s/metrics.jsonl; loss curve: %s/loss.svg\n",
                dir.c_str(), s.last_checkpoint.c_str(), dir.c_str(), dir.c_str());
    return 0;
  } catch (const JobError& e) {  // raised on every rank alike: rank 0 says it
    if (job.is_root()) std::fprintf(stderr, "%smmrec-train: %s\n", live ? "\n" : "", e.what());
    return 1;
  } catch (const std::exception& e) {  // this rank alone: end the job, never leave it hanging
    if (job.size() == 1) {
      std::fprintf(stderr, "%smmrec-train: %s\n", live ? "\n" : "", e.what());
      return 1;
    }
    std::fprintf(stderr, "%smmrec-train: rank %d: %s\n", live ? "\n" : "", job.rank(), e.what());
    std::fflush(stderr);
    job.abort(1);
  }
}
