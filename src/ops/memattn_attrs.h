// The attributes of ops::memattn's calls (memattn.cpp), which the
// write_in_place pass (copy_chains.cpp) rewrites to write a chunk's output
// in its place in the rows of the whole sequence (internal to src/ops).
#pragma once
#include "ops/kernels/memattn.h"

namespace mmrec::ops::detail {

struct MemattnAttrs {
  kernels::MemattnShape s;
  float scale;
};

}  // namespace mmrec::ops::detail
