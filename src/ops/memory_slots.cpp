#include "ops/memory_slots.h"

#include "ops/common.h"
#include "ops/kernels/memattn.h"
#include "ops/kernels/memory_slots.h"

namespace mmrec::ops {
namespace {

int64_t level_columns(int64_t slots, int64_t levels) {
  int64_t n = 0;
  for (int64_t l = 0, group = 1; l < levels; ++l, group *= 4) n += (slots + group - 1) / group;
  return n;
}

struct SlotAttrs {
  kernels::SlotMemoryDims dims;
  int64_t T;
  int64_t k_strides[2], v_strides[2];  // batch, token
};
void run_memory_slots(const SlotAttrs& a, const Tensor* in, const Tensor* out) {
  int64_t* counts = out[7].data<int64_t>();
  // Several tokens in one call are whole chunks from a chunk boundary (the
  // reads between them are the caller's): checked here, at every replay.
  check(a.T <= 1 || counts[0] == 0, "memory_slots_update: a call of ", a.T,
        " tokens must begin at a chunk boundary; the chunk in progress has ", counts[0], " tokens");
  const kernels::TokenRows k{a.T ? in[0].data<float>() : nullptr, a.k_strides[0], a.k_strides[1]};
  const kernels::TokenRows v{a.T ? in[1].data<float>() : nullptr, a.v_strides[0], a.v_strides[1]};
  kernels::memory_slots_step(a.dims, a.T, k, v, out[0].data<float>(), out[1].data<float>(), out[2].data<float>(),
                             out[3].data<float>(), out[4].data<float>(), out[5].data<float>(), out[6].data<float>(),
                             counts);
}

}  // namespace

SlotMemory make_slot_memory(int64_t batch, int64_t dim, int64_t heads, int64_t slots, int64_t levels,
                            int64_t chunk) {
  check(batch >= 1 && dim >= 1 && heads >= 1 && dim % heads == 0 && slots >= 0 && levels >= 1 && chunk >= 1,
        "make_slot_memory: invalid sizes (batch ", batch, ", dim ", dim, ", heads ", heads, ", slots ", slots,
        ", levels ", levels, ", chunk ", chunk, ")");
  // Every level's columns, rounded up to whole vectors of the memory
  // attention kernel, which then reads the levels in place (the extra
  // columns stay zero and masked).
  const int64_t St = kernels::memattn_weight_row(level_columns(slots, levels)), d = dim / heads;
  SlotMemory m;
  m.slots_k = Tensor::zeros({batch, slots, dim});
  m.slots_v = Tensor::zeros({batch, slots, dim});
  m.sum_k = Tensor::zeros({batch, dim});
  m.sum_v = Tensor::zeros({batch, dim});
  m.kt = Tensor::zeros({batch * heads, d, St});
  m.v = Tensor::zeros({batch * heads, St, d});
  m.mask = Tensor::full({St}, -1e30);
  m.counts = Tensor::zeros({2}, DType::i64);
  m.heads = heads, m.levels = levels, m.chunk = chunk;
  return m;
}

void memory_slots_update(const SlotMemory& m, const Tensor& k, const Tensor& v) {
  const char* op = "memory_slots_update";
  const int64_t B = m.sum_k.size(0), D = m.sum_k.size(1), M = m.slots_k.size(1);
  const bool tokens = k.defined() || v.defined();
  int64_t T = 0;
  if (tokens) {
    for (const Tensor* t : {&k, &v}) {
      detail::check_f32(op, *t, "k/v");
      check(t->dim() == 3 && t->size(0) == B && t->size(2) == D && t->size(1) == k.size(1) && t->strides()[2] == 1,
            op, ": k and v must be [", B, ", T, ", D, "] with unit stride along the last axis, got ", t->shape());
    }
    T = k.size(1);
  }
  const SlotAttrs a{{B, D, m.heads, M, m.levels, m.chunk, m.mask.size(0)},
                    T,
                    {tokens ? k.strides()[0] : 0, tokens ? k.strides()[1] : 0},
                    {tokens ? v.strides()[0] : 0, tokens ? v.strides()[1] : 0}};
  // The buffers are read and written in place; k and v are read.
  if (tokens && T == 0) return;
  detail::dispatch<run_memory_slots>(detail::OpKind::memory_update, a, {tokens ? k : Tensor(), tokens ? v : Tensor()},
                                     {m.slots_k, m.slots_v, m.sum_k, m.sum_v, m.kt, m.v, m.mask, m.counts});
}

}  // namespace mmrec::ops
