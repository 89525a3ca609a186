// Fused top-k + softmax normaliser on tensor cores (mma.sync, sm_80 and sm_90): the same contract and the same
// shard/merge structure as csrc/cuda/topk_kernel.cu, with the score tile never leaving the registers.
//
// Operands. A pack kernel first writes users and items as "planes" of tensor-core operands, rows padded with
// zeros to whole k-steps:
//   * 16-bit inputs (precision kNative16): the fp16 / bf16 values themselves (one plane; products exact).
//   * float32 inputs, bf16 splits: x = hi + mid + lo, each plane the round-to-nearest-even bf16 of what the
//     planes before it left over (kBf16: hi only, opt-in and lossy; kBf16x3: hi + lo; kBf16x6: hi + mid + lo).
//     The products of planes i and j with i + j < P are accumulated, smallest first, the small ones (i + j >= 1)
//     in a second accumulator that joins the hi*hi one after the last k-step. bf16x3 = hi*lo + lo*hi, hi*hi
//     (3 MMAs, ~16 significant bits: within the engine's 1e-5 tolerance on ordinary data only, so an opt-in;
//     Henry et al., 2019); bf16x6 = 6 MMAs, float32-level. A value whose bf16 rounding would overflow is
//     truncated instead, so finite inputs never become inf.
//   * float32 inputs, kTf32 (opt-in, lossy): one plane rounded to TF32 (round-half-away, as cvt.rna), m16n8k8.
// tests/test_cuda_mma_emulation.py replays the split bit for bit in NumPy and checks the errors against the
// float64 reference under two models of the tensor cores' float32 accumulation.
//
// Kernel. A block of 4 warps owns 64 users (16 per warp) and one shard of the items; the users' planes stay in
// shared memory for the whole shard, item tiles of 64 rows stream through a 2-stage cp.async pipeline (the next
// tile loads while this one is multiplied and filtered). Each warp computes its 16 x 64 score tile as 8
// m16n8 accumulators; lane (g, t) = (lane / 4, lane % 4) holds users g and g + 8, items 8f + 2t + {0, 1}. The
// epilogue works on those registers:
//   1. filters: the global item mask (allow / ban, one byte per item) arrives as the tile's 64-bit eligibility
//      word, which the block computed while looking for the next tile with an eligible item (tiles without one are
//      neither loaded nor multiplied); exclusions: lanes 0..15 keep their user's next excluded id; one ballot per
//      tile says which users have one in the tile (usually none); those users' ids become a 64-bit mask per user
//      in shared memory;
//   2. online normaliser in the engine's difference-first form: per (lane, user) a float32 running max m of the
//      raw scores and a float64 running sum of exp((s - m) / T) (base 2: ex2((s - m) * log2(e) / T)), rescaled
//      only when m rises; the 4 lanes of a user are combined by log-add-exp at the end of the shard; skipped
//      entirely with normalizer=false (a top-k-only query);
//   3. threshold filter: a float compare against the user's k-th best score so far, the exact (score, index) key
//      only for items that reach it; survivors are appended to the user's candidate buffer in device memory at
//      offsets from a 4-lane scan; a buffer that would overflow is pruned to its k best by the warp radix select
//      of select.cuh, which raises the user's threshold.
// The merge kernel (select.cuh, shared with the SIMT kernel) then merges shards exactly.
//
// Hopper: mma.sync runs on sm_90 as on sm_80; warpgroup MMA (wgmma) and TMA are not used yet (docs/gpu.md). The
// launcher refuses devices below sm_80 at run time.

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/order_key.h"
#include "cuda/cuda_abi.h"
#include "cuda/select.cuh"

namespace {

constexpr int kWarpsMma = 4;
constexpr int kThreadsMma = 32 * kWarpsMma;
constexpr int kUsersMma = 16 * kWarpsMma;  // users per block: one m16 row block per warp
constexpr int kItemsMma = 64;              // items per streamed tile
constexpr int kFrags = kItemsMma / 8;      // n8 accumulators per warp
constexpr int kStages = 2;                 // item tiles in flight
constexpr unsigned kFullMask = 0xFFFFFFFFu;

// Precisions (the Python side's names in mmrec_fast/backends/cuda_backend.py).
constexpr int kNative16 = 0;  // fp16 / bf16 inputs as they are
constexpr int kBf16 = 1;      // float32 -> bf16 hi (lossy opt-in)
constexpr int kBf16x3 = 2;    // float32 -> bf16 hi + lo, 3 products
constexpr int kBf16x6 = 3;    // float32 -> bf16 hi + mid + lo, 6 products
constexpr int kTf32 = 4;      // float32 -> tf32 (lossy opt-in)

// Error codes of this launcher beside select.cuh's shared -1001 .. -1003.
using sel::kErrArgs;
using sel::kErrK;
constexpr int kErrArch = -1101;       // device below sm_80
constexpr int kErrPrecision = -1102;  // precision / dtype combination not supported
constexpr int kErrDimSmem = -1103;    // dim too large for the shared-memory operand tiles

static_assert(kItemsMma == 64, "the exclusion mask is one 64-bit word per user and tile");
static_assert(kThreadsMma == 128, "the load loops assume 128 threads");

// ------------------------------------------------------------------------------------------------ operands

// Round-to-nearest-even float32 -> bf16 bits; a finite value that would round to inf is truncated instead.
__device__ __forceinline__ uint32_t bf16_bits_sat(float x) {
    const uint32_t b = __float_as_uint(x);
    uint32_t r = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
    if ((r & 0x7F80u) == 0x7F80u) r = b >> 16;
    return r;
}

__device__ __forceinline__ float bf16_value(uint32_t bits) {
    return __uint_as_float(bits << 16);
}

// Round-half-away float32 -> tf32 (cvt.rna.tf32.f32), as a float32 bit pattern; overflow truncates instead.
__device__ __forceinline__ uint32_t tf32_bits_sat(float x) {
    const uint32_t b = __float_as_uint(x);
    uint32_t r = (b + 0x1000u) & 0xFFFFE000u;
    if ((r & 0x7F800000u) == 0x7F800000u) r = b & 0xFFFFE000u;
    return r;
}

__device__ __forceinline__ float load_as_float(const void* src, int dtype, long long i) {
    if (dtype == 0) return static_cast<const float*>(src)[i];
    const uint32_t h = static_cast<const unsigned short*>(src)[i];
    if (dtype == 2) return __uint_as_float(h << 16);
    return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
}

// rows x dim inputs (dtype 0 float32, 1 float16, 2 bfloat16) -> P planes of rows x words 32-bit words
// (zero padded), plane p at dst + p * rows * words. 16-bit planes hold two elements a word, lower column in the
// low half (the mma register layout); tf32 planes one element a word.
// P planes is a template argument so the per-plane arrays stay in registers (static indices).
template <int P>
__global__ void pack_kernel(const void* __restrict__ src, int dtype, long long rows, int dim, int words, int precision,
                            uint32_t* __restrict__ dst) {
    const long long total = rows * words;
    const long long plane_stride = total;
    for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<long long>(gridDim.x) * blockDim.x) {
        const long long row = e / words;
        const int w = static_cast<int>(e % words);
        if (precision == kTf32) {
            dst[e] = w < dim ? tf32_bits_sat(load_as_float(src, dtype, row * dim + w)) : 0u;
            continue;
        }
        uint32_t out[P];
#pragma unroll
        for (int p = 0; p < P; ++p) out[p] = 0u;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int col = 2 * w + half;
            if (col >= dim) break;
            if (precision == kNative16) {
                out[0] |= static_cast<uint32_t>(static_cast<const unsigned short*>(src)[row * dim + col])
                          << (16 * half);
            } else {
                float rest = load_as_float(src, dtype, row * dim + col);
#pragma unroll
                for (int p = 0; p < P; ++p) {
                    const uint32_t bits = bf16_bits_sat(rest);
                    rest -= bf16_value(bits);  // exact: the bits rounding dropped
                    out[p] |= bits << (16 * half);
                }
            }
        }
#pragma unroll
        for (int p = 0; p < P; ++p) dst[p * plane_stride + e] = out[p];
    }
}

// One m16n8k16 (16-bit) or m16n8k8 (tf32) MMA with float32 accumulation. Both take A as 4 and B as 2 32-bit
// registers, and read them from shared memory with the same word offsets (8 words per k-step).
struct MmaBf16 {
    __device__ __forceinline__ static void run(float* c, const uint32_t* a, const uint32_t* b) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

struct MmaF16 {
    __device__ __forceinline__ static void run(float* c, const uint32_t* a, const uint32_t* b) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

struct MmaTf32 {
    __device__ __forceinline__ static void run(float* c, const uint32_t* a, const uint32_t* b) {
        asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

__device__ __forceinline__ void cp_async16(uint32_t* smem_dst, const uint32_t* gmem_src, bool valid) {
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
    const int src_size = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled (rows beyond the matrix)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem_src), "r"(src_size));
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}

__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Copy `planes` x kRows rows (row0 .. row0 + kRows - 1, rows >= row_end zero-filled) of `words` words each into
// shared memory with row stride ldw. row0 < row_end, so row0 is always a valid source address.
template <int kRows>
__device__ __forceinline__ void load_rows(uint32_t* dst, const uint32_t* src, long long plane_stride, long long row0,
                                          long long row_end, int words, int ldw, int planes, int tid) {
    const int chunks = words / 4;
    const int per_plane = kRows * chunks;
    for (int c = tid; c < planes * per_plane; c += kThreadsMma) {
        const int p = c / per_plane;
        const int rem = c - p * per_plane;
        const int r = rem / chunks;
        const int q = rem - r * chunks;
        const bool ok = row0 + r < row_end;
        const uint32_t* s = src + p * plane_stride + (ok ? row0 + r : row0) * words + 4 * q;
        cp_async16(dst + (p * kRows + r) * ldw + 4 * q, s, ok);
    }
}

// With an item mask: the first tile at or after `from` (a tile boundary) that holds an eligible item, and its
// eligibility word (bit c: item tile + c eligible; 0 beyond s_end); s_end when there is none. Run by the whole
// block (the result is block-uniform): 128 threads read two tiles' mask bytes per step, and the 4 warps' ballots
// meet in shared memory.
__device__ long long next_live_tile(const uint8_t* __restrict__ item_mask, long long from, long long s_end,
                                    unsigned* words, unsigned long long* word, int tid) {
    for (long long base = from; base < s_end; base += 2 * kItemsMma) {
        const long long j = base + tid;
        const unsigned b = __ballot_sync(kFullMask, j < s_end && item_mask[j] != 0);
        if ((tid & 31) == 0) words[tid >> 5] = b;
        __syncthreads();
        const unsigned long long w0 = words[0] | static_cast<unsigned long long>(words[1]) << 32;
        const unsigned long long w1 = words[2] | static_cast<unsigned long long>(words[3]) << 32;
        __syncthreads();  // every thread has read the words before the next step overwrites them
        if (w0) {
            *word = w0;
            return base;
        }
        if (w1) {
            *word = w1;
            return base + kItemsMma;
        }
    }
    *word = 0ull;
    return s_end;
}

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// The 4 lanes of a quad hold the same row; an inclusive scan of n over the quad, and the quad's total.
__device__ __forceinline__ void quad_scan(int n, int t, int lane, int* before, int* total) {
    int incl = n;
    int v = __shfl_up_sync(kFullMask, incl, 1, 4);
    if (t >= 1) incl += v;
    v = __shfl_up_sync(kFullMask, incl, 2, 4);
    if (t >= 2) incl += v;
    *before = incl - n;
    *total = __shfl_sync(kFullMask, incl, lane | 3);
}

// ------------------------------------------------------------------------------------------------ kernel

// Three resident blocks per SM (<= 168 registers a thread): what every variant used before the filters; without the
// bound, bf16x6 on sm_80 takes 200 and drops to two (no spills either way, tests/test_cuda_build.py checks).
template <class Mma, int P>
__global__ void __launch_bounds__(kThreadsMma, 3)
    mma_shard_kernel(const uint32_t* __restrict__ users, long long user_plane_stride, long long n_users,
                     const uint32_t* __restrict__ items, long long item_plane_stride, long long n_items, int words,
                     int k, float inv_t, float scale2, const long long* __restrict__ excl_indptr,
                     const long long* __restrict__ excl_indices, const uint8_t* __restrict__ item_mask, bool normalizer,
                     long long shard_len, int n_shards, int capacity, unsigned long long* __restrict__ work_keys,
                     int* __restrict__ work_counts, double* __restrict__ work_max, double* __restrict__ work_sum) {
    extern __shared__ __align__(16) uint32_t mma_smem[];
    __shared__ unsigned hist[kWarpsMma][256];
    __shared__ unsigned long long excl_mask[kWarpsMma][16];
    __shared__ unsigned mask_words[kWarpsMma];
    __shared__ unsigned long long s_live[kStages];  // eligibility word of the tile in each stage (item mask only)

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;
    const int t = lane & 3;
    const int ldw = words + 4;  // = 4 (mod 8) words: the fragment loads below are bank-conflict free
    const long long u0 = static_cast<long long>(blockIdx.x) * kUsersMma;
    const int shard = blockIdx.y;
    const long long s_begin = static_cast<long long>(shard) * shard_len;
    const long long s_end = s_begin + shard_len < n_items ? s_begin + shard_len : n_items;

    uint32_t* su = mma_smem;                        // P x 64 users x ldw
    uint32_t* si = mma_smem + P * kUsersMma * ldw;  // kStages x P x 64 items x ldw
    const int stage_words = P * kItemsMma * ldw;

    // The first tile with an eligible item (every tile is one without a mask) and its eligibility word.
    // The word lives in shared memory (block-uniform, read once per tile), not in registers the MMAs need.
    unsigned long long live = ~0ull;
    long long j0 = item_mask ? next_live_tile(item_mask, s_begin, s_end, mask_words, &live, tid) : s_begin;
    if (tid == 0) s_live[0] = live;
    load_rows<kUsersMma>(su, users, user_plane_stride, u0, n_users, words, ldw, P, tid);
    if (j0 < s_end) load_rows<kItemsMma>(si, items, item_plane_stride, j0, s_end, words, ldw, P, tid);
    cp_async_commit();

    // Rows g and g + 8 of this warp's 16 users.
    const long long row_user[2] = {u0 + 16 * warp + g, u0 + 16 * warp + g + 8};
    const bool row_valid[2] = {row_user[0] < n_users, row_user[1] < n_users};
    unsigned long long* row_buf[2];
    for (int h = 0; h < 2; ++h)
        row_buf[h] = work_keys + (static_cast<size_t>(row_valid[h] ? row_user[h] : 0) * n_shards + shard) * capacity;

    // Exclusion cursors: lane l < 16 owns user 16 * warp + l; cursor at its first excluded id >= s_begin.
    long long cur = 0, cur_end = 0, next_id = LLONG_MAX;
    if (lane < 16 && u0 + 16 * warp + lane < n_users) {
        const long long gu = u0 + 16 * warp + lane;
        long long lo = excl_indptr[gu], hi = excl_indptr[gu + 1];
        cur_end = hi;
        while (lo < hi) {
            const long long mid = lo + (hi - lo) / 2;
            if (excl_indices[mid] < s_begin)
                lo = mid + 1;
            else
                hi = mid;
        }
        cur = lo;
        next_id = cur < cur_end ? excl_indices[cur] : LLONG_MAX;
    }
    if (lane < 16) excl_mask[warp][lane] = 0ull;

    float run_max[2] = {-INFINITY, -INFINITY};
    double run_sum[2] = {0.0, 0.0};
    unsigned long long thr[2] = {0ull, 0ull};
    float thr_score[2] = {-INFINITY, -INFINITY};
    int cnt[2] = {0, 0};

    int stage = 0;
    while (j0 < s_end) {
        cp_async_wait_all();
        __syncthreads();  // this tile is visible, and every warp is done with the stage loaded next
        unsigned long long next_live = ~0ull;
        const long long jn =
            item_mask ? next_live_tile(item_mask, j0 + kItemsMma, s_end, mask_words, &next_live, tid) : j0 + kItemsMma;
        if (tid == 0) s_live[stage ^ 1] = next_live;  // read after the next iteration's barrier
        if (jn < s_end) {
            load_rows<kItemsMma>(si + (stage ^ 1) * stage_words, items, item_plane_stride, jn, s_end, words, ldw, P,
                                 tid);
            cp_async_commit();
        }

        // ---- score tile: 16 users x 64 items per warp, float32 accumulators in registers.
        // hi * hi products in acc, the small ones (planes i + j >= 1) in their own accumulator, added once at the end:
        // the tensor cores' accumulation then rounds each at its own scale (it may truncate; docs/gpu.md).
        float acc[kFrags][4], acc_lo[kFrags][4];
#pragma unroll
        for (int f = 0; f < kFrags; ++f)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[f][q] = acc_lo[f][q] = 0.0f;
        const uint32_t* ua = su + (16 * warp + g) * ldw + t;
        const uint32_t* ib = si + stage * stage_words + g * ldw + t;
        for (int w0 = 0; w0 < words; w0 += 8) {
            uint32_t a[P][4];
#pragma unroll
            for (int p = 0; p < P; ++p) {
                const uint32_t* pa = ua + p * kUsersMma * ldw + w0;
                a[p][0] = pa[0];
                a[p][1] = pa[8 * ldw];
                a[p][2] = pa[4];
                a[p][3] = pa[8 * ldw + 4];
            }
#pragma unroll
            for (int f = 0; f < kFrags; ++f) {
                uint32_t b[P][2];
#pragma unroll
                for (int p = 0; p < P; ++p) {
                    const uint32_t* pb = ib + p * kItemsMma * ldw + 8 * f * ldw + w0;
                    b[p][0] = pb[0];
                    b[p][1] = pb[4];
                }
                // Products of planes i + j = s < P, the smallest terms first.
#pragma unroll
                for (int s = P - 1; s >= 1; --s)
#pragma unroll
                    for (int i = 0; i <= s; ++i) Mma::run(acc_lo[f], a[i], b[s - i]);
                Mma::run(acc[f], a[0], b[0]);
            }
        }
        if (P > 1) {
#pragma unroll
            for (int f = 0; f < kFrags; ++f)
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[f][q] += acc_lo[f][q];
        }

        // ---- epilogue. Value (h, f, e) = acc[f][2h + e]: user row g + 8h, item j0 + 8f + 2t + e.
        const long long tile_end = j0 + kItemsMma < s_end ? j0 + kItemsMma : s_end;
        if (tile_end - j0 < kItemsMma) {  // ragged last tile: columns beyond the shard are not items
#pragma unroll
            for (int f = 0; f < kFrags; ++f)
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    if (j0 + 8 * f + 2 * t + (q & 1) >= tile_end) acc[f][q] = -INFINITY;
        }

        // 1. Filters: the item mask's word of this tile (uniform test), then the users' exclusions of the tile.
        if (item_mask) {
            const unsigned long long live = s_live[stage];
#pragma unroll
            for (int f = 0; f < kFrags; ++f)
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    if (!((live >> (8 * f + 2 * t + (q & 1))) & 1ull)) acc[f][q] = -INFINITY;
        }
        unsigned pending = __ballot_sync(kFullMask, next_id < tile_end);
        if (pending) {
            const unsigned users_with_ids = pending;
            while (pending) {
                const int r = __ffs(pending) - 1;
                pending &= pending - 1;
                long long c = __shfl_sync(kFullMask, cur, r);
                const long long c_end = __shfl_sync(kFullMask, cur_end, r);
                for (;;) {
                    const long long pos = c + lane;
                    const long long id = pos < c_end ? excl_indices[pos] : LLONG_MAX;
                    const bool in = id < tile_end;  // ids of tiles the mask skipped are passed over here
                    if (in && id >= j0) atomicOr(&excl_mask[warp][r], 1ull << (id - j0));
                    const unsigned b = __ballot_sync(kFullMask, in);
                    c += __popc(b);
                    if (b != kFullMask) break;
                }
                if (lane == r) {
                    cur = c;
                    next_id = c < c_end ? excl_indices[c] : LLONG_MAX;
                }
            }
            __syncwarp();
            const unsigned long long m0 = excl_mask[warp][g], m1 = excl_mask[warp][g + 8];
#pragma unroll
            for (int f = 0; f < kFrags; ++f)
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const unsigned long long m = q < 2 ? m0 : m1;
                    if ((m >> (8 * f + 2 * t + (q & 1))) & 1ull) acc[f][q] = -INFINITY;
                }
            __syncwarp();
            if (lane < 16 && ((users_with_ids >> lane) & 1u)) excl_mask[warp][lane] = 0ull;
            __syncwarp();
        }

        // 2. Online normaliser (difference first, base 2), per lane and row; none for a top-k-only query.
#pragma unroll
        for (int h = 0; h < 2 && normalizer; ++h) {
            float m = -INFINITY;
#pragma unroll
            for (int f = 0; f < kFrags; ++f) m = fmaxf(m, fmaxf(acc[f][2 * h], acc[f][2 * h + 1]));
            if (m > run_max[h]) {  // from -inf the factor is ex2(-inf) = 0 and the sum is 0 anyway
                run_sum[h] *= static_cast<double>(fast_exp2((run_max[h] - m) * scale2));
                run_max[h] = m;
            }
            if (run_max[h] != -INFINITY) {  // never (-inf) - (-inf); excluded items add ex2(-inf) = 0
                float e = 0.0f;
#pragma unroll
                for (int f = 0; f < kFrags; ++f)
                    e += fast_exp2((acc[f][2 * h] - run_max[h]) * scale2) +
                         fast_exp2((acc[f][2 * h + 1] - run_max[h]) * scale2);
                run_sum[h] += static_cast<double>(e);
            }
        }

        // 3. Threshold filter into the candidate buffers (at most one prune per row and tile).
        unsigned pass[2];
        for (int attempt = 0; attempt < 2; ++attempt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                pass[h] = 0u;
                if (!row_valid[h]) continue;
#pragma unroll
                for (int f = 0; f < kFrags; ++f)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float v = acc[f][2 * h + e];
                        // The float compare is a cheap necessary condition; the key decides ties exactly.
                        if (v != -INFINITY && v >= thr_score[h] && sel::make_key(v, j0 + 8 * f + 2 * t + e) > thr[h])
                            pass[h] |= 1u << (2 * f + e);
                    }
            }
            if (!__any_sync(kFullMask, (pass[0] | pass[1]) != 0u)) break;
            int before[2], total[2];
            quad_scan(__popc(pass[0]), t, lane, &before[0], &total[0]);
            quad_scan(__popc(pass[1]), t, lane, &before[1], &total[1]);
            const unsigned over0 = __ballot_sync(kFullMask, t == 0 && cnt[0] + total[0] > capacity);
            const unsigned over1 = __ballot_sync(kFullMask, t == 0 && cnt[1] + total[1] > capacity);
            if (attempt == 0 && (over0 | over1)) {
                // Rows whose buffer would overflow: cnt > k there (capacity >= k + 64), prune to the best k.
                unsigned todo = 0u;
                for (int q = 0; q < 8; ++q) {
                    if ((over0 >> (4 * q)) & 1u) todo |= 1u << q;
                    if ((over1 >> (4 * q)) & 1u) todo |= 1u << (q + 8);
                }
                while (todo) {
                    const int r = __ffs(todo) - 1;
                    todo &= todo - 1;
                    const int h = r >> 3;
                    const int src = 4 * (r & 7);
                    const int n = __shfl_sync(kFullMask, h ? cnt[1] : cnt[0], src);
                    const long long gu = u0 + 16 * warp + r;
                    unsigned long long* buf = work_keys + (static_cast<size_t>(gu) * n_shards + shard) * capacity;
                    const unsigned long long kth = sel::warp_prune(buf, n, k, hist[warp], lane);
                    if (g == (r & 7)) {
                        float ks;
                        long long ki;
                        sel::decode_key(kth, &ks, &ki);
                        if (h) {  // static indices keep the row state in registers
                            thr[1] = kth;
                            thr_score[1] = ks;
                            cnt[1] = k;
                        } else {
                            thr[0] = kth;
                            thr_score[0] = ks;
                            cnt[0] = k;
                        }
                    }
                }
                continue;  // recount against the raised thresholds
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                int pos = cnt[h] + before[h];
                // Static indices only: a register array indexed at run time would live in local memory.
#pragma unroll
                for (int f = 0; f < kFrags; ++f)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        if ((pass[h] >> (2 * f + e)) & 1u)
                            row_buf[h][pos++] = sel::make_key(acc[f][2 * h + e], j0 + 8 * f + 2 * t + e);
                cnt[h] += total[h];
            }
            break;
        }
        j0 = jn;
        stage ^= 1;
    }
    cp_async_wait_all();  // a shard without an eligible tile still has the users' copy in flight

    // Log-add-exp of the quad's 4 (max, sum) pairs per row; lanes that saw no eligible item add nothing.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (t == 0 && row_valid[h]) work_counts[static_cast<size_t>(row_user[h]) * n_shards + shard] = cnt[h];
        if (!normalizer) continue;  // the merge kernel reads no (max, sum) then
        float big = run_max[h];
        big = fmaxf(big, __shfl_xor_sync(kFullMask, big, 1));
        big = fmaxf(big, __shfl_xor_sync(kFullMask, big, 2));
        double term = run_max[h] == -INFINITY
                          ? 0.0
                          : run_sum[h] * exp((static_cast<double>(run_max[h]) - static_cast<double>(big)) *
                                             static_cast<double>(inv_t));
        term += __shfl_xor_sync(kFullMask, term, 1);
        term += __shfl_xor_sync(kFullMask, term, 2);
        if (t == 0 && row_valid[h]) {
            const size_t slot = static_cast<size_t>(row_user[h]) * n_shards + shard;
            work_max[slot] = static_cast<double>(big) * static_cast<double>(inv_t);
            work_sum[slot] = term;
        }
    }
}

using ShardKernel = void (*)(const uint32_t*, long long, long long, const uint32_t*, long long, long long, int, int,
                             float, float, const long long*, const long long*, const uint8_t*, bool, long long, int,
                             int, unsigned long long*, int*, double*, double*);

ShardKernel pick_kernel(int dtype, int precision) {
    switch (precision) {
        case kNative16:
            return dtype == 1 ? mma_shard_kernel<MmaF16, 1> : mma_shard_kernel<MmaBf16, 1>;
        case kBf16:
            return mma_shard_kernel<MmaBf16, 1>;
        case kBf16x3:
            return mma_shard_kernel<MmaBf16, 2>;
        case kBf16x6:
            return mma_shard_kernel<MmaBf16, 3>;
        default:
            return mma_shard_kernel<MmaTf32, 1>;
    }
}

int planes_of(int precision) {
    return precision == kBf16x3 ? 2 : precision == kBf16x6 ? 3 : 1;
}

// Operand words per row: whole k-steps of 8 words (16 16-bit elements, or 8 tf32 elements).
int words_of(int dim, int precision) {
    return precision == kTf32 ? (dim + 7) / 8 * 8 : (dim + 15) / 16 * 8;
}

}  // namespace

extern "C" {

const char* mmrec_cuda_mma_error_string(int code) {
    switch (code) {
        case kErrArch:
            return "the tensor-core path needs a device of compute capability 8.0 or newer";
        case kErrPrecision:
            return "unsupported precision for these inputs (float32: bf16, bf16x3, bf16x6, tf32; 16-bit: native)";
        case kErrDimSmem:
            return "dim too large for the tensor-core path's shared-memory tiles at this precision";
        default:
            return mmrec_cuda_topk_error_string(code);
    }
}

// Shared memory (bytes, dynamic) the shard kernel needs for `dim` at `precision`.
long long mmrec_cuda_mma_smem_bytes(int dim, int precision) {
    const long long ldw = words_of(dim, precision) + 4;
    return static_cast<long long>(planes_of(precision)) * (kUsersMma + kStages * kItemsMma) * ldw * 4;
}

// Top-k of users (U x d) against items (I x d) on tensor cores; same arguments and outputs as mmrec_cuda_topk
// plus `precision` (kNative16 for float16 / bfloat16 inputs; kBf16, kBf16x3, kBf16x6 or kTf32 for float32).
int mmrec_cuda_topk_mma(const void* users, long long n_users, const void* items, long long n_items, int dim, int dtype,
                        int precision, int k, float inv_t, const long long* excl_indptr, const long long* excl_indices,
                        const uint8_t* item_mask, int normalizer, int capacity, long long workspace_bytes,
                        long long* out_idx, float* out_scores, double* out_lse, int device, void* stream_handle) {
    if (n_users == 0) return 0;
    if (k < 1 || k > sel::kMaxK || k > n_items) return kErrK;
    if (!users || !items || !excl_indptr || !out_idx || !out_scores || !out_lse || dim < 1 || n_items < 1 ||
        n_items >= 0xFFFFFFFFLL || capacity < k + 2 * kItemsMma || dtype < 0 || dtype > 2)
        return kErrArgs;
    if (dtype == 0 ? (precision < kBf16 || precision > kTf32) : precision != kNative16) return kErrPrecision;
    cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);

    int previous = 0;
    cudaError_t err = cudaGetDevice(&previous);
    if (err != cudaSuccess) return static_cast<int>(err);
    if ((err = cudaSetDevice(device)) != cudaSuccess) return static_cast<int>(err);

    int code = 0, pools = 0;
    uint32_t* user_planes = nullptr;
    uint32_t* item_planes = nullptr;
    unsigned long long* keys = nullptr;
    int* counts = nullptr;
    double* maxs = nullptr;
    double* sums = nullptr;
    do {
        int sm_count = 0, smem_optin = 0, major = 0;
        if ((err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device)) != cudaSuccess) break;
        if (major < 8) {
            code = kErrArch;
            break;
        }
        if ((err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) break;
        if ((err = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) != cudaSuccess)
            break;
        int sort_len = 0;
        size_t merge_smem = 0;
        if ((code = sel::prepare_merge(k, smem_optin, &sort_len, &merge_smem)) != 0) break;

        const int words = words_of(dim, precision);
        const int planes = planes_of(precision);
        const ShardKernel kernel = pick_kernel(dtype, precision);
        cudaFuncAttributes attr;
        if ((err = cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(kernel))) != cudaSuccess) break;
        const long long dyn_smem = mmrec_cuda_mma_smem_bytes(dim, precision);
        if (dyn_smem + static_cast<long long>(attr.sharedSizeBytes) > smem_optin) {
            code = kErrDimSmem;
            break;
        }
        if ((err = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dyn_smem))) !=
            cudaSuccess)
            break;

        // The launch plan of the SIMT kernel (its 128-item shard granularity is a multiple of our tile).
        int n_shards = 1;
        long long shard_len = n_items, batch = n_users;
        if ((code = mmrec_cuda_topk_plan(n_users, n_items, k, capacity, sm_count, workspace_bytes, &n_shards,
                                         &shard_len, &batch)) != 0)
            break;
        if ((err = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device)) != cudaSuccess) break;

        // Operand planes of the whole call (the catalogue's planes are the size of a float32 copy at bf16x3).
        const size_t user_words = static_cast<size_t>(n_users) * words;
        const size_t item_words = static_cast<size_t>(n_items) * words;
        if ((err = sel::work_alloc(reinterpret_cast<void**>(&user_planes), user_words * planes * 4, stream, pools)) !=
            cudaSuccess)
            break;
        if ((err = sel::work_alloc(reinterpret_cast<void**>(&item_planes), item_words * planes * 4, stream, pools)) !=
            cudaSuccess)
            break;
        const int pack_blocks = 4 * sm_count;
        const auto pack = planes == 3 ? pack_kernel<3> : planes == 2 ? pack_kernel<2> : pack_kernel<1>;
        pack<<<pack_blocks, 256, 0, stream>>>(users, dtype, n_users, dim, words, precision, user_planes);
        pack<<<pack_blocks, 256, 0, stream>>>(items, dtype, n_items, dim, words, precision, item_planes);
        if ((err = cudaGetLastError()) != cudaSuccess) break;

        const size_t slots = static_cast<size_t>(batch) * n_shards;
        if ((err = sel::alloc_shard_work(slots, capacity, stream, pools, &keys, &counts, &maxs, &sums)) != cudaSuccess)
            break;

        const float scale2 = inv_t * 1.44269504088896340736f;  // log2(e) / T: exp(x / T) = ex2(x * scale2)
        for (long long b0 = 0; b0 < n_users; b0 += batch) {
            const long long nb = n_users - b0 < batch ? n_users - b0 : batch;
            const dim3 grid(static_cast<unsigned>((nb + kUsersMma - 1) / kUsersMma), static_cast<unsigned>(n_shards));
            kernel<<<grid, kThreadsMma, static_cast<size_t>(dyn_smem), stream>>>(
                user_planes + b0 * words, static_cast<long long>(user_words), nb, item_planes,
                static_cast<long long>(item_words), n_items, words, k, inv_t, scale2, excl_indptr + b0, excl_indices,
                item_mask, normalizer != 0, shard_len, n_shards, capacity, keys, counts, maxs, sums);
            if ((err = cudaGetLastError()) != cudaSuccess) break;
            sel::merge_kernel<<<static_cast<unsigned>(nb), sel::kMergeThreads, merge_smem, stream>>>(
                keys, counts, maxs, sums, n_shards, capacity, k, sort_len, normalizer != 0, out_idx + b0 * k,
                out_scores + b0 * k, out_lse + b0);
            if ((err = cudaGetLastError()) != cudaSuccess) break;
        }
    } while (false);

    cudaError_t free_err = cudaSuccess;
    if (!pools && (user_planes || item_planes || keys || counts || maxs || sums))
        free_err = cudaStreamSynchronize(stream);
    free_err = sel::work_free(user_planes, stream, pools, free_err);
    free_err = sel::work_free(item_planes, stream, pools, free_err);
    free_err = sel::free_shard_work(keys, counts, maxs, sums, stream, pools, free_err);
    const cudaError_t restore_err = cudaSetDevice(previous);
    if (code != 0) return code;
    if (err != cudaSuccess) return static_cast<int>(err);
    if (free_err != cudaSuccess) return static_cast<int>(free_err);
    return static_cast<int>(restore_err);
}

}  // extern "C"
