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
//   * exp() is the same Cephes-style polynomial evaluated with the same fma/mul/add sequence;
//   * the build uses -ffp-contract=off, so the compiler never fuses a mul and an add on its own.
//
// Item layout ("packed items"): panels of kPanel = 16 consecutive items; panel p holds items
// 16p .. 16p+15 as [d][16] (item-fastest), the ragged last panel zero padded. Panels follow each
// other, so panel p starts at float offset p * d * 16. The layout does not depend on the SIMD level
// or on the block sizes.
//
// These translation units must not instantiate std:: templates (their inline copies would be
// compiled for the SIMD target and could be chosen by the linker for generic callers).
#pragma once

#include <cstdint>

namespace mmrec {

constexpr int64_t kPanel = 16;

enum class SimdLevel : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Result of the per-row epilogue.
struct RowStats {
    float max;      // max over the row of s * inv_t (float32); -inf when every entry is -inf
    float sum;      // sum over the row of exp(s * inv_t - max) (float32, 16-lane order); 0 if max=-inf
    int64_t count;  // number of positions written to `pos` (entries with s > threshold)
};

struct KernelOps {
    SimdLevel level;
    const char* name;
    // c[r * ldc + j] = dot(a[r * lda ...], item j of the panels), r < n_rows, j < n_panels * 16.
    void (*tile_scores)(const float* a, int64_t lda, int64_t n_rows, const float* panels,
                        int64_t n_panels, int64_t d, float* c, int64_t ldc);
    // Epilogue over one tile row of n entries (n a multiple of 16; padding entries hold -inf):
    // the block max and exp-sum of s * inv_t, and the positions j (ascending) with s[j] > threshold.
    // When the max is -inf nothing else is computed (sum = 0, count = 0).
    RowStats (*row_epilogue)(const float* s, int64_t n, float inv_t, float threshold, int32_t* pos);
};

const KernelOps& kernels_scalar();
const KernelOps& kernels_avx2();
const KernelOps& kernels_avx512();

// Shared constants of the exp() approximation (exp(y) for y <= 0; exactly 0 below kExpLo).
namespace expc {
constexpr float kLo = -87.33654475f;  // log(2^-126): below this the result is flushed to 0
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kC1 = 0.693359375f;   // ln 2 = kC1 + kC2 (Cody-Waite split)
constexpr float kC2 = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f;
constexpr float kP1 = 1.3981999507e-3f;
constexpr float kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f;
constexpr float kP4 = 1.6666665459e-1f;
constexpr float kP5 = 5.0000001201e-1f;
}  // namespace expc

}  // namespace mmrec
