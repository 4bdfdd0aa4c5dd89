// What libmmrec.so exports. The library is compiled with -fvisibility=hidden:
// each installed header puts its declarations between MMREC_API_BEGIN and
// MMREC_API_END, which makes them (the C++ API) visible; everything declared
// only in the headers that are not installed stays inside the library.
// (The C API, include/mmrec/mmrec_c.h, has its own MMREC_C_API.)
#pragma once

#if defined(__GNUC__)
#define MMREC_API_BEGIN _Pragma("GCC visibility push(default)")
#define MMREC_API_END _Pragma("GCC visibility pop")
#else
#define MMREC_API_BEGIN
#define MMREC_API_END
#endif
