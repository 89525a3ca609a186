// AVX-512 VNNI int8 kernel, kept deliberately simple: vpdpbusd multiplies unsigned by signed bytes, so
// the item codes are offset to unsigned (x ^ 0x80 = q + 128, in [1, 255]) and the offset's contribution
// 128 * sum(q_u) is taken off up front (the accumulator starts at -128 * usum). 8 users x 16 items.
// rescore and filter are the AVX2 ones (the VNNI level is only chosen where AVX2 exists).
// No std:: templates here (see kernels.h).
#include <immintrin.h>

#include <cstdint>

#include "cpu/int8_quant.h"

#pragma GCC push_options
// GCC 12 flags its own _mm512_cvtepi32_ps (the intrinsic's undefined pass-through operand) as uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vnni")

namespace mmrec {
namespace {

constexpr int kMR = 8;

template <int MR>
__attribute__((always_inline)) inline void micro(const int8_t* __restrict a, int64_t lda, const float* su,
                                                 const int32_t* usum, const int8_t* __restrict b, const float* sv,
                                                 int64_t d4, float* __restrict c, int64_t ldc) {
    __m512i acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_set1_epi32(-128 * usum[i]);
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int64_t q = 0; q < d4; ++q) {
        const __m512i bu = _mm512_xor_si512(_mm512_loadu_si512(b + q * 64), offset);
        for (int i = 0; i < MR; ++i) {
            int32_t word;
            __builtin_memcpy(&word, a + i * lda + q * 4, 4);
            acc[i] = _mm512_dpbusd_epi32(acc[i], bu, _mm512_set1_epi32(word));
        }
    }
    const __m512 s = _mm512_loadu_ps(sv);
    for (int i = 0; i < MR; ++i)
        _mm512_storeu_ps(c + i * ldc,
                         _mm512_mul_ps(_mm512_cvtepi32_ps(acc[i]), _mm512_mul_ps(_mm512_set1_ps(su[i]), s)));
}

void tile_approx(const int8_t* uq, int64_t ldu, const float* su, const int32_t* usum, int64_t n_rows,
                 const int8_t* panels, const float* sv, int64_t n_panels, int64_t d4, float* c, int64_t ldc) {
    const int64_t pstride = d4 * kI8Panel * 4;
    for (int64_t p = 0; p < n_panels; ++p) {
        const int8_t* b = panels + p * pstride;
        const float* s = sv + p * kI8Panel;
        float* cp = c + p * kI8Panel;
        int64_t i = 0;
        for (; i + kMR <= n_rows; i += kMR)
            micro<kMR>(uq + i * ldu, ldu, su + i, usum + i, b, s, d4, cp + i * ldc, ldc);
        for (; i < n_rows; ++i) micro<1>(uq + i * ldu, ldu, su + i, usum + i, b, s, d4, cp + i * ldc, ldc);
    }
}

}  // namespace
}  // namespace mmrec

#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace mmrec {
namespace {
const Int8Ops& avx2() {
    return int8_kernels_avx2();
}
}  // namespace

const Int8Ops& int8_kernels_avx512vnni() {
    static const Int8Ops ops{Int8Level::Avx512Vnni, "avx512vnni", &tile_approx, avx2().rescore, avx2().filter};
    return ops;
}

}  // namespace mmrec
