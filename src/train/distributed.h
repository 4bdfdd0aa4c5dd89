// Data-parallel training across processes on MPI (Open MPI): the job's
// process group, errors every rank agrees on, and gradient averaging in
// buckets that starts while backward is still running. Without MPI (built
// with -Dmpi=disabled, or a process not started by mpirun) it is a job of one
// process whose collectives return at once.
//
//   Distributed job(&argc, &argv);              // rank()/size() of mpirun -np N
//   GradReducer red(job, model.parameters(), 4 << 20);
//   red.begin();                                // buckets start in backward
//   autograd::backward(loss);
//   red.finish();                               // every .grad = mean over ranks
//   job.together([&] { if (job.is_root()) save(); });  // an error anywhere throws everywhere
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/error.h"
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec {

// An error raised identically on every rank (by Distributed::together): each
// rank can end cleanly, and only one needs to print it.
class JobError : public Error {
 public:
  using Error::Error;
};

class Distributed {
 public:
  // A job of one process.
  Distributed();
  // Joins the MPI job when the process was started by an MPI launcher
  // (mpirun sets OMPI_COMM_WORLD_SIZE / PMIX_RANK) and mmrec was built with
  // MPI; otherwise a job of one process.
  Distributed(int* argc, char*** argv);
  ~Distributed();  // MPI_Finalize
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  static bool built_with_mpi();
  bool uses_mpi() const { return mpi_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_size() const { return local_size_; }  // ranks on this machine
  bool is_root() const { return rank_ == 0; }

  // Collectives: every rank calls them in the same order.
  void barrier() const;
  // Element-wise sum / max over ranks, in place.
  void sum(double* v, int n) const;
  void max(double* v, int n) const;
  // True on every rank when `flag` is true on any rank.
  bool any(bool flag) const;
  // Root's values on every rank.
  void broadcast(double* v, int n, int root = 0) const;
  void broadcast(std::string& s, int root = 0) const;
  // Runs f on this rank; if f threw on any rank, throws a JobError with the
  // lowest such rank's message (prefixed "rank k: " when k > 0) on every rank.
  void together(const std::function<void()>& f) const;
  // Ends every process of the job at once (MPI_Abort), for an error the other
  // ranks cannot learn of at a collective; in a job of one, std::exit.
  [[noreturn]] void abort(int status) const;

 private:
  void reduce(double* v, int n, bool take_max) const;
  bool mpi_ = false, finalize_ = false;
  int rank_ = 0, size_ = 1, local_size_ = 1;
};

// Timings of one GradReducer::finish.
struct ReduceStats {
  double wait_seconds = 0;   // in finish(): the all-reduce time not hidden behind backward
  double total_seconds = 0;  // first bucket started .. last one done
  int64_t bytes = 0;         // gradient bytes reduced per rank
  int buckets = 0;
};

// Averages the gradients of `params` over the ranks with MPI_Iallreduce in
// buckets of about `bucket_bytes`, in reverse parameter order (the order
// backward finishes them). With overlap, a bucket starts from the tape's
// grad-ready hook as soon as all its gradients are final; without, all start
// in finish() (the reference for how much overlap hides). A job of one
// process leaves the gradients alone.
class GradReducer {
 public:
  GradReducer(const Distributed& job, std::vector<std::pair<std::string, Tensor>> params, int64_t bucket_bytes,
              bool overlap = true);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Installs the grad-ready hook on this thread for the next backward.
  void begin();
  // Starts what is left, waits for every bucket, writes the mean into every
  // parameter's .grad (defined afterwards) and removes the hook.
  ReduceStats finish();
  int buckets() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmrec

MMREC_API_END
