// Selection and merge code shared by the fused top-k kernels (csrc/cuda/topk_kernel.cu, the SIMT / WMMA kernel, and
// csrc/cuda/topk_mma.cu, the tensor-core kernel) -- defined once, here: the result key, the warp radix select /
// prune of a candidate buffer, the exact shard merge (log-add-exp of (max, sum) pairs, block radix select, bitonic
// sort), the launch constants and error codes both launchers share, and their work-memory helpers.
//
// Everything is in an anonymous namespace: each translation unit that includes the header owns its copy (the
// kernels are compiled without relocatable device code, so a kernel must live in the unit that launches it).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/order_key.h"

namespace {
namespace sel {

constexpr int kMergeThreads = 256;
constexpr unsigned kFull = 0xFFFFFFFFu;

// Largest k the merge kernel sorts in shared memory: next_pow2(k) keys of 8 bytes (128 KiB at 16384,
// within the opt-in limit of sm_80 (163 KiB) and sm_90 (227 KiB)).
constexpr int kMaxK = 16384;

// Error codes of the launchers, below every cudaError_t value (topk_mma.cu adds its own from -1101).
constexpr int kErrK = -1001;     // k out of the supported range
constexpr int kErrArgs = -1002;  // inconsistent sizes / null pointers
constexpr int kErrSmem = -1003;  // the device cannot give a kernel enough shared memory

// The result key (common/order_key.h, shared with the CPU engine): unsigned order == (score
// descending, index ascending), -0.0 tied with +0.0, key 0 means "nothing".
__device__ __forceinline__ unsigned long long make_key(float score, long long index) {
    return static_cast<unsigned long long>(mmrec::result_key(score, static_cast<int64_t>(index)));
}

__device__ __forceinline__ void decode_key(unsigned long long key, float* score, long long* index) {
    int64_t i;
    mmrec::decode_result_key(static_cast<uint64_t>(key), score, &i);
    *index = static_cast<long long>(i);
}

// One radix-select step, run by a full warp: in a 256-bin histogram (bins = the next 8 key bits), find
// the bin holding the `remaining`-th largest key (1-based) and how many keys lie in higher bins.
// Lane l sums bins 255-8l .. 248-8l (descending order), a warp scan locates the lane, that lane scans
// its 8 bins. Requires 1 <= remaining <= total count in the histogram.
__device__ __forceinline__ void find_bin(const unsigned* hist, unsigned remaining, int lane, unsigned* bin,
                                         unsigned* before) {
    unsigned local[8];
    unsigned sum = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        local[j] = hist[255 - 8 * lane - j];
        sum += local[j];
    }
    unsigned incl = sum;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        unsigned v = __shfl_up_sync(kFull, incl, off);
        if (lane >= off) incl += v;
    }
    unsigned ballot = __ballot_sync(kFull, incl >= remaining);
    int src = __ffs(ballot) - 1;
    unsigned my_bin = 0, my_before = 0;
    if (lane == src) {
        unsigned cum = incl - sum;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            if (cum + local[j] >= remaining) {
                my_bin = 255u - 8u * static_cast<unsigned>(lane) - static_cast<unsigned>(j);
                my_before = cum;
                break;
            }
            cum += local[j];
        }
    }
    *bin = __shfl_sync(kFull, my_bin, src);
    *before = __shfl_sync(kFull, my_before, src);
}

// The `need`-th largest key of buf[0, n) (keys unique, 1 <= need <= n), by one warp: 8 passes of 8 bits.
__device__ unsigned long long warp_kth_largest(const unsigned long long* buf, int n, int need, unsigned* hist,
                                               int lane) {
    unsigned long long prefix = 0, mask = 0;
    unsigned remaining = static_cast<unsigned>(need);
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = lane; b < 256; b += 32) hist[b] = 0;
        __syncwarp();
        for (int i = lane; i < n; i += 32) {
            unsigned long long key = buf[i];
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFFu], 1u);
        }
        __syncwarp();
        unsigned bin, before;
        find_bin(hist, remaining, lane, &bin, &before);
        prefix |= static_cast<unsigned long long>(bin) << shift;
        mask |= 0xFFull << shift;
        remaining -= before;
        __syncwarp();  // every lane has read the histogram before the next pass clears it
    }
    return prefix;
}

// Keep the k best keys of buf[0, n) (n > k) in buf[0, k), return the k-th best (the new threshold).
// In-place warp compaction is safe: a key read at position i is written at a position <= i, and all
// lanes have read their chunk before any lane writes (the ballot orders them).
__device__ unsigned long long warp_prune(unsigned long long* buf, int n, int k, unsigned* hist, int lane) {
    __syncwarp();  // appends by other lanes are visible
    unsigned long long kth = warp_kth_largest(buf, n, k, hist, lane);
    int out = 0;
    const unsigned lt = (1u << lane) - 1u;
    for (int base = 0; base < n; base += 32) {
        int i = base + lane;
        unsigned long long key = i < n ? buf[i] : 0ull;
        bool keep = i < n && key >= kth;
        unsigned b = __ballot_sync(kFull, keep);
        if (keep) buf[out + __popc(b & lt)] = key;
        out += __popc(b);
        __syncwarp();
    }
    return kth;
}

// One block per user: exact merge of the shards' buffers into the sorted top-k and the normaliser.
__global__ void __launch_bounds__(kMergeThreads)
    merge_kernel(const unsigned long long* __restrict__ work_keys, const int* __restrict__ work_counts,
                 const double* __restrict__ work_max, const double* __restrict__ work_sum, int n_shards, int capacity,
                 int k, int sort_len, bool normalizer, long long* __restrict__ out_idx, float* __restrict__ out_scores,
                 double* __restrict__ out_lse) {
    extern __shared__ unsigned long long sorted[];  // sort_len = next_pow2(k) keys
    __shared__ unsigned hist[256];
    __shared__ unsigned long long s_prefix;
    __shared__ unsigned s_remaining;
    __shared__ int s_fill;

    const long long u = blockIdx.x;
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const size_t slot0 = static_cast<size_t>(u) * n_shards;

    if (tid == 0 && !normalizer) {
        out_lse[u] = NAN;  // not computed (normalizer=False): the shard kernels left work_max / work_sum unset
        s_fill = 0;
    } else if (tid == 0) {
        // log-add-exp of the shards' (max, sum) pairs; shards without an eligible item have max -inf.
        double big = -INFINITY;
        for (int s = 0; s < n_shards; ++s) big = work_max[slot0 + s] > big ? work_max[slot0 + s] : big;
        double lse = -INFINITY;
        if (big != -INFINITY) {
            double total = 0.0;
            for (int s = 0; s < n_shards; ++s)
                if (work_max[slot0 + s] != -INFINITY) total += work_sum[slot0 + s] * exp(work_max[slot0 + s] - big);
            lse = big + log(total);
        }
        out_lse[u] = lse;
        s_fill = 0;
    }

    int total = 0;
    for (int s = 0; s < n_shards; ++s) total += work_counts[slot0 + s];
    const int need = total < k ? total : k;

    // Threshold key: the need-th best over all shards (every key when they are no more than k).
    unsigned long long kth = 1ull;
    if (need < total) {
        unsigned long long prefix = 0, mask = 0;
        if (tid == 0) s_remaining = static_cast<unsigned>(need);
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int b = tid; b < 256; b += kMergeThreads) hist[b] = 0;
            __syncthreads();
            for (int s = 0; s < n_shards; ++s) {
                const unsigned long long* buf = work_keys + (slot0 + s) * capacity;
                const int cnt = work_counts[slot0 + s];
                for (int i = tid; i < cnt; i += kMergeThreads) {
                    const unsigned long long key = buf[i];
                    if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFFu], 1u);
                }
            }
            __syncthreads();
            if (tid < 32) {
                unsigned bin, before;
                find_bin(hist, s_remaining, lane, &bin, &before);
                if (lane == 0) {
                    s_prefix = prefix | (static_cast<unsigned long long>(bin) << shift);
                    s_remaining -= before;
                }
            }
            __syncthreads();
            prefix = s_prefix;
            mask |= 0xFFull << shift;
        }
        kth = prefix;
    }
    __syncthreads();

    // Gather the survivors (exactly `need`: keys are unique), pad to a power of two, bitonic sort.
    for (int s = 0; s < n_shards; ++s) {
        const unsigned long long* buf = work_keys + (slot0 + s) * capacity;
        const int cnt = work_counts[slot0 + s];
        for (int i = tid; i < cnt; i += kMergeThreads) {
            const unsigned long long key = buf[i];
            if (key >= kth) sorted[atomicAdd(&s_fill, 1)] = key;
        }
    }
    for (int i = need + tid; i < sort_len; i += kMergeThreads) sorted[i] = 0ull;
    __syncthreads();
    for (int size = 2; size <= sort_len; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < sort_len; i += kMergeThreads) {
                const int j = i ^ stride;
                if (j > i) {
                    const unsigned long long a = sorted[i], b = sorted[j];
                    const bool descending = (i & size) == 0;
                    if (descending ? a < b : a > b) {
                        sorted[i] = b;
                        sorted[j] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
    for (int r = tid; r < k; r += kMergeThreads) {
        float score = -INFINITY;
        long long index = -1;
        if (r < need) decode_key(sorted[r], &score, &index);
        out_idx[u * k + r] = index;
        out_scores[u * k + r] = score;
    }
}

// ------------------------------------------------------------------------------------------------ host side

inline int pow2_at_least(int x) {
    int p = 1;
    while (p < x) p <<= 1;
    return p;
}

// The merge kernel's shared-memory sort for k: its length (next_pow2(k)), its bytes, and the opt-in above the
// default 48 KiB. Returns 0, kErrSmem (the device cannot give that much), or a cudaError_t.
inline int prepare_merge(int k, int smem_optin, int* sort_len, size_t* merge_smem) {
    *sort_len = pow2_at_least(k);
    *merge_smem = static_cast<size_t>(*sort_len) * sizeof(unsigned long long);
    if (*merge_smem + 4096 > static_cast<size_t>(smem_optin)) return kErrSmem;
    if (*merge_smem > 48 * 1024)
        return static_cast<int>(cudaFuncSetAttribute(merge_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                     static_cast<int>(*merge_smem)));
    return 0;
}

// Work memory: stream-ordered where the device has memory pools, plain cudaMalloc otherwise.
inline cudaError_t work_alloc(void** ptr, size_t nbytes, cudaStream_t stream, int pools) {
    return pools ? cudaMallocAsync(ptr, nbytes ? nbytes : 1, stream) : cudaMalloc(ptr, nbytes ? nbytes : 1);
}

// Frees (a null pointer is a no-op) even after an earlier error (no leak), keeping that first error.
inline cudaError_t work_free(void* ptr, cudaStream_t stream, int pools, cudaError_t first) {
    if (!ptr) return first;
    const cudaError_t err = pools ? cudaFreeAsync(ptr, stream) : cudaFree(ptr);
    return first != cudaSuccess ? first : err;
}

// The shard kernels' per-(user, shard) work: candidate keys (capacity each), their counts, and the
// normaliser's running max and sum. Allocated together; the first error is returned.
inline cudaError_t alloc_shard_work(size_t slots, int capacity, cudaStream_t stream, int pools,
                                    unsigned long long** keys, int** counts, double** maxs, double** sums) {
    cudaError_t err;
    if ((err = work_alloc(reinterpret_cast<void**>(keys), slots * capacity * sizeof(unsigned long long), stream,
                          pools)) != cudaSuccess)
        return err;
    if ((err = work_alloc(reinterpret_cast<void**>(counts), slots * sizeof(int), stream, pools)) != cudaSuccess)
        return err;
    if ((err = work_alloc(reinterpret_cast<void**>(maxs), slots * sizeof(double), stream, pools)) != cudaSuccess)
        return err;
    return work_alloc(reinterpret_cast<void**>(sums), slots * sizeof(double), stream, pools);
}

// Frees what alloc_shard_work allocated (null pointers skipped), keeping the first error.
inline cudaError_t free_shard_work(unsigned long long* keys, int* counts, double* maxs, double* sums,
                                   cudaStream_t stream, int pools, cudaError_t first) {
    first = work_free(keys, stream, pools, first);
    first = work_free(counts, stream, pools, first);
    first = work_free(maxs, stream, pools, first);
    return work_free(sums, stream, pools, first);
}

}  // namespace sel
}  // namespace
