// The blocked CPU top-k + log-sum-exp engine (the kernel contract of mmrec_fast/backends/base.py).
//
// Pure C++ (no Python): the pybind11 layer in csrc/native.cpp validates array shapes and dtypes, then
// calls these functions with raw pointers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/kernels.h"

namespace mmrec {

// ---- SIMD level -------------------------------------------------------------------------------------
// Best level this CPU (and OS) supports.
SimdLevel best_simd_level();
// The level a call uses now: the best supported level, lowered by the environment variable
// MMREC_FAST_SIMD ("avx512", "avx2", "scalar", "auto"/unset) when that names a lower one; a level the
// CPU lacks falls back to the best supported one. Unknown values throw std::invalid_argument.
SimdLevel active_simd_level();
const char* simd_level_name(SimdLevel level);
std::vector<std::string> supported_simd_levels();
const KernelOps& kernel_ops(SimdLevel level);

// ---- threads ----------------------------------------------------------------------------------------
bool openmp_enabled();
int max_threads();

// ---- packed items (layout: see kernels.h) -----------------------------------------------------------
int64_t packed_size(int64_t n_items, int64_t d);  // floats
void pack_items(const float* items, int64_t n_items, int64_t d, float* packed, int num_threads);

// ---- top-k ------------------------------------------------------------------------------------------
struct TopkArgs {
    const float* users = nullptr;  // (n_users, d) row-major
    int64_t n_users = 0;
    const float* packed = nullptr;  // packed_size(n_items, d) floats, or nullptr:
    const float* items = nullptr;   // (n_items, d) row-major, packed block by block on the fly
    int64_t n_items = 0;
    int64_t d = 0;
    int64_t k = 1;
    float log2e_over_temperature = 1.44269504f;  // fl(log2(e) / temperature): see kernels.h
    double log2e_over_temperature_lo = 0.0;      // log2(e) / temperature - that float, in double
    double inv_temperature = 1.0;
    const int64_t* excl_indptr = nullptr;   // (n_users + 1)
    const int64_t* excl_indices = nullptr;  // (nnz)
    // Global eligibility (allow / ban lists): item_mask[j] != 0 when item j may be listed; nullptr:
    // every item. Masked items are treated like excluded ones (never listed, not in the normaliser).
    const uint8_t* item_mask = nullptr;  // (n_items)
    // false: top-k only; out_lse is not computed (left -inf) and the exp work is skipped.
    bool normalizer = true;
    int64_t user_block = 128;
    int64_t item_block = 512;  // rounded up to a multiple of kPanel
    int64_t capacity = 0;      // candidate buffer slots per user, > k
    int num_threads = 0;       // 0: OpenMP default
    // Start each user's threshold at a guess from a strided item sample when k is large (see topk.cpp,
    // "Threshold guess"); the results do not depend on it, bit for bit.
    bool guess_threshold = true;
    int64_t* out_indices = nullptr;  // (n_users, k)
    float* out_scores = nullptr;     // (n_users, k)
    double* out_lse = nullptr;       // (n_users)
};

// Some of a call's users (rows, ascending) as a contiguous problem of their own: their vectors and
// exclusion lists gathered, and outputs for them. Used to recompute users whose fast path gave up.
struct UserSubset {
    std::vector<int64_t> rows;
    std::vector<float> users;          // (rows, d)
    std::vector<int64_t> indptr;       // (rows + 1)
    std::vector<int64_t> indices;      // their exclusion entries
    std::vector<int64_t> out_indices;  // (rows, k)
    std::vector<float> out_scores;     // (rows, k)
    std::vector<double> out_lse;       // (rows)

    UserSubset(std::vector<int64_t> rows, const float* all_users, int64_t d, const int64_t* excl_indptr,
               const int64_t* excl_indices, int64_t k);
    // Points t's users, exclusions and outputs at the subset (everything else of t is left as it is).
    void point(TopkArgs& t);
    // The subset's top-k rows (and normalisers) written back to the rows of the whole call's outputs.
    void scatter(int64_t k, int64_t* out_indices, float* out_scores, double* out_lse) const;
};

// Number of item shards topk() uses (1: no item split); *shard_len (if given) receives their length.
int64_t item_shards(int64_t n_users, int64_t n_items, int64_t k, int64_t item_block, int64_t* shard_len);

// The sample rank of the threshold guess topk() uses for these sizes (0: none).
int64_t threshold_guess_rank(int64_t n_users, int64_t n_items, int64_t k, int64_t item_block);

// Fills the outputs. Throws std::invalid_argument for inconsistent sizes (before any work starts).
void topk(const TopkArgs& args, const KernelOps& ops);

}  // namespace mmrec
