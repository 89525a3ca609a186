// The (score, index) order key, defined once for the CPU engine (csrc/cpu) and the CUDA kernel
// (csrc/cuda). Python's one definition is mmrec_fast/_keys.py; tests check every copy agrees.
//
// Scores compare as real numbers: -0.0 is folded into +0.0 first, so equal scores of either sign tie
// on the item index (lower index first), as in the float64 reference.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MMREC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MMREC_HOST_DEVICE inline
#endif

namespace mmrec {

// Order-preserving image of a (non-NaN) float score as uint32: larger score <=> larger key.
MMREC_HOST_DEVICE uint32_t order_key(float score) {
    score += 0.0f;  // -0 -> +0
    uint32_t bits;
    std::memcpy(&bits, &score, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Inverse of order_key.
MMREC_HOST_DEVICE float key_score(uint32_t key) {
    const uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float score;
    std::memcpy(&score, &bits, sizeof score);
    return score;
}

// 64-bit result key: order_key high, complemented index low, so unsigned order == (score descending,
// index ascending); 0 is below every real key and means "nothing" (indices must be < 2^32 - 1).
MMREC_HOST_DEVICE uint64_t result_key(float score, int64_t index) {
    return (static_cast<uint64_t>(order_key(score)) << 32) |
           static_cast<uint64_t>(0xFFFFFFFFu - static_cast<uint32_t>(index));
}

// Inverse of result_key (for a key other than 0).
MMREC_HOST_DEVICE void decode_result_key(uint64_t key, float* score, int64_t* index) {
    *score = key_score(static_cast<uint32_t>(key >> 32));
    *index = static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(key & 0xFFFFFFFFull));
}

}  // namespace mmrec
