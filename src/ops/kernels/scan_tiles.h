// The scans' tile kernels (Highway, runtime dispatch; scan_hwy.cpp), which
// the driver in scan_drive.cpp runs over blocks of time. A tile is nt time
// rows of nc channels at row stride D; the carry arrays are [nc]. Aggregates
// start from a zero carry; x is the tile's decay product Π a (flushed below
// 1e-30). `stream`: non-temporal output stores (aligned rows, whole vectors).
#pragma once
#include <cstddef>

namespace mmrec::kernels::scan_tiles {

// linear_scan: h_t = a_t h_{t-1} + b_t from carry st (leaves as h_{nt-1}).
void lin_fwd(const float* a, const float* b, float* h, size_t D, size_t nt, size_t nc, float* st, bool stream);
// Its aggregate: y = the tile's end state, x = Π a.
void lin_agg(const float* a, const float* b, size_t D, size_t nt, size_t nc, float* x, float* y);
// Backward in reverse time from carry g = a_{t+1} g_{t+1} at the tile's end:
// g_t = dh_t + carry, db_t = g_t, da_t = g_t h_{t-1} (h_{t0-1} = hprev0);
// g leaves as a_{t0} g_{t0}. da or db may be null.
void lin_bwd(const float* a, const float* h, const float* hprev0, const float* dh, float* da, float* db, size_t D,
             size_t nt, size_t nc, float* g, bool stream);
// Its aggregate: y = a_{t0} g_{t0}, x = Π a.
void lin_bwd_agg(const float* a, const float* dh, size_t D, size_t nt, size_t nc, float* x, float* y);

// cumprod_scan: s = running Σ clamp(log a) (carry in and out), P_t = exp(s).
void cum_fwd(const float* a, float* P, size_t D, size_t nt, size_t nc, float* s, bool stream);
// Its aggregate: y = Σ clamp(log a) over the tile.
void cum_agg(const float* a, size_t D, size_t nt, size_t nc, float* y);
// Backward: acc = Σ_{u>=t} dP_u P_u (carry, reverse time), da_t = acc / a_t
// where exp(-50) <= a_t <= 1, else 0.
void cum_bwd(const float* a, const float* P, const float* dP, float* da, size_t D, size_t nt, size_t nc, float* acc);
// Its aggregate: y = Σ dP P over the tile.
void cum_bwd_agg(const float* P, const float* dP, size_t D, size_t nt, size_t nc, float* y);

}  // namespace mmrec::kernels::scan_tiles
