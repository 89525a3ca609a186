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

inline float exp_nonpos(float y) {
    using namespace expc;
    const bool under = y < kLo;        // also -inf
    const float yc = y > kLo ? y : kLo;  // same operand order as MAXPS(y, kLo)
    const float fx = yc * kLog2e;
    const float n = std::nearbyint(fx);  // round half to even, like the SIMD round instructions
    float r = std::fma(-n, kC1, yc);
    r = std::fma(-n, kC2, r);
    const float z = r * r;
    float p = std::fma(kP0, r, kP1);
    p = std::fma(p, r, kP2);
    p = std::fma(p, r, kP3);
    p = std::fma(p, r, kP4);
    p = std::fma(p, r, kP5);
    p = std::fma(p, z, r);
    p = p + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    const float e = p * scale;
    return under ? 0.0f : e;
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

void tile_scores(const float* a, int64_t lda, int64_t n_rows, const float* panels, int64_t n_panels,
                 int64_t d, float* c, int64_t ldc) {
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

RowStats row_epilogue(const float* s, int64_t n, float inv_t, float threshold, int32_t* pos) {
    const float neg_inf = -std::numeric_limits<float>::infinity();
    float mx = neg_inf;
    for (int64_t j = 0; j < n; ++j) {
        const float x = s[j] * inv_t;
        mx = x > mx ? x : mx;
    }
    if (mx == neg_inf) return RowStats{neg_inf, 0.0f, 0};
    float acc[kLanes] = {};
    int64_t count = 0;
    for (int64_t j0 = 0; j0 < n; j0 += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
            const float v = s[j0 + l];
            const float y = v * inv_t - mx;
            acc[l] = acc[l] + exp_nonpos(y);
            if (v > threshold) pos[count++] = static_cast<int32_t>(j0 + l);
        }
    }
    return RowStats{mx, reduce16(acc), count};
}

const KernelOps kOps{SimdLevel::Scalar, "scalar", &tile_scores, &row_epilogue};

}  // namespace

const KernelOps& kernels_scalar() { return kOps; }

}  // namespace mmrec
