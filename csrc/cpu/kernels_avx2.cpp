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
__attribute__((always_inline)) inline void micro(const float* __restrict a, int64_t lda,
                                                 const float* __restrict b, int64_t d,
                                                 float* __restrict c, int64_t ldc) {
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

void tile_scores(const float* a, int64_t lda, int64_t n_rows, const float* panels, int64_t n_panels,
                 int64_t d, float* c, int64_t ldc) {
    const int64_t pstride = d * kPanel;
    for (int64_t p = 0; p < n_panels; ++p) {
        const float* b = panels + p * pstride;
        float* cp = c + p * kPanel;
        int64_t i = 0;
        for (; i + kMR <= n_rows; i += kMR) micro<kMR>(a + i * lda, lda, b, d, cp + i * ldc, ldc);
        const float* ai = a + i * lda;
        float* ci = cp + i * ldc;
        switch (n_rows - i) {
            case 5: micro<5>(ai, lda, b, d, ci, ldc); break;
            case 4: micro<4>(ai, lda, b, d, ci, ldc); break;
            case 3: micro<3>(ai, lda, b, d, ci, ldc); break;
            case 2: micro<2>(ai, lda, b, d, ci, ldc); break;
            case 1: micro<1>(ai, lda, b, d, ci, ldc); break;
            default: break;
        }
    }
}

__attribute__((always_inline)) inline __m256 exp_nonpos(__m256 y) {
    using namespace expc;
    const __m256 lo = _mm256_set1_ps(kLo);
    const __m256 keep = _mm256_cmp_ps(y, lo, _CMP_GE_OQ);
    const __m256 yc = _mm256_max_ps(y, lo);
    const __m256 fx = _mm256_mul_ps(yc, _mm256_set1_ps(kLog2e));
    const __m256 n = _mm256_round_ps(fx, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kC1), yc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kC2), r);
    const __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kP0), r, _mm256_set1_ps(kP1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
    p = _mm256_fmadd_ps(p, z, r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

__attribute__((always_inline)) inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

RowStats row_epilogue(const float* s, int64_t n, float inv_t, float threshold, int32_t* pos) {
    const __m256 tv = _mm256_set1_ps(inv_t);
    const float neg_inf = -__builtin_inff();
    __m256 mx0 = _mm256_set1_ps(neg_inf), mx1 = mx0;
    for (int64_t j = 0; j < n; j += kPanel) {
        mx0 = _mm256_max_ps(mx0, _mm256_mul_ps(_mm256_loadu_ps(s + j), tv));
        mx1 = _mm256_max_ps(mx1, _mm256_mul_ps(_mm256_loadu_ps(s + j + 8), tv));
    }
    const float m = hmax(_mm256_max_ps(mx0, mx1));
    if (m == neg_inf) return RowStats{neg_inf, 0.0f, 0};
    const __m256 mv = _mm256_set1_ps(m);
    const __m256 thr = _mm256_set1_ps(threshold);
    // acc0 holds lanes 0..7, acc1 lanes 8..15 of the 16-lane sum.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t count = 0;
    for (int64_t j = 0; j < n; j += kPanel) {
        const __m256 v0 = _mm256_loadu_ps(s + j);
        const __m256 v1 = _mm256_loadu_ps(s + j + 8);
        acc0 = _mm256_add_ps(acc0, exp_nonpos(_mm256_sub_ps(_mm256_mul_ps(v0, tv), mv)));
        acc1 = _mm256_add_ps(acc1, exp_nonpos(_mm256_sub_ps(_mm256_mul_ps(v1, tv), mv)));
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
    return RowStats{m, _mm_cvtss_f32(s1), count};
}

}  // namespace
}  // namespace mmrec

#pragma GCC pop_options

namespace mmrec {
namespace {
const KernelOps kOps{SimdLevel::Avx2, "avx2", &tile_scores, &row_epilogue};
}  // namespace

const KernelOps& kernels_avx2() { return kOps; }

}  // namespace mmrec
