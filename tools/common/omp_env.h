// Tools run with OMP_WAIT_POLICY=PASSIVE. The Debian oneDNN threads with
// OpenMP (libgomp) and our kernels with oneTBB; with the default policy an
// idle OpenMP thread spins for a while after every GEMM and takes the core
// the next oneTBB loop (or the next GEMM's second thread) needs: measured
// 1.5-4x slower loops and GEMMs on a busy machine (mmrec-bench
// --filter linear_omp_spin). libgomp reads the variable once, when it loads,
// so a tool started without it re-executes itself with it set.
//
//   int main(int argc, char** argv) { mmrec::tools::ensure_omp_passive(argv); ... }
#pragma once
#include <unistd.h>

#include <cstdlib>

namespace mmrec::tools {

// Returns when OMP_WAIT_POLICY or GOMP_SPINCOUNT is already set (the user's
// choice stands: GOMP_SPINCOUNT=300000 reproduces libgomp's default) or when
// the re-exec fails (the tool then runs with libgomp's default).
inline void ensure_omp_passive(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  execv("/proc/self/exe", argv);
}

}  // namespace mmrec::tools
