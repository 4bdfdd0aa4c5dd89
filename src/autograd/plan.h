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
// The most bytes of temps live at once (during one call): what any plan of
// them needs at least.
size_t live_peak(const std::vector<Buffer*>& temps, size_t calls);

}  // namespace mmrec::autograd::detail
