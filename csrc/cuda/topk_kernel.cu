// Fused GPU top-k + softmax normaliser (the engine contract: mmrec_fast/backends/base.py, docs/engine.md): float32 SIMT
// path, and float16 / bfloat16 inputs on tensor cores (WMMA) with float32 accumulation.
//
// One thread block owns a tile of kBU users and one shard of the item range. It streams the shard's
// items through shared memory in tiles of kBI, computes the kBU x kBI float32 score tile (SIMT: each
// thread a 4 x 8 register micro-tile; 16-bit inputs: WMMA fragments), parks the tile in shared memory -- the scores
// never reach device memory
// -- and then each warp, for each of its 8 users:
//   1. marks the user's excluded items of this tile -inf, walking the user's sorted CSR row with a
//      cursor that only moves forward (O(nnz) over the whole catalogue), and the items the global
//      item mask (allow / ban, one byte per item) rules out -- each lane reads its 4 items' mask bytes
//      once per tile, and a tile with no eligible item is skipped before its scores are computed;
//   2. folds the tile into the online (max, sum-exp) kept per lane (each lane owns 4 of the tile's
//      items): float32 running max, float64 running sum of exp(x - max) rescaled only when that max
//      rises; the 32 lanes' pairs are combined by log-add-exp once, at the end of the shard;
//      a tile with no eligible item is skipped, so (-inf) - (-inf) is never computed; with
//      normalizer=false (a top-k-only query) this step and its exp work are skipped;
//   3. appends the items whose (score, index) key beats the user's running threshold to the user's
//      candidate buffer in device memory; when the buffer would overflow, a warp radix select finds the
//      k-th best key, compacts the buffer to the k best and raises the threshold to that key.
// A second kernel (one block per user, csrc/cuda/select.cuh, shared with topk_mma.cu) merges the
// shards exactly: log-add-exp of the (max, sum) pairs, a block radix select of the k-th best key over
// every shard's buffer, and a bitonic sort of the k survivors in shared memory. Ties go to the lower item index because
// the keys encode it (mmrec_fast/_keys.py: order-preserving score bits high, complemented index low), so every
// comparison, selection and sort orders exactly as the CPU backends do.
//
// Plain C ABI (mmrec_cuda_*): the pybind11 layer (module.cpp) is compiled by the host compiler.
// Every CUDA call is checked; failures come back as error codes the bindings raise as exceptions.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/order_key.h"
#include "cuda/cuda_abi.h"
#include "cuda/select.cuh"

namespace {

constexpr int kBU = 64;        // users per block
constexpr int kBI = 128;       // items per streamed tile
constexpr int kDK = 16;        // embedding dimensions per shared-memory stage of the score tile
constexpr int kThreads = 256;  // 16 x 16 threads, each 4 users x 8 items of the tile
constexpr int kWarps = kThreads / 32;
constexpr int kUsersPerWarp = kBU / kWarps;
using sel::kErrArgs;
using sel::kErrK;
using sel::kErrSmem;
using sel::kFull;
using sel::kMaxK;

static_assert(kBU * kBI == kThreads * 32, "each thread owns a 4 x 8 micro-tile");
static_assert(kBU % kWarps == 0, "users split evenly over warps");
static_assert(kBI == 4 * 32, "the epilogue reads 4 scores per lane");
static_assert(kBU == 16 * 4 && kBI == 2 * 16 * 4, "SIMT micro-tiles: 16 x 16 threads, 4 users x (4 + 4) items");

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
    return v;
}

// Butterfly sum: every lane ends with the bitwise same value (each step adds the same two operands).
__device__ __forceinline__ double warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
    return v;
}

constexpr int kLdScores = kBI + 4;  // score-tile row stride: a multiple of 4 floats, as WMMA stores need
constexpr int kDKH = 32;            // dimensions per shared-memory stage on the tensor-core path
constexpr int kLdHalf = kDKH + 8;   // 16-bit operand row stride: a multiple of 8 elements (WMMA loads)

struct TileSmem {               // float32 SIMT operands, stored k-major for 16-byte vector reads
    float users[kDK][kBU + 4];  // rows padded by 16 bytes: aligned float4 reads, at most 2-way store conflicts
    float items[kDK][kBI + 4];
};

struct HalfTileSmem {  // 16-bit tensor-core operands, row-major (users) / item-major (items)
    unsigned short users[kBU][kLdHalf];
    unsigned short items[kBI][kLdHalf];
};

union __align__(128) ScoreSmem {
    TileSmem stage;                // operands while the tile is computed (SIMT path)
    HalfTileSmem half_stage;       // operands while the tile is computed (tensor-core path)
    float scores[kBU][kLdScores];  // the finished tile (operands are dead by then)
};

static_assert(sizeof(HalfTileSmem) <= sizeof(float) * kBU * kLdScores, "operands fit under the tile");

// Score tile, float32 SIMT: each thread a 4 x 8 register micro-tile (users ty*4 .. +3, items tx*4 .. +3
// and 64 + tx*4 .. +3), float32 FMAs accumulated over the dimensions in order. Operands are read as
// float4 (3 shared-memory loads per 32 FMAs instead of 12), which keeps the loop FMA-bound. Padding
// rows/columns/dimensions are loaded as zeros; columns beyond the shard are written as -inf.
__device__ __forceinline__ void score_tile(ScoreSmem& smem, const float* __restrict__ users, long long u0,
                                           long long n_users, const float* __restrict__ items, long long j0,
                                           long long s_end, int dim, int tid) {
    const int ty = tid >> 4;
    const int tx = tid & 15;
    float acc[4][8];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[r][j] = 0.0f;

    // The next stage's operands are loaded into registers while the current stage is multiplied, so
    // the global-memory latency of every stage but the first hides behind 16 x 32 FMAs.
    constexpr int kLoadsU = (kBU * kDK) / kThreads;  // 4
    constexpr int kLoadsI = (kBI * kDK) / kThreads;  // 8
    constexpr int kRowStep = kThreads / kDK;         // 16 rows apart between a thread's loads
    // Thread tid loads dimension tid % 16 of rows tid / 16 + 16 i: one base pointer and row count each.
    const int lk = tid % kDK;
    const int lrow = tid / kDK;
    const float* pu = users + (u0 + lrow) * dim + lk;
    const float* pi = items + (j0 + lrow) * dim + lk;
    const long long rows_u = n_users - (u0 + lrow);  // loads i with 16 i < rows_u are inside the matrix
    const long long rows_i = s_end - (j0 + lrow);
    const long long step = static_cast<long long>(kRowStep) * dim;
    float ru[kLoadsU], ri[kLoadsI];
    auto load_stage = [&](int k0) {
        const bool in_dim = k0 + lk < dim;
#pragma unroll
        for (int i = 0; i < kLoadsU; ++i) ru[i] = (in_dim && kRowStep * i < rows_u) ? __ldg(pu + i * step + k0) : 0.0f;
#pragma unroll
        for (int i = 0; i < kLoadsI; ++i) ri[i] = (in_dim && kRowStep * i < rows_i) ? __ldg(pi + i * step + k0) : 0.0f;
    };
    load_stage(0);
    for (int k0 = 0; k0 < dim; k0 += kDK) {
#pragma unroll
        for (int i = 0; i < kLoadsU; ++i) smem.stage.users[lk][lrow + kRowStep * i] = ru[i];
#pragma unroll
        for (int i = 0; i < kLoadsI; ++i) smem.stage.items[lk][lrow + kRowStep * i] = ri[i];
        __syncthreads();
        if (k0 + kDK < dim) load_stage(k0 + kDK);
#pragma unroll
        for (int kk = 0; kk < kDK; ++kk) {
            const float4 av = *reinterpret_cast<const float4*>(&smem.stage.users[kk][ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&smem.stage.items[kk][tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&smem.stage.items[kk][64 + tx * 4]);
            const float a[4] = {av.x, av.y, av.z, av.w};
            const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[r][j] = fmaf(a[r], b[j], acc[r][j]);
        }
        __syncthreads();  // operands consumed before they are overwritten (next stage or the tile)
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int c = (j < 4 ? 0 : 64) + tx * 4 + (j & 3);
            smem.scores[ty * 4 + r][c] = (j0 + c < s_end) ? acc[r][j] : -INFINITY;
        }
}

// Score tile, fp16 / bf16 inputs on tensor cores (WMMA 16x16x16, float32 accumulation). Products of
// 16-bit values are exact in float32, so this is float32 math on the 16-bit inputs up to summation
// order. Warp w computes users 16*(w/2) .. +15 against items 64*(w%2) .. +63 (four fragments).
template <typename T>
__device__ __forceinline__ void score_tile(ScoreSmem& smem, const T* __restrict__ users, long long u0,
                                           long long n_users, const T* __restrict__ items, long long j0,
                                           long long s_end, int dim, int tid) {
    using namespace nvcuda;
    const int warp = tid >> 5;
    const int row0 = (warp >> 1) * 16;
    const int col0 = (warp & 1) * 64;
    T* su = reinterpret_cast<T*>(&smem.half_stage.users[0][0]);
    T* si = reinterpret_cast<T*>(&smem.half_stage.items[0][0]);
    const unsigned short* gu16 = reinterpret_cast<const unsigned short*>(users);
    const unsigned short* gi16 = reinterpret_cast<const unsigned short*>(items);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
    for (int f = 0; f < 4; ++f) wmma::fill_fragment(acc[f], 0.0f);

    for (int k0 = 0; k0 < dim; k0 += kDKH) {
        // Raw 16-bit copies (0 is +0.0 in both formats): no conversion, exact zero padding. Each thread
        // copies a contiguous run of one row (users: 4 threads x 8 dims, items: 2 threads x 16 dims), so
        // the 64-bit row address is computed once per run and few loads are live at a time.
        {
            constexpr int kRunU = kBU * kDKH / kThreads;  // 8
            const int u = tid / (kDKH / kRunU), kk0 = (tid % (kDKH / kRunU)) * kRunU;
            const long long g = u0 + u;
            const unsigned short* src = gu16 + (g < n_users ? g : 0) * dim;
#pragma unroll
            for (int j = 0; j < kRunU; ++j) {
                const int gk = k0 + kk0 + j;
                smem.half_stage.users[u][kk0 + j] =
                    (g < n_users && gk < dim) ? src[gk] : static_cast<unsigned short>(0);
            }
            constexpr int kRunI = kBI * kDKH / kThreads;  // 16
            const int it = tid / (kDKH / kRunI), ki0 = (tid % (kDKH / kRunI)) * kRunI;
            const long long gi = j0 + it;
            const unsigned short* srci = gi16 + (gi < s_end ? gi : 0) * dim;
#pragma unroll 8
            for (int j = 0; j < kRunI; ++j) {
                const int gk = k0 + ki0 + j;
                smem.half_stage.items[it][ki0 + j] =
                    (gi < s_end && gk < dim) ? srci[gk] : static_cast<unsigned short>(0);
            }
        }
        __syncthreads();
#pragma unroll 1
        for (int kk = 0; kk < kDKH; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
            wmma::load_matrix_sync(a, su + row0 * kLdHalf + kk, kLdHalf);
#pragma unroll
            for (int f = 0; f < 4; ++f) {
                // B (dims x items) is column-major: item-major rows of the staged items.
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
                wmma::load_matrix_sync(b, si + (col0 + 16 * f) * kLdHalf + kk, kLdHalf);
                wmma::mma_sync(acc[f], a, b, acc[f]);
            }
        }
        __syncthreads();  // operands consumed before they are overwritten (next stage or the tile)
    }
#pragma unroll
    for (int f = 0; f < 4; ++f)
        wmma::store_matrix_sync(&smem.scores[row0][col0 + 16 * f], acc[f], kLdScores, wmma::mem_row_major);
    if (j0 + kBI > s_end) {  // ragged last tile: columns beyond the shard are not items
        __syncthreads();
        const int valid = static_cast<int>(s_end - j0);
        for (int e = tid; e < kBU * kBI; e += kThreads) {
            const int c = e % kBI;
            if (c >= valid) smem.scores[e / kBI][c] = -INFINITY;
        }
    }
}

// Per-lane normaliser state of one block (dynamic shared memory, see shard_topk_kernel).
struct NormSmem {
    double lane_sum[kBU][32];
    float lane_max[kBU][32];
};
extern __shared__ __align__(16) unsigned char shard_dynamic_smem[];

// Two blocks per SM (<= 128 registers a thread): the float32 path needs ~127 anyway, and without the
// cap the 16-bit paths take 255 registers (one block per SM) for loads the compiler hoists.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    shard_topk_kernel(const T* __restrict__ users, long long n_users, const T* __restrict__ items, long long n_items,
                      int dim, int k, float inv_t, const long long* __restrict__ excl_indptr,
                      const long long* __restrict__ excl_indices, const uint8_t* __restrict__ item_mask,
                      bool normalizer, long long shard_len, int n_shards, int capacity,
                      unsigned long long* __restrict__ work_keys, int* __restrict__ work_counts,
                      double* __restrict__ work_max, double* __restrict__ work_sum) {
    __shared__ ScoreSmem smem;
    __shared__ unsigned hist[kWarps][256];
    __shared__ unsigned long long s_thr[kBU];
    __shared__ long long s_cursor[kBU];
    __shared__ long long s_cend[kBU];
    __shared__ int s_cnt[kBU];

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const long long u0 = static_cast<long long>(blockIdx.x) * kBU;
    const int shard = blockIdx.y;
    const long long s_begin = static_cast<long long>(shard) * shard_len;
    const long long s_end = s_begin + shard_len < n_items ? s_begin + shard_len : n_items;

    // Per-user state; the exclusion cursor starts at the first excluded id >= s_begin (binary search).
    for (int r = 0; r < kUsersPerWarp; ++r) {
        const int ul = warp * kUsersPerWarp + r;
        const long long gu = u0 + ul;
        if (lane == 0) {
            s_thr[ul] = 0ull;
            s_cnt[ul] = 0;
            long long lo = 0, hi = 0;
            if (gu < n_users) {
                lo = excl_indptr[gu];
                hi = excl_indptr[gu + 1];
                s_cend[ul] = hi;  // before the search moves hi
                while (lo < hi) {
                    long long mid = lo + (hi - lo) / 2;
                    if (excl_indices[mid] < s_begin)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
            }
            s_cursor[ul] = lo;
        }
    }

    // Online normaliser, per lane: lane l folds the items l, l + 32, l + 64, l + 96 of every tile of its
    // warp's users into its own (float32 max, float64 sum of exp(x - max)), so a tile costs no warp
    // reduction; the rescale (one expf) runs only when the lane's max rises, a few times per user. The
    // 32 pairs are combined by log-add-exp once, after the shard. The pairs live in dynamic shared
    // memory (24 KiB: static shared memory stops at 48 KiB; registers would spill on the 16-bit paths),
    // launched only with normalizer=true.
    NormSmem& norm = *reinterpret_cast<NormSmem*>(shard_dynamic_smem);
    if (normalizer) {
        for (int r = 0; r < kUsersPerWarp; ++r) {
            const int ul = warp * kUsersPerWarp + r;
            norm.lane_max[ul][lane] = -INFINITY;
            norm.lane_sum[ul][lane] = 0.0;
        }
    }

    for (long long j0 = s_begin; j0 < s_end; j0 += kBI) {
        // Item mask: lane l's items of the tile are j0 + l + 32 q in every warp, so each thread reads its 4
        // bytes once (the warps' reads of the same 128 bytes hit L1). A tile with no eligible item is skipped
        // by the whole block before any score is computed (the barrier also orders the previous tile's reads).
        bool eligible[4] = {true, true, true, true};
        if (item_mask) {
            bool any = false;
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const long long j = j0 + lane + 32 * q;
                eligible[q] = j < s_end && item_mask[j] != 0;
                any |= eligible[q];
            }
            if (!__syncthreads_or(any)) continue;
        }
        score_tile(smem, users, u0, n_users, items, j0, s_end, dim, tid);
        __syncthreads();

        const long long tile_end = j0 + kBI < s_end ? j0 + kBI : s_end;
        for (int r = 0; r < kUsersPerWarp; ++r) {
            const int ul = warp * kUsersPerWarp + r;
            const long long gu = u0 + ul;
            if (gu >= n_users) break;  // warp-uniform; later users of this warp are out of range too
            float* row = smem.scores[ul];

            // 1. Exclusion: this tile's ids form a prefix of the rest of the user's sorted CSR row (after the
            //    ids of tiles the mask skipped, which are passed over here).
            long long c = s_cursor[ul];
            const long long c_end = s_cend[ul];
            for (;;) {
                const long long t = c + lane;
                const long long id = t < c_end ? excl_indices[t] : LLONG_MAX;
                const bool in = id < tile_end;
                if (in && id >= j0) row[id - j0] = -INFINITY;
                const unsigned b = __ballot_sync(kFull, in);
                c += __popc(b);
                if (b != kFull) break;
            }
            if (lane == 0) s_cursor[ul] = c;
            __syncwarp();

            // 2. Online normaliser (per lane, see above) over the eligible items of the tile.
            float sc[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) sc[q] = eligible[q] ? row[lane + 32 * q] : -INFINITY;
            if (normalizer) {  // uniform: a top-k-only query does no exp work at all
                float m = -INFINITY;
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    if (sc[q] != -INFINITY) m = fmaxf(m, sc[q] * inv_t);
                float lane_max = norm.lane_max[ul][lane];
                double lane_sum = norm.lane_sum[ul][lane];
                if (m > lane_max) {
                    // From -inf: expf(-inf) = 0 and the sum is 0 anyway. A factor that underflows float32 drops
                    // terms below 1e-38 of the item that set the new max, which itself adds 1.
                    lane_sum *= static_cast<double>(expf(lane_max - m));
                    lane_max = m;
                    norm.lane_max[ul][lane] = m;
                }
                float e = 0.0f;
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    if (sc[q] != -INFINITY) e += expf(sc[q] * inv_t - lane_max);
                norm.lane_sum[ul][lane] = lane_sum + static_cast<double>(e);
            }

            // 3. Threshold filter into the candidate buffer.
            unsigned long long thr = s_thr[ul];
            int cnt = s_cnt[ul];
            unsigned long long key[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) key[q] = sc[q] == -INFINITY ? 0ull : sel::make_key(sc[q], j0 + lane + 32 * q);
            unsigned bal[4];
            int n_new = 0;
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                bal[q] = __ballot_sync(kFull, key[q] > thr);
                n_new += __popc(bal[q]);
            }
            if (n_new == 0) continue;  // also when nothing in the tile is eligible (keys 0, never > thr)
            unsigned long long* buf = work_keys + (static_cast<size_t>(gu) * n_shards + shard) * capacity;
            if (cnt + n_new > capacity) {
                // capacity >= k + kBI, so cnt > k here: prune to the best k and raise the threshold.
                thr = sel::warp_prune(buf, cnt, k, hist[warp], lane);
                cnt = k;
                n_new = 0;
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    bal[q] = __ballot_sync(kFull, key[q] > thr);
                    n_new += __popc(bal[q]);
                }
            }
            const unsigned lt = (1u << lane) - 1u;
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                if (key[q] > thr) buf[cnt + __popc(bal[q] & lt)] = key[q];
                cnt += __popc(bal[q]);
            }
            if (lane == 0) {
                s_thr[ul] = thr;
                s_cnt[ul] = cnt;
            }
            __syncwarp();
        }
        __syncthreads();  // the tile is read by every warp before the next one overwrites it
    }

    for (int r = 0; r < kUsersPerWarp; ++r) {
        const int ul = warp * kUsersPerWarp + r;
        const long long gu = u0 + ul;
        const size_t slot = static_cast<size_t>(gu) * n_shards + shard;
        if (lane == 0 && gu < n_users) work_counts[slot] = s_cnt[ul];
        if (!normalizer) continue;  // the merge kernel reads no (max, sum) then
        // log-add-exp of the 32 lanes' pairs; lanes that saw no eligible item (max -inf) add nothing.
        const float lane_max = norm.lane_max[ul][lane];
        const float big = warp_max(lane_max);
        const double term = lane_max == -INFINITY ? 0.0
                                                  : norm.lane_sum[ul][lane] *
                                                        exp(static_cast<double>(lane_max) - static_cast<double>(big));
        const double total = warp_sum(term);
        if (lane == 0 && gu < n_users) {
            work_max[slot] = static_cast<double>(big);
            work_sum[slot] = total;
        }
    }
}

}  // namespace

extern "C" {

// Largest supported k (the bindings report it in their error messages).
int mmrec_cuda_max_k() {
    return kMaxK;
}

// Messages for our own codes; CUDA's for the rest.
const char* mmrec_cuda_topk_error_string(int code) {
    switch (code) {
        case kErrK:
            return "k out of range for the CUDA kernel (1 <= k <= min(I, 16384))";
        case kErrArgs:
            return "inconsistent arguments to the CUDA top-k launcher";
        case kErrSmem:
            return "the device's shared memory per block is too small (for this k, or for the shard kernel's 68 KiB)";
        default:
            return cudaGetErrorString(static_cast<cudaError_t>(code));
    }
}

// Plan of one call, exposed so tests and the benchmark can report it: item shards and users per launch.
int mmrec_cuda_topk_plan(long long n_users, long long n_items, int k, int capacity, int sm_count,
                         long long workspace_bytes, int* n_shards, long long* shard_len, long long* batch_users) {
    if (n_users < 0 || n_items < 1 || k < 1 || capacity < k + kBI || sm_count < 1) return kErrArgs;
    // Enough blocks to fill the device about four times over; item shards only when users alone do not
    // (few users, big catalogue). Each shard keeps at least 8 tiles so its buffer work stays amortised.
    const long long user_tiles = (n_users + kBU - 1) / kBU > 0 ? (n_users + kBU - 1) / kBU : 1;
    const long long target = 4LL * sm_count;
    long long shards = (target + user_tiles - 1) / user_tiles;
    const long long max_shards = n_items / (8LL * kBI) > 1 ? n_items / (8LL * kBI) : 1;
    if (shards > max_shards) shards = max_shards;
    if (shards > 65535) shards = 65535;
    if (shards < 1) shards = 1;
    long long len = (n_items + shards - 1) / shards;
    len = (len + kBI - 1) / kBI * kBI;  // shard boundaries on tile boundaries
    shards = (n_items + len - 1) / len;
    const long long per_user = shards * (static_cast<long long>(capacity) * 8 + 4 + 16);
    long long batch = workspace_bytes / per_user;
    batch = batch / kBU * kBU;
    if (batch < kBU) batch = kBU;
    if (batch > n_users) batch = n_users;
    *n_shards = static_cast<int>(shards);
    *shard_len = len;
    *batch_users = batch;
    return 0;
}

// Top-k of users (U x d) against items (I x d), row-major device pointers of one element type
// (`dtype`: 0 float32 on the SIMT path, 1 float16 or 2 bfloat16 on tensor cores), on `stream` of
// `device`. Exclusion CSR (int64 indptr of U + 1, sorted indices) in device memory; `item_mask`
// (device, n_items bytes, 0 = ineligible for every user) or null; `normalizer` 0 skips the exp work
// and writes NaN to out_lse. Outputs (device): out_idx (U x k) int64, out_scores (U x k) float32,
// out_lse (U,) float64 (of score * inv_t). Requires 1 <= k <= min(n_items, kMaxK). Work memory
// (at most ~workspace_bytes) is allocated stream-ordered and released before returning; the call
// does not synchronise the stream.
int mmrec_cuda_topk(const void* users, long long n_users, const void* items, long long n_items, int dim, int dtype,
                    int k, float inv_t, const long long* excl_indptr, const long long* excl_indices,
                    const uint8_t* item_mask, int normalizer, int capacity, long long workspace_bytes,
                    long long* out_idx, float* out_scores, double* out_lse, int device, void* stream_handle) {
    if (n_users == 0) return 0;
    if (k < 1 || k > kMaxK || k > n_items) return kErrK;
    if (!users || !items || !excl_indptr || !out_idx || !out_scores || !out_lse || dim < 1 || n_items < 1 ||
        n_items >= 0xFFFFFFFFLL || capacity < k + kBI || dtype < 0 || dtype > 2)
        return kErrArgs;
    cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);

    int previous = 0;
    cudaError_t err = cudaGetDevice(&previous);
    if (err != cudaSuccess) return static_cast<int>(err);
    if ((err = cudaSetDevice(device)) != cudaSuccess) return static_cast<int>(err);

    int code = 0;
    int pools = 0;
    unsigned long long* keys = nullptr;
    int* counts = nullptr;
    double* maxs = nullptr;
    double* sums = nullptr;
    do {
        int sm_count = 0, smem_optin = 0;
        if ((err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) break;
        if ((err = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) != cudaSuccess)
            break;
        int sort_len = 0;
        size_t merge_smem = 0;
        if ((code = sel::prepare_merge(k, smem_optin, &sort_len, &merge_smem)) != 0) break;

        int n_shards = 1;
        long long shard_len = n_items, batch = n_users;
        if ((code = mmrec_cuda_topk_plan(n_users, n_items, k, capacity, sm_count, workspace_bytes, &n_shards,
                                         &shard_len, &batch)) != 0)
            break;
        const size_t slots = static_cast<size_t>(batch) * n_shards;
        if ((err = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device)) != cudaSuccess) break;
        if ((err = sel::alloc_shard_work(slots, capacity, stream, pools, &keys, &counts, &maxs, &sums)) != cudaSuccess)
            break;

        // The shard kernel's per-lane normaliser state is dynamic shared memory on top of its static part.
        const void* shard_fn = dtype == 0   ? reinterpret_cast<const void*>(shard_topk_kernel<float>)
                               : dtype == 1 ? reinterpret_cast<const void*>(shard_topk_kernel<__half>)
                                            : reinterpret_cast<const void*>(shard_topk_kernel<__nv_bfloat16>);
        cudaFuncAttributes shard_attr;
        if ((err = cudaFuncGetAttributes(&shard_attr, shard_fn)) != cudaSuccess) break;
        const size_t norm_smem = normalizer ? sizeof(NormSmem) : 0;
        if (shard_attr.sharedSizeBytes + norm_smem > static_cast<size_t>(smem_optin)) {
            code = kErrSmem;
            break;
        }
        if ((err = cudaFuncSetAttribute(shard_fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(norm_smem))) != cudaSuccess)
            break;
        const bool norm = normalizer != 0;

        for (long long b0 = 0; b0 < n_users; b0 += batch) {
            const long long nb = n_users - b0 < batch ? n_users - b0 : batch;
            const dim3 grid(static_cast<unsigned>((nb + kBU - 1) / kBU), static_cast<unsigned>(n_shards));
            // indptr + b0 keeps absolute offsets into excl_indices, so the indices pointer is shared.
            if (dtype == 0) {
                shard_topk_kernel<float><<<grid, kThreads, norm_smem, stream>>>(
                    static_cast<const float*>(users) + b0 * dim, nb, static_cast<const float*>(items), n_items, dim, k,
                    inv_t, excl_indptr + b0, excl_indices, item_mask, norm, shard_len, n_shards, capacity, keys, counts,
                    maxs, sums);
            } else if (dtype == 1) {
                shard_topk_kernel<__half><<<grid, kThreads, norm_smem, stream>>>(
                    static_cast<const __half*>(users) + b0 * dim, nb, static_cast<const __half*>(items), n_items, dim,
                    k, inv_t, excl_indptr + b0, excl_indices, item_mask, norm, shard_len, n_shards, capacity, keys,
                    counts, maxs, sums);
            } else {
                shard_topk_kernel<__nv_bfloat16><<<grid, kThreads, norm_smem, stream>>>(
                    static_cast<const __nv_bfloat16*>(users) + b0 * dim, nb, static_cast<const __nv_bfloat16*>(items),
                    n_items, dim, k, inv_t, excl_indptr + b0, excl_indices, item_mask, norm, shard_len, n_shards,
                    capacity, keys, counts, maxs, sums);
            }
            if ((err = cudaGetLastError()) != cudaSuccess) break;
            sel::merge_kernel<<<static_cast<unsigned>(nb), sel::kMergeThreads, merge_smem, stream>>>(
                keys, counts, maxs, sums, n_shards, capacity, k, sort_len, norm, out_idx + b0 * k, out_scores + b0 * k,
                out_lse + b0);
            if ((err = cudaGetLastError()) != cudaSuccess) break;
        }
    } while (false);

    // Frees run after the kernels (stream-ordered, or after a synchronisation without memory pools);
    // report the first error of the call.
    cudaError_t free_err = cudaSuccess;
    if (!pools && (keys || counts || maxs || sums)) free_err = cudaStreamSynchronize(stream);
    free_err = sel::free_shard_work(keys, counts, maxs, sums, stream, pools, free_err);
    cudaError_t restore_err = cudaSetDevice(previous);
    if (code != 0) return code;
    if (err != cudaSuccess) return static_cast<int>(err);
    if (free_err != cudaSuccess) return static_cast<int>(free_err);
    return static_cast<int>(restore_err);
}

// Device memory helpers for host (NumPy) inputs and persistent item indexes.
int mmrec_cuda_malloc(void** ptr, std::size_t nbytes, int device) {
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return static_cast<int>(err);
    return static_cast<int>(cudaMalloc(ptr, nbytes ? nbytes : 1));
}

int mmrec_cuda_free(void* ptr) {
    return static_cast<int>(cudaFree(ptr));
}

int mmrec_cuda_memcpy_htod(void* dst, const void* src, std::size_t nbytes) {
    return static_cast<int>(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice));
}

int mmrec_cuda_memcpy_dtoh(void* dst, const void* src, std::size_t nbytes) {
    return static_cast<int>(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost));
}

int mmrec_cuda_stream_synchronize(void* stream) {
    return static_cast<int>(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

}  // extern "C"
