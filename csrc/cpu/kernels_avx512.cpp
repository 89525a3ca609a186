// AVX-512 (F + DQ) kernels: 8 users x 32 items (two 16-item panels) of zmm accumulators, broadcast-FMA over d.
// Compiled for the avx512f,avx512dq target inside this file only; called only when the CPU (and OS) support it.
// No std:: templates here (see kernels.h).
#include "cpu/kernels.h"

// GCC 12's AVX-512 intrinsics (_mm512_undefined_*: `__m512 __Y = __Y;`) trip -Wuninitialized once
// inlined; the warning is a false positive (fixed in GCC 13), so it is silenced for this file only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512dq")

namespace mmrec {
namespace {

constexpr int kMR = 8;  // users per register tile
constexpr int kNP = 2;  // 16-item panels per register tile: 16 accumulators + 2 panel vectors

// Register tile: acc[MR][NP] zmm (MR*NP <= 16 accumulators), one pass over d.
template <int MR, int NP>
__attribute__((always_inline)) inline void micro(const float* __restrict a, int64_t lda, const float* __restrict b,
                                                 int64_t pstride, int64_t d, float* __restrict c, int64_t ldc) {
    __m512 acc[MR][NP];
    for (int i = 0; i < MR; ++i)
        for (int p = 0; p < NP; ++p) acc[i][p] = _mm512_setzero_ps();
    for (int64_t k = 0; k < d; ++k) {
        __m512 bv[NP];
        for (int p = 0; p < NP; ++p) bv[p] = _mm512_loadu_ps(b + p * pstride + k * kPanel);
        for (int i = 0; i < MR; ++i) {
            const __m512 av = _mm512_set1_ps(a[i * lda + k]);
            for (int p = 0; p < NP; ++p) acc[i][p] = _mm512_fmadd_ps(av, bv[p], acc[i][p]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int p = 0; p < NP; ++p) _mm512_storeu_ps(c + i * ldc + p * kPanel, acc[i][p]);
}

template <int NP>
void column_strip(const float* a, int64_t lda, int64_t n_rows, const float* b, int64_t pstride, int64_t d, float* c,
                  int64_t ldc) {
    int64_t i = 0;
    for (; i + kMR <= n_rows; i += kMR) micro<kMR, NP>(a + i * lda, lda, b, pstride, d, c + i * ldc, ldc);
    const float* ai = a + i * lda;
    float* ci = c + i * ldc;
    switch (n_rows - i) {
        case 7:
            micro<7, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        case 6:
            micro<6, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        case 5:
            micro<5, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        case 4:
            micro<4, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        case 3:
            micro<3, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        case 2:
            micro<2, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        case 1:
            micro<1, NP>(ai, lda, b, pstride, d, ci, ldc);
            break;
        default:
            break;
    }
}

void tile_scores(const float* a, int64_t lda, int64_t n_rows, const float* panels, int64_t n_panels, int64_t d,
                 float* c, int64_t ldc) {
    const int64_t pstride = d * kPanel;
    int64_t p = 0;
    for (; p + kNP <= n_panels; p += kNP)
        column_strip<kNP>(a, lda, n_rows, panels + p * pstride, pstride, d, c + p * kPanel, ldc);
    const float* bp = panels + p * pstride;
    float* cp = c + p * kPanel;
    static_assert(kNP == 2, "the ragged end below handles one leftover panel");
    if (p < n_panels) column_strip<1>(a, lda, n_rows, bp, pstride, d, cp, ldc);
}

// One 16-lane step of the block exp-sum (see kernels.h): 2^(s * scale2 - m), 0 where fx < -126.
// vreduceps gives f = fx - rint(fx) in one instruction (exact: |f| <= 1/2), and fx - f is rint(fx)
// exactly, the exponent vscalefps applies (it floors its argument; an integer is its own floor).
__attribute__((always_inline)) inline __m512 exp2_term(__m512 v, __m512 scale2, __m512 neg_m) {
    using namespace expc;
    const __m512 fx = _mm512_fmadd_ps(v, scale2, neg_m);
    const __mmask16 keep = _mm512_cmp_ps_mask(fx, _mm512_set1_ps(kMinExponent), _CMP_GE_OQ);
    const __m512 f = _mm512_reduce_ps(fx, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 n = _mm512_sub_ps(fx, f);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kQ5), f, _mm512_set1_ps(kQ4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kQ3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kQ2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kQ1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    // p * 2^n with one rounding, exactly like the other paths' multiply by the float 2^n (n >= -126).
    return _mm512_maskz_scalef_ps(keep, p, n);
}

// Lane sum in the fixed tree order shared by every path: (l, l+8), (l, l+4), (l, l+2), (l, l+1).
__attribute__((always_inline)) inline float reduce16(__m512 v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 s8 = _mm256_add_ps(lo, hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

RowStats row_epilogue(const float* s, int64_t n, float scale2, float threshold, int32_t* pos) {
    const float neg_inf = -__builtin_inff();
    // Block max of the raw scores (4 independent chains); max(s * scale2) = max(s) * scale2.
    __m512 mx0 = _mm512_set1_ps(neg_inf), mx1 = mx0, mx2 = mx0, mx3 = mx0;
    int64_t j = 0;
    for (; j + 4 * kPanel <= n; j += 4 * kPanel) {
        mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(s + j));
        mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(s + j + kPanel));
        mx2 = _mm512_max_ps(mx2, _mm512_loadu_ps(s + j + 2 * kPanel));
        mx3 = _mm512_max_ps(mx3, _mm512_loadu_ps(s + j + 3 * kPanel));
    }
    for (; j < n; j += kPanel) mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(s + j));
    const float smax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(mx0, mx1), _mm512_max_ps(mx2, mx3)));
    if (smax == neg_inf) return RowStats{neg_inf, 0.0f, neg_inf, 0};
    const float block = smax * scale2;
    if (!(__builtin_fabsf(block) < expc::kFastExponentLimit))
        return row_epilogue_large(s, n, smax, scale2, threshold, pos);
    const float m = __builtin_ceilf(block);
    const __m512 cv = _mm512_set1_ps(scale2);
    const __m512 neg_m = _mm512_set1_ps(-m);
    __m512 acc = _mm512_setzero_ps();
    if (!(smax > threshold)) {
        // No entry beats the threshold (most rows once it has risen): the exp-sum alone.
        for (j = 0; j < n; j += kPanel) acc = _mm512_add_ps(acc, exp2_term(_mm512_loadu_ps(s + j), cv, neg_m));
        return RowStats{m, reduce16(acc), smax, 0};
    }
    const __m512 thr = _mm512_set1_ps(threshold);
    // Survivor positions by an in-register compress and a full 16-lane store (pos has kPanel slots of
    // slack): no branch per survivor or per vector, which mispredict once survivors are frequent
    // (large k, early blocks), and no compress-to-memory form (microcoded on some cores).
    __m512i lane_pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(kPanel);
    int64_t count = 0;
    for (j = 0; j < n; j += kPanel) {
        const __m512 v = _mm512_loadu_ps(s + j);
        acc = _mm512_add_ps(acc, exp2_term(v, cv, neg_m));
        const __mmask16 mask = _mm512_cmp_ps_mask(v, thr, _CMP_GT_OQ);
        _mm512_storeu_si512(pos + count, _mm512_maskz_compress_epi32(mask, lane_pos));
        count += __builtin_popcount(static_cast<unsigned>(mask));
        lane_pos = _mm512_add_epi32(lane_pos, step);
    }
    return RowStats{m, reduce16(acc), smax, count};
}

int64_t row_select(const float* s, int64_t n, float threshold, int32_t* pos) {
    const __m512 thr = _mm512_set1_ps(threshold);
    __m512i lane_pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(kPanel);
    int64_t count = 0;
    for (int64_t j = 0; j < n; j += kPanel) {  // the same compress-and-store as row_epilogue
        const __mmask16 mask = _mm512_cmp_ps_mask(_mm512_loadu_ps(s + j), thr, _CMP_GT_OQ);
        _mm512_storeu_si512(pos + count, _mm512_maskz_compress_epi32(mask, lane_pos));
        count += __builtin_popcount(static_cast<unsigned>(mask));
        lane_pos = _mm512_add_epi32(lane_pos, step);
    }
    return count;
}

// 16 items x 16 dims: rows r[i] (item i, dims k0 .. k0+15) -> out[c] (dim k0+c, items 0 .. 15).
__attribute__((always_inline)) inline void transpose16(__m512* r) {
    __m512 a[16], b[16];
    for (int i = 0; i < 8; ++i) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {  // b[4i + c], 128-bit lane L: dim 4L + c of items 4i .. 4i+3
        const __m512d x0 = _mm512_castps_pd(a[4 * i]), x1 = _mm512_castps_pd(a[4 * i + 1]);
        const __m512d x2 = _mm512_castps_pd(a[4 * i + 2]), x3 = _mm512_castps_pd(a[4 * i + 3]);
        b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
    }
    for (int c = 0; c < 4; ++c) {  // 4 x 4 transpose of 128-bit lanes
        const __m512 p0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44);
        const __m512 p1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
        const __m512 q0 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
        const __m512 q1 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(p0, q0, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(p0, q0, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(p1, q1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(p1, q1, 0xDD);
    }
}

void pack_panels(const float* items, int64_t n_items, int64_t d, float* dst) {
    const int64_t n_panels = (n_items + kPanel - 1) / kPanel;
    for (int64_t p = 0; p < n_panels; ++p) {
        float* out = dst + p * d * kPanel;
        const float* src = items + p * kPanel * d;
        const int64_t valid = n_items - p * kPanel < kPanel ? n_items - p * kPanel : kPanel;
        int64_t k0 = 0;
        if (valid == kPanel) {  // fast path: full panel, whole 16-dim groups (registers only)
            // Prefetch the panel after next (its rows are contiguous: 16 * d floats).
            if (p + 2 < n_panels)
                for (int64_t off = 0; off < kPanel * d; off += 16)
                    _mm_prefetch(reinterpret_cast<const char*>(src + 2 * kPanel * d + off), _MM_HINT_T0);
            for (; k0 + 16 <= d; k0 += 16) {
                __m512 r[16];
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * d + k0);
                transpose16(r);
#pragma GCC unroll 16
                for (int c = 0; c < 16; ++c) _mm512_storeu_ps(out + (k0 + c) * kPanel, r[c]);
            }
        }
        for (; k0 < d; k0 += 16) {
            const int64_t w = d - k0 < 16 ? d - k0 : 16;
            const __mmask16 m = static_cast<__mmask16>(w == 16 ? 0xFFFFu : ((1u << w) - 1u));
            __m512 r[16];
            for (int i = 0; i < 16; ++i)
                r[i] = i < valid ? _mm512_maskz_loadu_ps(m, src + i * d + k0) : _mm512_setzero_ps();
            transpose16(r);
            for (int c = 0; c < w; ++c) _mm512_storeu_ps(out + (k0 + c) * kPanel, r[c]);
        }
    }
}

}  // namespace
}  // namespace mmrec

#pragma GCC pop_options

namespace mmrec {
namespace {
const KernelOps kOps{SimdLevel::Avx512, "avx512", &tile_scores, &row_epilogue, &pack_panels, &row_select};
}  // namespace

const KernelOps& kernels_avx512() {
    return kOps;
}

}  // namespace mmrec

#pragma GCC diagnostic pop
