// AVX2 int8 kernels: s8 x s8 dot products by the sign trick (vpsignb makes the user's codes unsigned and
// moves their signs onto the item codes; |a| <= 127 and |b| <= 127 keep vpmaddubsw's pair sums below
// 2^15, so nothing saturates), vpmaddwd by ones to int32. 4 users x 16 items of accumulators.
// No std:: templates here (see kernels.h).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/int8_quant.h"
#include "cpu/kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace mmrec {
namespace {

constexpr int kMR = 4;

template <int MR>
__attribute__((always_inline)) inline void micro(const int8_t* __restrict a, int64_t lda, const float* su,
                                                 const int8_t* __restrict b, const float* sv, int64_t d4,
                                                 float* __restrict c, int64_t ldc) {
    __m256i lo[MR], hi[MR];
    for (int i = 0; i < MR; ++i) {
        lo[i] = _mm256_setzero_si256();
        hi[i] = _mm256_setzero_si256();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t q = 0; q < d4; ++q) {
        const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + q * 64));
        const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + q * 64 + 32));
        for (int i = 0; i < MR; ++i) {
            int32_t word;
            __builtin_memcpy(&word, a + i * lda + q * 4, 4);
            const __m256i av = _mm256_set1_epi32(word);
            const __m256i aa = _mm256_sign_epi8(av, av);
            const __m256i p0 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b0, av));
            const __m256i p1 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b1, av));
            lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(p0, ones));
            hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(p1, ones));
        }
    }
    const __m256 s0 = _mm256_loadu_ps(sv), s1 = _mm256_loadu_ps(sv + 8);
    for (int i = 0; i < MR; ++i) {
        const __m256 ui = _mm256_set1_ps(su[i]);
        _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(_mm256_cvtepi32_ps(lo[i]), _mm256_mul_ps(ui, s0)));
        _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(hi[i]), _mm256_mul_ps(ui, s1)));
    }
}

void tile_approx(const int8_t* uq, int64_t ldu, const float* su, const int32_t* usum, int64_t n_rows,
                 const int8_t* panels, const float* sv, int64_t n_panels, int64_t d4, float* c, int64_t ldc) {
    (void)usum;
    const int64_t pstride = d4 * kI8Panel * 4;
    for (int64_t p = 0; p < n_panels; ++p) {
        const int8_t* b = panels + p * pstride;
        const float* s = sv + p * kI8Panel;
        float* cp = c + p * kI8Panel;
        int64_t i = 0;
        for (; i + kMR <= n_rows; i += kMR) micro<kMR>(uq + i * ldu, ldu, su + i, b, s, d4, cp + i * ldc, ldc);
        switch (n_rows - i) {
            case 3:
                micro<3>(uq + i * ldu, ldu, su + i, b, s, d4, cp + i * ldc, ldc);
                break;
            case 2:
                micro<2>(uq + i * ldu, ldu, su + i, b, s, d4, cp + i * ldc, ldc);
                break;
            case 1:
                micro<1>(uq + i * ldu, ldu, su + i, b, s, d4, cp + i * ldc, ldc);
                break;
            default:
                break;
        }
    }
}

// Eight independent fma chains (one per survivor), each the float32 micro-kernel's own sequence.
void rescore(const float* u, const float* items, int64_t d, const int32_t* idx, int64_t n, float* out) {
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
        const float* v[8];
        float acc[8];
        for (int l = 0; l < 8; ++l) {
            v[l] = items + int64_t(idx[t + l]) * d;
            acc[l] = 0.0f;
        }
        for (int64_t k = 0; k < d; ++k) {
            const float uk = u[k];
            for (int l = 0; l < 8; ++l) acc[l] = __builtin_fmaf(uk, v[l][k], acc[l]);
        }
        for (int l = 0; l < 8; ++l) out[t + l] = acc[l];
    }
    for (; t < n; ++t) {
        const float* v = items + int64_t(idx[t]) * d;
        float acc = 0.0f;
        for (int64_t k = 0; k < d; ++k) acc = __builtin_fmaf(u[k], v[k], acc);
        out[t] = acc;
    }
}

}  // namespace
}  // namespace mmrec

#pragma GCC pop_options

namespace mmrec {

const Int8Ops& int8_kernels_avx2() {
    // The pre-filter is the float32 engine's own survivor selection at the same level.
    static const Int8Ops ops{Int8Level::Avx2, "avx2", &tile_approx, &rescore, kernels_avx2().row_select};
    return ops;
}

}  // namespace mmrec
