// Prints the MMREC_PROFILE=1 report (time per model scope and backward node)
// on stderr; nothing when profiling is off.
#pragma once
#include <cstdio>

#include "models/profile.h"

namespace mmrec::tools {

inline void print_profile() {
  if (!prof::enabled()) return;
  for (const auto& e : prof::report())
    std::fprintf(stderr, "profile %-28s %10.3f ms %8lld calls\n", e.name.c_str(), e.seconds * 1e3,
                 static_cast<long long>(e.calls));
}

}  // namespace mmrec::tools
