// The certified int8 first pass: quantised rows, the int8 micro-kernels' interface and the driver.
//
// Quantisation (per row, symmetric): s = fl32(max|x| / 127), q_k = clamp(round(x_k / s), -127, 127),
// residual r = x - s q, exact in float64 (s q has <= 31 significant bits and, whenever q_k != 0,
// |x_k| >= s / 2, so x_k - s q_k needs < 53 bits; q_k == 0 gives r_k = x_k). With the float scales s_u,
// s_v and the exact integer Q = q_u . q_v,
//     u . v = s_u s_v Q + s_u (q_u . r_v) + r_u . v,
// so |u . v - s_u s_v Q| <= s_u ||q_u|| ||r_v|| + ||r_u|| ||v||  (Cauchy-Schwarz). The float32 path's
// score (an fma chain over k) is within gamma_d ||u|| ||v|| + d 2^-149 of u . v (gamma_d = d eps / (1 - d eps),
// eps = 2^-24; the last term covers subnormal results). The certificate E(u, v) adds both, and the
// rounding of computing approx = fl(fl(Q) * fl(s_u * s_v)) and E themselves (see int8_topk.cpp).
//
// Item layout ("int8 panels"): panels of 16 items; panel p holds items 16p .. 16p+15 as [d4][16][4]
// int8 (d4 = ceil(d / 4)): four consecutive coordinates of one item are one 32-bit lane, the layout of
// vpdpbusd and of the AVX2 vpmaddubsw/vpmaddwd pair. Missing coordinates and items are zero codes.
// User codes: rows of d4 * 4 int8 (zero padded).
//
// Integer dot products are exact on every path, and the float conversion after them is the same
// sequence of float operations, so all int8 kernels produce bitwise-identical tiles: the dispatcher
// checks exactly that once per process (a mismatch disables the level with a warning).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmrec {

constexpr int64_t kI8Panel = 16;
// |Q| <= d * 127^2 (and d * 255 * 127 with the VNNI kernel's unsigned offset) must fit int32.
constexpr int64_t kI8MaxDim = 65536;

enum class Int8Level : int { Scalar = 0, Avx2 = 1, Avx512Vnni = 2 };

struct Int8Ops {
    Int8Level level;
    const char* name;
    // c[r * ldc + j] = fl(fl(Q_rj) * fl(su[r] * sv[j])) for r < n_rows, j < n_panels * 16, where Q_rj is
    // the exact integer dot product of user row r's codes (uq + r * ldu, d4 * 4 bytes) and item j's codes
    // (panels). usum[r] = sum of user r's codes (the VNNI kernel's offset correction). sv: the items'
    // scales, 16 per panel.
    void (*tile_approx)(const int8_t* uq, int64_t ldu, const float* su, const int32_t* usum, int64_t n_rows,
                        const int8_t* panels, const float* sv, int64_t n_panels, int64_t d4, float* c, int64_t ldc);
    // out[t] = the float32 engine's score of user u and item idx[t] (row-major items, stride d):
    // acc = fma(u[k], v[k], acc), k = 0 .. d-1, acc0 = +0 -- the same chain as kernels.h's micro-kernels.
    void (*rescore)(const float* u, const float* items, int64_t d, const int32_t* idx, int64_t n, float* out);
    // Positions j (ascending) of s[0 .. n) with s[j] > thr; n a multiple of 16, pos holds n + 16 (the
    // float32 engine's KernelOps::row_select of the same level).
    int64_t (*filter)(const float* s, int64_t n, float thr, int32_t* pos);
};

const Int8Ops& int8_kernels_scalar();
const Int8Ops& int8_kernels_avx2();
const Int8Ops& int8_kernels_avx512vnni();

// ---- dispatch ------------------------------------------------------------------------------------------
// Levels this CPU runs whose self-check passed, best first.
std::vector<std::string> int8_supported_levels();
// The level a call uses: the best passing one, lowered by MMREC_FAST_SIMD ("avx512" allows the VNNI
// kernel, "avx2", "scalar"); throws std::invalid_argument on an unknown value.
const Int8Ops& int8_active_ops();
// Messages of levels the self-check disabled (empty when all passed).
std::vector<std::string> int8_self_check_failures();
// Runs `ops` against the scalar kernels on a small random problem; true when bitwise equal.
bool int8_self_check(const Int8Ops& ops);

// ---- prepared items ------------------------------------------------------------------------------------
int64_t int8_panel_bytes(int64_t n_items, int64_t d);  // bytes of the code panels
// Quantises items (row-major float32) into panels, per-item scales, residual norms ||r_v|| and norms
// ||v|| (both rounded up to float32).
void int8_prepare(const float* items, int64_t n_items, int64_t d, int8_t* panels, float* scale, float* resid,
                  float* norm, int num_threads);

struct Int8TopkArgs {
    const float* users = nullptr;  // (n_users, d) float32 row-major
    int64_t n_users = 0;
    const int8_t* panels = nullptr;  // int8_prepare outputs
    const float* scale = nullptr;    // (ceil(n_items / 16) * 16): zero past n_items
    const float* resid = nullptr;
    const float* norm = nullptr;
    const float* items = nullptr;  // (n_items, d) float32 row-major: the rows pass 2 rescores
    int64_t n_items = 0;
    int64_t d = 0;
    int64_t k = 1;
    double inv_temperature = 1.0;
    float log2e_over_temperature = 1.44269504f;  // as in TopkArgs
    double log2e_over_temperature_lo = 0.0;
    const int64_t* excl_indptr = nullptr;
    const int64_t* excl_indices = nullptr;
    const uint8_t* item_mask = nullptr;  // (n_items) 1 = eligible, or nullptr
    bool normalizer = true;
    int num_threads = 0;
    int64_t user_block = 64;
    int64_t item_block = 512;
    int64_t* out_indices = nullptr;   // (n_users, k)
    float* out_scores = nullptr;      // (n_users, k)
    double* out_lse = nullptr;        // (n_users): NaN when !normalizer
    double* out_lse_bound = nullptr;  // (n_users): NaN when !normalizer
    int64_t* out_stats = nullptr;     // [survivors rescored, users computed by the float32 fallback]
};

void int8_topk(const Int8TopkArgs& a, const Int8Ops& ops);

}  // namespace mmrec
