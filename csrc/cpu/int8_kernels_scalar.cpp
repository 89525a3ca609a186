// Portable int8 kernels: the reference the SIMD levels are checked against (see int8_quant.h).
#include <cmath>
#include <cstdint>

#include "cpu/int8_quant.h"
#include "cpu/kernels.h"

namespace mmrec {
namespace {

void tile_approx(const int8_t* uq, int64_t ldu, const float* su, const int32_t* usum, int64_t n_rows,
                 const int8_t* panels, const float* sv, int64_t n_panels, int64_t d4, float* c, int64_t ldc) {
    (void)usum;
    for (int64_t p = 0; p < n_panels; ++p) {
        const int8_t* b = panels + p * d4 * kI8Panel * 4;
        for (int64_t r = 0; r < n_rows; ++r) {
            const int8_t* a = uq + r * ldu;
            int32_t acc[kI8Panel] = {};
            for (int64_t q = 0; q < d4; ++q)
                for (int64_t l = 0; l < kI8Panel; ++l)
                    for (int t = 0; t < 4; ++t)
                        acc[l] += int32_t(a[q * 4 + t]) * int32_t(b[(q * kI8Panel + l) * 4 + t]);
            float* out = c + r * ldc + p * kI8Panel;
            for (int64_t l = 0; l < kI8Panel; ++l) out[l] = static_cast<float>(acc[l]) * (su[r] * sv[p * kI8Panel + l]);
        }
    }
}

void rescore(const float* u, const float* items, int64_t d, const int32_t* idx, int64_t n, float* out) {
    for (int64_t t = 0; t < n; ++t) {
        const float* v = items + int64_t(idx[t]) * d;
        float acc = 0.0f;
        for (int64_t k = 0; k < d; ++k) acc = std::fma(u[k], v[k], acc);
        out[t] = acc;
    }
}

}  // namespace

const Int8Ops& int8_kernels_scalar() {
    // The pre-filter is the float32 engine's own survivor selection (s > thr, ascending positions).
    static const Int8Ops ops{Int8Level::Scalar, "scalar", &tile_approx, &rescore, kernels_scalar().row_select};
    return ops;
}

}  // namespace mmrec
