// The per-user candidate buffer's selection: the (score, index) candidate, its order, the exact k-th
// best by radix select (prune), the streaming prune that keeps the k-th best's histogram bucket, and
// the final sort. Header-only so the engine's hot loop inlines it; tests/test_native_paths.py drives
// every branch (buffer sizes, ties, constant and one-value data) through the engine.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/order_key.h"

namespace mmrec {

struct Candidate {
    float score;
    int32_t index;
};

// (score descending, index ascending). Scores in the buffer are never NaN (NaN fails `> threshold`),
// so this is a strict weak order.
struct Better {
    bool operator()(const Candidate& a, const Candidate& b) const {
        return a.score > b.score || (a.score == b.score && a.index < b.index);
    }
};

// Copies one candidate as a single 8-byte word (a struct copy compiles to two 4-byte moves).
inline void move_candidate(Candidate* dst, const Candidate* src) {
    uint64_t word;
    std::memcpy(&word, src, sizeof word);
    std::memcpy(dst, &word, sizeof word);
}

// Per-thread scratch of the radix select (sized for one user's buffer).
struct SelectScratch {
    uint32_t* keys;
    Candidate* ties;
};

// Below this many candidates std::nth_element is cheap enough; above, its data-dependent branches
// (~15 ns per element on these buffers) make the branch-light radix select several times faster.
constexpr int64_t kRadixSelectMin = 128;

// The k-th best score of c[0..count) by an MSB-first radix select over order_key (4 rounds of 8
// bits, branch-free histogram and compaction); *need receives how many candidates with exactly that
// score belong to the best k (>= 1).
inline uint32_t radix_kth_key(const Candidate* c, int64_t count, int64_t k, uint32_t* keys, int64_t* need) {
    // Four interleaved histograms: consecutive keys often share a bucket, and one histogram would
    // serialise on the store-to-load dependency of its counter.
    int32_t hist[4][256];
    const bool wide = count >= 2048;  // four interleaved histograms only pay off on large inputs
    int64_t left = k;                 // how many of the best are still to be located inside the current bucket
    uint32_t prefix = 0;
    int64_t n = count;
    for (int q = 0; q < count; ++q) keys[q] = order_key(c[q].score);
    for (int shift = 24; shift >= 0; shift -= 8) {
        std::memset(hist, 0, wide ? sizeof hist : sizeof hist[0]);
        int64_t q = 0;
        for (; wide && q + 4 <= n; q += 4) {
            ++hist[0][(keys[q] >> shift) & 255u];
            ++hist[1][(keys[q + 1] >> shift) & 255u];
            ++hist[2][(keys[q + 2] >> shift) & 255u];
            ++hist[3][(keys[q + 3] >> shift) & 255u];
        }
        for (; q < n; ++q) ++hist[0][(keys[q] >> shift) & 255u];
        int64_t above = 0;
        uint32_t bucket = 255;
        for (;; --bucket) {
            const int64_t h = wide ? int64_t(hist[0][bucket]) + hist[1][bucket] + hist[2][bucket] + hist[3][bucket]
                                   : int64_t(hist[0][bucket]);
            if (above + h >= left || bucket == 0) break;
            above += h;
        }
        left -= above;
        prefix |= bucket << shift;
        if (shift > 0) {  // keep only the keys of the chosen bucket (branch-free compaction)
            int64_t m = 0;
            for (q = 0; q < n; ++q) {
                const uint32_t key = keys[q];
                keys[m] = key;
                m += ((key >> shift) & 255u) == bucket;
            }
            n = m;
        }
    }
    *need = left;
    return prefix;
}

// Keep the best k of c[0..count) (count > k) in c[0..k); returns the new threshold (the k-th best
// score). Ties at the threshold keep the lowest item indices.
inline float prune(Candidate* c, int64_t count, int64_t k, const SelectScratch& scratch) {
    if (count < kRadixSelectMin) {
        std::nth_element(c, c + (k - 1), c + count, Better{});
        return c[k - 1].score;
    }
    int64_t need = 0;
    const uint32_t kth = radix_kth_key(c, count, k, scratch.keys, &need);
    int64_t w = 0, t = 0;
    for (int64_t q = 0; q < count; ++q) {  // branch-free: above the threshold in place, ties aside
        const Candidate cand = c[q];
        const uint32_t key = order_key(cand.score);
        c[w] = cand;
        w += key > kth;
        scratch.ties[t] = cand;
        t += key == kth;
    }
    // w == k - need; the `need` lowest-index ties complete the best k.
    if (t > need)
        std::nth_element(scratch.ties, scratch.ties + need, scratch.ties + t,
                         [](const Candidate& a, const Candidate& b) { return a.index < b.index; });
    for (int64_t q = 0; q < need; ++q) c[w + q] = scratch.ties[q];
    return key_score(kth);
}

// Streaming prune of a full buffer: keeps every candidate whose key lies in or above the histogram
// bucket holding the k-th best, which is at least k and usually k plus a few; returns the lowest
// key of that bucket as the new threshold. That is all the stream needs: at least k kept candidates
// score >= the threshold and come earlier, so an item that does not beat it can never be in the top
// k. One histogram of the 10 bits below the highest bit in which the buffer's keys differ replaces
// the exact select's four rounds (the top byte of nearby float scores is nearly always shared).
// Falls back to the exact prune when the bucket is so full that little would be freed.
inline float prune_streaming(Candidate* c, int64_t& count, int64_t k, int64_t cap, const SelectScratch& scratch) {
    uint32_t* keys = scratch.keys;
    uint32_t lo = 0xFFFFFFFFu, hi = 0;
    for (int64_t q = 0; q < count; ++q) {
        const uint32_t key = order_key(c[q].score);
        keys[q] = key;
        lo = std::min(lo, key);
        hi = std::max(hi, key);
    }
    if (lo != hi) {
        const int top = 31 - __builtin_clz(lo ^ hi);  // highest bit in which the keys differ
        const int shift = std::max(0, top - 9);       // at most 1024 buckets above lo's
        const uint32_t base = lo >> shift;
        int32_t hist[1024];
        const uint32_t n_bins = ((hi >> shift) - base) + 1;
        std::memset(hist, 0, std::min<uint32_t>(n_bins, 1024) * sizeof(int32_t));
        for (int64_t q = 0; q < count; ++q) ++hist[(keys[q] >> shift) - base];
        int64_t kept = 0;
        uint32_t b = n_bins - 1;
        for (;; --b) {
            kept += hist[b];
            if (kept >= k || b == 0) break;
        }
        if (b > 0 && kept <= k + (cap - k) / 4) {
            const uint32_t floor_key = (base + b) << shift;
            int64_t w = 0;
            for (int64_t q = 0; q < count; ++q) {  // branch-free, in place, order kept
                move_candidate(c + w, c + q);
                w += keys[q] >= floor_key;
            }
            count = w;  // == kept
            return key_score(floor_key);
        }
    }
    const float threshold = prune(c, count, k, scratch);
    count = k;
    return threshold;
}

// Below this many candidates std::sort is cheap; above, an LSD radix sort avoids its mispredicted
// comparisons (~10x faster at k = 4096).
constexpr int64_t kRadixSortMin = 256;

// Sort c[0..n) by (score descending, index ascending). a and b: scratch for n uint64 each.
// Words (~order_key(score)) << 32 | index ascend in the result order. A stable LSD radix sort on the
// four score bytes alone (bytes that every word shares are skipped), then a pass that puts runs of
// equal scores (rare) in index order: half the passes of sorting the whole word.
inline void sort_best(Candidate* c, int64_t n, uint64_t* a, uint64_t* b) {
    if (n < kRadixSortMin) {
        std::sort(c, c + n, Better{});
        return;
    }
    int64_t hist[4][256];
    std::memset(hist, 0, sizeof hist);
    for (int64_t q = 0; q < n; ++q) {
        const uint32_t high = ~order_key(c[q].score);
        a[q] = (uint64_t(high) << 32) | uint32_t(c[q].index);
        for (int byte = 0; byte < 4; ++byte) ++hist[byte][(high >> (8 * byte)) & 255u];
    }
    for (int byte = 0; byte < 4; ++byte) {
        const int shift = 32 + 8 * byte;
        int64_t* h = hist[byte];
        if (h[(a[0] >> shift) & 255u] == n) continue;  // every word has this digit: nothing to do
        int64_t offset = 0;
        for (int digit = 0; digit < 256; ++digit) {
            const int64_t count = h[digit];
            h[digit] = offset;
            offset += count;
        }
        for (int64_t q = 0; q < n; ++q) b[h[(a[q] >> shift) & 255u]++] = a[q];
        std::swap(a, b);
    }
    for (int64_t q = 0; q + 1 < n;) {  // equal scores: index order
        int64_t e = q + 1;
        while (e < n && (a[e] >> 32) == (a[q] >> 32)) ++e;
        if (e - q > 1) std::sort(a + q, a + e);
        q = e;
    }
    for (int64_t q = 0; q < n; ++q) {
        c[q].score = key_score(~uint32_t(a[q] >> 32));
        c[q].index = static_cast<int32_t>(uint32_t(a[q]));
    }
}

}  // namespace mmrec
