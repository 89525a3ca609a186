// SIMD kernels of the CPU engine: the score-tile micro-kernel and the per-row epilogue.
//
// Three implementations with one interface (a table of function pointers), selected at run time:
//   kernels_avx512.cpp  (#pragma GCC target avx512f)   16-wide, 8 users x 32 items register tile
//   kernels_avx2.cpp    (#pragma GCC target avx2,fma)   8-wide,  6 users x 16 items register tile
//   kernels_scalar.cpp  (default target)                portable loops, std::fma
//
// All three produce BITWISE-IDENTICAL results, by construction:
//   * a score is the fused-multiply-add chain acc = fma(u[k], v[k], acc), k = 0 .. d-1, acc0 = +0;
//   * the per-row block sum of exp() uses 16 lanes (lane l sums the elements j = l mod 16 in order)
//     and the fixed reduction tree ((l, l+8), then (l, l+4), (l, l+2), (l, l+1));
//   * exp() is the same exp2 polynomial evaluated with the same fma/mul/add sequence (below);
//   * the build uses -ffp-contract=off, so the compiler never fuses a mul and an add on its own.
//
// Item layout ("packed items"): panels of kPanel = 16 consecutive items; panel p holds items
// 16p .. 16p+15 as [d][16] (item-fastest), the ragged last panel zero padded. Panels follow each
// other, so panel p starts at float offset p * d * 16. The layout does not depend on the SIMD level
// or on the block sizes.
//
// The two SIMD translation units must not instantiate std:: templates (their inline copies would be
// compiled for the SIMD target and could be chosen by the linker for generic callers).
#pragma once

#include <cstdint>

namespace mmrec {

constexpr int64_t kPanel = 16;

enum class SimdLevel : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Result of the per-row epilogue. The exp-sum is kept in base 2: sum = sum_j 2^(s_j * scale2 - max)
// with scale2 = fl(log2(e) / temperature), so that one fma gives each exponent (see the exp-sum below).
struct RowStats {
    double max;     // the reference exponent the terms are relative to, exactly (see row_epilogue:
                    // an integer, or a double product on the large path); -inf when the row is all -inf
    float sum;      // sum over the row of 2^(s * scale2 - max) (float32, 16-lane order); 0 if max=-inf
    float top;      // the row's largest raw score (-inf when the row is all -inf)
    int64_t count;  // number of positions written to `pos` (entries with s > threshold)
};

struct KernelOps {
    SimdLevel level;
    const char* name;
    // c[r * ldc + j] = dot(a[r * lda ...], item j of the panels), r < n_rows, j < n_panels * 16.
    void (*tile_scores)(const float* a, int64_t lda, int64_t n_rows, const float* panels, int64_t n_panels, int64_t d,
                        float* c, int64_t ldc);
    // Epilogue over one tile row of n entries (n a multiple of 16; padding entries hold -inf): the
    // base-2 exp-sum of the row, and the positions j (ascending) with s[j] > threshold. The terms are
    // relative to the integer m = ceil(fl(row max * scale2)): it depends on this row only (so item
    // shards sum exactly what one pass sums), and blocks combine by exact powers of two -- unless
    // |fl(row max * scale2)| >= kFastExponentLimit, where floats are too coarse to be exponents and
    // row_epilogue_large takes over. When the row max is -inf nothing else is computed (max = -inf,
    // sum = 0, count = 0). `pos` must hold n + 16 entries: a path may store whole 16-lane vectors past
    // the last position it reports.
    RowStats (*row_epilogue)(const float* s, int64_t n, float scale2, float threshold, int32_t* pos);
    // Packs items[0 .. n_items) (row-major, row stride d) into ceil(n_items / 16) panels [d][16] at
    // dst (zero padded): the layout above, for one block. A plain copy, so identical on every path.
    void (*pack_panels)(const float* items, int64_t n_items, int64_t d, float* dst);
    // Top-k only (normalizer=False): the positions j (ascending) with s[j] > threshold, written to
    // `pos` (n + 16 entries, as above), and their count; no exp-sum. n a multiple of 16.
    int64_t (*row_select)(const float* s, int64_t n, float threshold, int32_t* pos);
};

// Portable pack_panels (used by the scalar and AVX2 paths).
void pack_panels_portable(const float* items, int64_t n_items, int64_t d, float* dst);

// The epilogue for rows whose max is too large for a float exponent reference (see below), shared
// by every path. smax: the row max (finite).
RowStats row_epilogue_large(const float* s, int64_t n, float smax, float scale2, float threshold, int32_t* pos);

const KernelOps& kernels_scalar();
const KernelOps& kernels_avx2();
const KernelOps& kernels_avx512();

// The block exp-sum, term by term, identical on every path (scale2 = fl(log2(e) / temperature), computed
// once in double; m = the integer reference exponent above, known exactly to the caller):
//   fx   = fma(s, scale2, -m)         s * scale2 - m with one rounding
//   n    = nearest integer to fx (ties to even);  f = fx - n  (exact, |f| <= 1/2)
//   p    = 1 + f*(q1 + f*(q2 + f*(q3 + f*(q4 + f*q5))))   (Horner, fma; 2^f to ~1.4 ulp)
//   term = p * 2^n when fx >= -126 (n >= -126: 2^n is a normal float), else exactly 0
// One fma gives the exponent, with no separate multiply by log2(e). m is known exactly, so its
// rounding cancels, and the row max's term is 2^(ceil residual + rounding residual), in (1/2, 1.5]:
// that needs |fl(row max * scale2)| < 2^24 (a rounding residual <= 1/2), hence kFastExponentLimit.
// The only other new error is scale2's rounding: every term is off by 2^(s * (C - scale2)),
// C = log2(e) / T, which the caller puts back for the row's top score (add_row_stats in topk.cpp),
// leaving a relative 6e-8 of each term's distance below that top. Relative error per term
// ~2e-7 + |fx| * 6e-8, far inside the contract's 1e-5 on the log-sum-exp.
//
// row_epilogue_large (|fl(row max * scale2)| >= 2^24, i.e. scores / T beyond ~1.2e7): the terms are
// 2^(fl(fl(s - smax) * scale2)) with the same n, f, p and cut as above, relative to the double
// smax * scale2 (exact). s - smax is exact near the top, so the softmax among the top scores stays
// right at any magnitude; portable code shared by every path.
namespace expc {
constexpr float kMinExponent = -126.0f;
constexpr float kFastExponentLimit = 16777216.0f;  // 2^24
constexpr float kQ1 = 0.693147004f;                // minimax fit of 2^f on [-1/2, 1/2], constant term fixed to 1
constexpr float kQ2 = 0.240222424f;
constexpr float kQ3 = 0.0555073358f;
constexpr float kQ4 = 0.00967148226f;
constexpr float kQ5 = 0.00132646365f;
}  // namespace expc

}  // namespace mmrec
