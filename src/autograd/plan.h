// Memory planning of a captured graph (graph.cpp's Capture::run): every
// temporary gets an offset in one arena by liveness, and large temporaries
// that a call touches together start at different addresses modulo 4 KiB.
#pragma once
#include <cstddef>
#include <vector>

#include "autograd/graph.h"

namespace mmrec::autograd::detail {

// Sets each buffer's offset (temps are reordered); returns the arena's bytes.
size_t plan_offsets(std::vector<Buffer*>& temps, const std::vector<Call>& calls);

}  // namespace mmrec::autograd::detail
