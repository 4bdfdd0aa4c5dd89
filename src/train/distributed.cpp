#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <unordered_map>

#include "autograd/tape.h"

#ifdef MMREC_MPI
#include <mpi.h>
#endif

namespace mmrec {
namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

#ifdef MMREC_MPI
// mpirun (Open MPI's ORTE / PMIx) and other PMI launchers set these.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}
#endif
}  // namespace

bool Distributed::built_with_mpi() {
#ifdef MMREC_MPI
  return true;
#else
  return false;
#endif
}

Distributed::Distributed() = default;

Distributed::Distributed(int* argc, char*** argv) {
#ifdef MMREC_MPI
  if (!launched_by_mpi()) return;
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    // Only the calling thread (the training loop) makes MPI calls.
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    finalize_ = true;
  }
  mpi_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);
#else
  (void)argc, (void)argv;
#endif
}

Distributed::~Distributed() {
#ifdef MMREC_MPI
  if (finalize_) MPI_Finalize();
#endif
}

void Distributed::barrier() const {
#ifdef MMREC_MPI
  if (mpi_) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

void Distributed::sum(double* v, int n) const { reduce(v, n, false); }
void Distributed::max(double* v, int n) const { reduce(v, n, true); }

void Distributed::reduce(double* v, int n, bool take_max) const {
#ifdef MMREC_MPI
  if (mpi_ && size_ > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, take_max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD);
#else
  (void)v, (void)n, (void)take_max;
#endif
}

bool Distributed::any(bool flag) const {
  double v = flag ? 1.0 : 0.0;
  max(&v, 1);
  return v != 0.0;
}

void Distributed::broadcast(double* v, int n, int root) const {
#ifdef MMREC_MPI
  if (mpi_ && size_ > 1) MPI_Bcast(v, n, MPI_DOUBLE, root, MPI_COMM_WORLD);
#else
  (void)v, (void)n, (void)root;
#endif
}

void Distributed::broadcast(std::string& s, int root) const {
#ifdef MMREC_MPI
  if (!mpi_ || size_ == 1) return;
  long long n = static_cast<long long>(s.size());
  MPI_Bcast(&n, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD);
  s.resize(static_cast<size_t>(n));
  if (n > 0) MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD);
#else
  (void)s, (void)root;
#endif
}

void Distributed::together(const std::function<void()>& f) const {
  std::string err;
  bool failed = false;
  try {
    f();
  } catch (const std::exception& e) {
    err = e.what();
    failed = true;
  }
  if (!mpi_ || size_ == 1) {
    if (failed) throw JobError(err);
    return;
  }
#ifdef MMREC_MPI
  int first = failed ? rank_ : INT_MAX;
  MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == INT_MAX) return;
  broadcast(err, first);
  throw JobError(first > 0 ? "rank " + std::to_string(first) + ": " + err : err);
#endif
}

void Distributed::abort(int status) const {
#ifdef MMREC_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, status);
#endif
  std::_Exit(status);
}

// ---- GradReducer ----

struct GradReducer::Impl {
  struct Bucket {
    std::vector<size_t> members;  // parameter indices
    std::vector<int64_t> offsets; // of each member in buf
    Tensor buf;                   // f32 [elements]
    size_t ready = 0;
    bool started = false, done = false;
#ifdef MMREC_MPI
    MPI_Request req = MPI_REQUEST_NULL;
#endif
  };

  const Distributed& job;
  std::vector<std::pair<std::string, Tensor>> params;
  bool overlap;
  std::vector<Bucket> buckets;
  std::vector<std::pair<size_t, size_t>> where;  // parameter -> (bucket, member)
  std::unordered_map<const TensorImpl*, size_t> index;
  std::vector<bool> ready;
  size_t next = 0;  // buckets start in index order: the same on every rank
  double t_first = 0, t_last_done = 0;
  bool active = false;

  Impl(const Distributed& j, std::vector<std::pair<std::string, Tensor>> p, int64_t bucket_bytes, bool ov)
      : job(j), params(std::move(p)), overlap(ov), where(params.size()), ready(params.size(), false) {
    // Reverse parameter order: backward finishes the last layers first.
    std::vector<int64_t> elems;
    for (size_t k = params.size(); k-- > 0;) {
      const int64_t n = params[k].second.numel();
      if (buckets.empty() || (elems.back() > 0 && 4 * (elems.back() + n) > bucket_bytes)) {
        buckets.emplace_back();
        elems.push_back(0);
      }
      Bucket& b = buckets.back();
      where[k] = {buckets.size() - 1, b.members.size()};
      b.members.push_back(k);
      b.offsets.push_back(elems.back());
      elems.back() += n;
      index.emplace(params[k].second.impl(), k);
    }
    for (size_t i = 0; i < buckets.size(); ++i) {
      check(elems[i] <= INT_MAX, "GradReducer: a bucket of ", elems[i], " elements is too large for MPI");
      buckets[i].buf = Tensor::empty({elems[i]}, DType::f32);
    }
  }

  void pack(size_t k) {
    const auto [bi, m] = where[k];
    Bucket& b = buckets[bi];
    const Tensor& p = params[k].second;
    float* dst = b.buf.data<float>() + b.offsets[m];
    const int64_t n = p.numel();
    if (p.impl()->grad) {
      const Tensor g = p.grad();
      check(g.dtype() == DType::f32 && g.is_contiguous() && g.numel() == n, "GradReducer: the gradient of ",
            params[k].first, " is not a contiguous f32 tensor of ", n, " elements");
      std::memcpy(dst, g.data<float>(), static_cast<size_t>(n) * sizeof(float));
    } else {
      std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
    }
    ready[k] = true;
    ++b.ready;
  }

  void start(Bucket& b) {
    if (t_first == 0) t_first = now_s();
    b.started = true;
#ifdef MMREC_MPI
    MPI_Iallreduce(MPI_IN_PLACE, b.buf.data<float>(), static_cast<int>(b.buf.numel()), MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &b.req);
#endif
  }

  // Starts the complete buckets in order and lets MPI progress the started ones.
  void progress() {
    while (next < buckets.size() && buckets[next].ready == buckets[next].members.size()) start(buckets[next++]);
#ifdef MMREC_MPI
    for (size_t i = 0; i < next; ++i) {
      Bucket& b = buckets[i];
      if (b.done) continue;
      int flag = 0;
      MPI_Test(&b.req, &flag, MPI_STATUS_IGNORE);
      if (flag) b.done = true, t_last_done = now_s();
    }
#endif
  }

  void on_ready(const Tensor& leaf) {
    auto it = index.find(leaf.impl());
    if (it == index.end() || ready[it->second]) return;
    pack(it->second);
    progress();
  }
};

GradReducer::GradReducer(const Distributed& job, std::vector<std::pair<std::string, Tensor>> params,
                         int64_t bucket_bytes, bool overlap)
    : impl_(std::make_unique<Impl>(job, std::move(params), bucket_bytes, overlap)) {}

GradReducer::~GradReducer() {
  if (impl_->active) autograd::set_grad_ready_hook({});
}

int GradReducer::buckets() const { return static_cast<int>(impl_->buckets.size()); }

void GradReducer::begin() {
  Impl& r = *impl_;
  if (r.job.size() == 1) return;
  r.active = true;
  r.next = 0;
  r.t_first = r.t_last_done = 0;
  std::fill(r.ready.begin(), r.ready.end(), false);
  for (auto& b : r.buckets) b.ready = 0, b.started = b.done = false;
  if (r.overlap) autograd::set_grad_ready_hook([&r](const Tensor& leaf) { r.on_ready(leaf); });
}

ReduceStats GradReducer::finish() {
  Impl& r = *impl_;
  ReduceStats s;
  if (r.job.size() == 1) return s;
  autograd::set_grad_ready_hook({});
  r.active = false;
  const double t0 = now_s();
  for (size_t k = 0; k < r.params.size(); ++k)
    if (!r.ready[k]) r.pack(k);  // unreached parameters, or all of them without overlap
  r.progress();
#ifdef MMREC_MPI
  for (auto& b : r.buckets)
    if (!b.done) MPI_Wait(&b.req, MPI_STATUS_IGNORE), b.done = true;
#endif
  const double t1 = now_s();
  const float inv = 1.0f / static_cast<float>(r.job.size());
  for (size_t k = 0; k < r.params.size(); ++k) {
    const auto [bi, m] = r.where[k];
    const Tensor& p = r.params[k].second;
    if (!p.impl()->grad) p.impl()->grad = Tensor::zeros(p.shape()).impl_ptr();
    float* g = p.grad().data<float>();
    const float* src = r.buckets[bi].buf.data<float>() + r.buckets[bi].offsets[m];
    for (int64_t i = 0, n = p.numel(); i < n; ++i) g[i] = src[i] * inv;
  }
  s.wait_seconds = t1 - t0;
  s.total_seconds = t1 - r.t_first;
  s.buckets = static_cast<int>(r.buckets.size());
  for (const auto& b : r.buckets) s.bytes += b.buf.numel() * 4;
  return s;
}

}  // namespace mmrec
