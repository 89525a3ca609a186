// AVX2+FMA kernels: 6 users x 16 items (one panel = two ymm halves) of accumulators, broadcast-FMA
// over d. Compiled for the avx2,fma target inside this file only; called only when the CPU supports it.
// No std:: templates here (see kernels.h).
#include "cpu/kernels.h"

#include <immintrin.h>

#include <cstdint>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace mmrec {
namespace {

constexpr int kMR = 6;  // users per register tile (12 accumulators + 2 panel halves + 1 broadcast)

template <int MR>
__attribute__((always_inline)) inline void micro(const float* __restrict a, int64_t lda, const float* __restrict b,
                                                 int64_t d, float* __restrict c, int64_t ldc) {
    __m256 lo[MR], hi[MR];
    for (int i = 0; i < MR; ++i) {
        lo[i] = _mm256_setzero_ps();
        hi[i] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < d; ++k) {
        const __m256 b0 = _mm256_loadu_ps(b + k * kPanel);
        const __m256 b1 = _mm256_loadu_ps(b + k * kPanel + 8);
        for (int i = 0; i < MR; ++i) {
            const __m256 av = _mm256_broadcast_ss(a + i * lda + k);
            lo[i] = _mm256_fmadd_ps(av, b0, lo[i]);
            hi[i] = _mm256_fmadd_ps(av, b1, hi[i]);
        }
    }
    for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(c + i * ldc, lo[i]);
        _mm256_storeu_ps(c + i * ldc + 8, hi[i]);
    }
}

void tile_scores(const float* a, int64_t lda, int64_t n_rows, const float* panels, int64_t n_panels, int64_t d,
                 float* c, int64_t ldc) {
    const int64_t pstride = d * kPanel;
    for (int64_t p = 0; p < n_panels; ++p) {
        const float* b = panels + p * pstride;
        float* cp = c + p * kPanel;
        int64_t i = 0;
        for (; i + kMR <= n_rows; i += kMR) micro<kMR>(a + i * lda, lda, b, d, cp + i * ldc, ldc);
        const float* ai = a + i * lda;
        float* ci = cp + i * ldc;
        switch (n_rows - i) {
            case 5:
                micro<5>(ai, lda, b, d, ci, ldc);
                break;
            case 4:
                micro<4>(ai, lda, b, d, ci, ldc);
                break;
            case 3:
                micro<3>(ai, lda, b, d, ci, ldc);
                break;
            case 2:
                micro<2>(ai, lda, b, d, ci, ldc);
                break;
            case 1:
                micro<1>(ai, lda, b, d, ci, ldc);
                break;
            default:
                break;
        }
    }
}

// One 8-lane step of the block exp-sum (see kernels.h): 2^(s * scale2 - m), 0 where fx < -126.
__attribute__((always_inline)) inline __m256 exp2_term(__m256 v, __m256 scale2, __m256 neg_m) {
    using namespace expc;
    const __m256 fx = _mm256_fmadd_ps(v, scale2, neg_m);
    const __m256 keep = _mm256_cmp_ps(fx, _mm256_set1_ps(kMinExponent), _CMP_GE_OQ);
    const __m256 n = _mm256_round_ps(fx, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(fx, n);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kQ5), f, _mm256_set1_ps(kQ4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kQ3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kQ2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kQ1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    // 2^n as a float (n in [-126, 0] on kept lanes; other lanes are masked to +0 below).
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

__attribute__((always_inline)) inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

RowStats row_epilogue(const float* s, int64_t n, float scale2, float threshold, int32_t* pos) {
    const float neg_inf = -__builtin_inff();
    // Block max of the raw scores (4 independent chains); max(s * scale2) = max(s) * scale2.
    __m256 mx0 = _mm256_set1_ps(neg_inf), mx1 = mx0, mx2 = mx0, mx3 = mx0;
    int64_t j = 0;
    for (; j + 2 * kPanel <= n; j += 2 * kPanel) {
        mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(s + j));
        mx1 = _mm256_max_ps(mx1, _mm256_loadu_ps(s + j + 8));
        mx2 = _mm256_max_ps(mx2, _mm256_loadu_ps(s + j + 16));
        mx3 = _mm256_max_ps(mx3, _mm256_loadu_ps(s + j + 24));
    }
    for (; j < n; j += kPanel) {
        mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(s + j));
        mx1 = _mm256_max_ps(mx1, _mm256_loadu_ps(s + j + 8));
    }
    const float smax = hmax(_mm256_max_ps(_mm256_max_ps(mx0, mx1), _mm256_max_ps(mx2, mx3)));
    if (smax == neg_inf) return RowStats{neg_inf, 0.0f, neg_inf, 0};
    const float block = smax * scale2;
    if (!(__builtin_fabsf(block) < expc::kFastExponentLimit))
        return row_epilogue_large(s, n, smax, scale2, threshold, pos);
    const float m = __builtin_ceilf(block);
    const __m256 tv = _mm256_set1_ps(scale2);
    const __m256 neg_m = _mm256_set1_ps(-m);
    const __m256 thr = _mm256_set1_ps(threshold);
    // acc0 holds lanes 0..7, acc1 lanes 8..15 of the 16-lane sum.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t count = 0;
    for (j = 0; j < n; j += kPanel) {
        const __m256 v0 = _mm256_loadu_ps(s + j);
        const __m256 v1 = _mm256_loadu_ps(s + j + 8);
        acc0 = _mm256_add_ps(acc0, exp2_term(v0, tv, neg_m));
        acc1 = _mm256_add_ps(acc1, exp2_term(v1, tv, neg_m));
        unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v0, thr, _CMP_GT_OQ))) |
                        (static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v1, thr, _CMP_GT_OQ))) << 8);
        while (mask) {
            pos[count++] = static_cast<int32_t>(j + __builtin_ctz(mask));
            mask &= mask - 1;
        }
    }
    const __m256 s8 = _mm256_add_ps(acc0, acc1);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return RowStats{m, _mm_cvtss_f32(s1), smax, count};
}

int64_t row_select(const float* s, int64_t n, float threshold, int32_t* pos) {
    const __m256 thr = _mm256_set1_ps(threshold);
    int64_t count = 0;
    for (int64_t j = 0; j < n; j += kPanel) {
        unsigned mask =
            static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + j), thr, _CMP_GT_OQ))) |
            (static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + j + 8), thr, _CMP_GT_OQ)))
             << 8);
        while (mask) {
            pos[count++] = static_cast<int32_t>(j + __builtin_ctz(mask));
            mask &= mask - 1;
        }
    }
    return count;
}

}  // namespace
}  // namespace mmrec

#pragma GCC pop_options

namespace mmrec {
namespace {
const KernelOps kOps{SimdLevel::Avx2, "avx2", &tile_scores, &row_epilogue, &pack_panels_portable, &row_select};
}  // namespace

const KernelOps& kernels_avx2() {
    return kOps;
}

}  // namespace mmrec
