// The strided_operand pass: see copy_chains.h.
#include <sstream>

#include "ops/common.h"
#include "ops/copy_chains.h"
#include "ops/elementwise_attrs.h"
#include "ops/fuse_pointwise.h"

namespace mmrec::ops::detail {
namespace {
using autograd::Call;
using autograd::OpKind;

// The call reads `mid` as its y (input 1), whole, and nowhere else.
bool reads_as_y(const Call& c, const Storage* mid) {
  if (c.kind != OpKind::sigmoid_mul && c.kind != OpKind::sigmoid_mul_bwd) return false;
  if (attrs_of_call<ActAttrs>(c).ld != 0 || c.in.size() < 2 || storage_of(c.in[1]) != mid) return false;
  for (size_t k = 0; k < c.in.size(); ++k)
    if (k != 1 && c.in[k].defined() && storage_of(c.in[k]) == mid) return false;
  return autograd::whole_buffer(c.in[1]);
}
}  // namespace

size_t fuse_strided_operand(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const Call& c = calls[i];
    if (!f32_copy_to_temporary(c, temporary) || c.out[0].dim() < 2) continue;
    const Tensor src = c.in[0], mid = c.out[0];
    const Storage *ss = storage_of(src), *ms = storage_of(mid);
    const autograd::BufferUses& mu = ix[ms];
    if (mu.writers.size() != 1 || mu.readers.empty()) continue;
    const int64_t cols = mid.shape().back();
    const std::optional<int64_t> ld = cols > 0 ? uniform_rows(view_of(src), cols) : std::nullopt;
    bool ok = ld.has_value() && *ld > cols;
    for (size_t r : mu.readers) {  // the source is read there instead of at i
      ok = ok && r > i && reads_as_y(calls[r], ms);
      for (const Tensor& o : calls[r].out) ok = ok && (!o.defined() || storage_of(o) != ss);
    }
    for (size_t w : ix[ss].writers) ok = ok && (w < i || w > mu.readers.back());
    if (!ok) continue;
    const Tensor rows = src.as_strided({mid.numel() / cols, cols}, {*ld, 1}, src.offset());
    for (size_t r : mu.readers) {
      ActAttrs a = attrs_of_call<ActAttrs>(calls[r]);
      a.cols = cols, a.ld = *ld;
      calls[r].attrs = autograd::Attrs::of(a);
      calls[r].in[1] = rows;  // value ids: renumbered after the passes
    }
    drop[i] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::string describe_strided_operand(const Call& c) {
  const ActAttrs a = attrs_of_call<ActAttrs>(c);
  if (a.ld == 0) return "";
  std::ostringstream os;
  os << "copy -> " << autograd::op_kind_name(c.kind) << " (2 calls, y read in place: "
     << size_text(static_cast<size_t>(a.n) * sizeof(float)) << ", rows of " << a.cols << " floats " << a.ld
     << " apart)";
  return os.str();
}

}  // namespace mmrec::ops::detail
