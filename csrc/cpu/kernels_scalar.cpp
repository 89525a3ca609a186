// Portable kernels: plain loops with std::fma, bitwise identical to the SIMD paths (see kernels.h).
// Used on CPUs without AVX2+FMA and, via MMREC_FAST_SIMD=scalar, to cross-check the SIMD paths.
#include "cpu/kernels.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace mmrec {
namespace {

constexpr int kLanes = 16;

// 2^fx as the block exp-sum computes it (see kernels.h); 0 where fx < -126, -inf or NaN.
inline float exp2_of(float fx) {
    using namespace expc;
    if (!(fx >= kMinExponent)) return 0.0f;
    const float n = std::nearbyint(fx);  // ties to even, like the SIMD paths
    const float f = fx - n;              // exact: |f| <= 1/2
    float p = std::fma(kQ5, f, kQ4);
    p = std::fma(p, f, kQ3);
    p = std::fma(p, f, kQ2);
    p = std::fma(p, f, kQ1);
    p = std::fma(p, f, 1.0f);
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Lane sum in the fixed tree order shared by every path.
inline float reduce16(const float* a) {
    float b[8], c[4];
    for (int i = 0; i < 8; ++i) b[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; ++i) c[i] = b[i] + b[i + 4];
    const float d0 = c[0] + c[2];
    const float d1 = c[1] + c[3];
    return d0 + d1;
}

void tile_scores(const float* a, int64_t lda, int64_t n_rows, const float* panels, int64_t n_panels, int64_t d,
                 float* c, int64_t ldc) {
    const int64_t pstride = d * kPanel;
    for (int64_t p = 0; p < n_panels; ++p) {
        const float* b = panels + p * pstride;
        for (int64_t i = 0; i < n_rows; ++i) {
            const float* ai = a + i * lda;
            float acc[kLanes] = {};
            for (int64_t k = 0; k < d; ++k) {
                const float av = ai[k];
                const float* bk = b + k * kPanel;
                for (int l = 0; l < kLanes; ++l) acc[l] = std::fma(av, bk[l], acc[l]);
            }
            float* ci = c + i * ldc + p * kPanel;
            for (int l = 0; l < kLanes; ++l) ci[l] = acc[l];
        }
    }
}

// The 16-lane exp-sum and the survivor positions of one row; `exponent(v)` gives each term's fx.
template <class Exponent>
RowStats sum_row(const float* s, int64_t n, float threshold, int32_t* pos, double reference, float smax,
                 Exponent exponent) {
    float acc[kLanes] = {};
    int64_t count = 0;
    for (int64_t j0 = 0; j0 < n; j0 += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
            const float v = s[j0 + l];
            acc[l] = acc[l] + exp2_of(exponent(v));
            if (v > threshold) pos[count++] = static_cast<int32_t>(j0 + l);
        }
    }
    return RowStats{reference, reduce16(acc), smax, count};
}

RowStats row_epilogue(const float* s, int64_t n, float scale2, float threshold, int32_t* pos) {
    const float neg_inf = -std::numeric_limits<float>::infinity();
    float smax = neg_inf;
    for (int64_t j = 0; j < n; ++j) smax = s[j] > smax ? s[j] : smax;
    if (smax == neg_inf) return RowStats{neg_inf, 0.0f, neg_inf, 0};
    const float block = smax * scale2;  // == max_j (s_j * scale2): rounding is monotone
    if (!(std::fabs(block) < expc::kFastExponentLimit)) return row_epilogue_large(s, n, smax, scale2, threshold, pos);
    const float m = std::ceil(block);
    return sum_row(s, n, threshold, pos, m, smax, [&](float v) { return std::fma(v, scale2, -m); });
}

int64_t row_select(const float* s, int64_t n, float threshold, int32_t* pos) {
    int64_t count = 0;
    for (int64_t j = 0; j < n; ++j)
        if (s[j] > threshold) pos[count++] = static_cast<int32_t>(j);
    return count;
}

const KernelOps kOps{SimdLevel::Scalar, "scalar", &tile_scores, &row_epilogue, &pack_panels_portable, &row_select};

}  // namespace

void pack_panels_portable(const float* items, int64_t n_items, int64_t d, float* dst) {
    const int64_t n_panels = (n_items + kPanel - 1) / kPanel;
    for (int64_t p = 0; p < n_panels; ++p) {
        float* out = dst + p * d * kPanel;
        const int64_t valid = n_items - p * kPanel < kPanel ? n_items - p * kPanel : kPanel;
        for (int64_t l = 0; l < valid; ++l) {
            const float* src = items + (p * kPanel + l) * d;
            for (int64_t k = 0; k < d; ++k) out[k * kPanel + l] = src[k];
        }
        for (int64_t l = valid; l < kPanel; ++l)
            for (int64_t k = 0; k < d; ++k) out[k * kPanel + l] = 0.0f;
    }
}

RowStats row_epilogue_large(const float* s, int64_t n, float smax, float scale2, float threshold, int32_t* pos) {
    // v - smax first: exact near the max, so the max's term is exactly 1 at any magnitude.
    return sum_row(s, n, threshold, pos, double(smax) * double(scale2), smax,
                   [&](float v) { return (v - smax) * scale2; });
}

const KernelOps& kernels_scalar() {
    return kOps;
}

}  // namespace mmrec
