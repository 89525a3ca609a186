// The threshold guess of large-k queries: which strided item panels form the sample and which rank of
// the sample starts each user's threshold (see the comment below; topk.cpp scores the sample).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"
#include "cpu/topk.h"

namespace mmrec {

// Threshold guess. With a large k the stream's threshold trails the true k-th best for a long time:
// k = 1000 over 1M random scores appends ~11k candidates per user (k * (1 + ln(I / k)) with an exact
// threshold), with ~9 buffer prunes, and ~78% of the tile rows hold a survivor. Scoring a strided
// sample first (every kGuessStride-th panel: 1/64 of the items, ~1.6% more multiply-adds) gives each
// user a guess t: the sample's j-th best, with j chosen so that about 1.25 k + 4 sqrt(k) items of the
// catalogue are expected to beat it (ratios of order statistics: relative spread ~1/sqrt(j)). The
// stream then starts at threshold t: ~2k appends and one prune at k = 1000.
// A guess never changes a result: every buffered candidate beats t, so if k or more are buffered at
// the end, every item at or below t is outside the top k and the result is exact; a user with fewer
// (a guess too high: odd item orders, ties, exclusions, few items) is scored again without one.
// The exp-sum does not depend on the threshold, so the outputs are bitwise those of a run without guess.
constexpr int64_t kGuessStride = 64;      // one sampled panel in this many
constexpr int64_t kGuessMinExpected = 4;  // k * sample fraction below this: no guess

struct GuessPlan {
    int64_t n_panels = 0;  // sampled panels (0: no guess)
    int64_t rank = 0;      // the guess is the sample's rank-th best
    int64_t cap = 0;       // per-user slots for the sample's best scores
};

inline GuessPlan plan_guess(const TopkArgs& a, int64_t n_shards) {
    GuessPlan g;
    // Item shards hold a fraction of the catalogue each: a catalogue-wide guess would fail there.
    if (!a.guess_threshold || n_shards != 1) return g;
    const int64_t full_panels = a.n_items / kPanel;  // the ragged last panel is never sampled
    const int64_t n_sampled = full_panels / kGuessStride;
    const double expected = double(a.k) * double(n_sampled * kPanel) / double(std::max<int64_t>(a.n_items, 1));
    if (n_sampled == 0 || expected < double(kGuessMinExpected)) return g;
    const int64_t rank = int64_t(std::ceil(1.25 * expected + 4.0 * std::sqrt(expected))) + 1;
    if (2 * rank > n_sampled * kPanel) return g;
    g.n_panels = n_sampled;
    g.rank = rank;
    g.cap = 4 * rank;
    return g;
}

// Gathers sample panels [first, first + count) into dst, contiguous: sample panel i is panel
// kGuessStride / 2 + i * kGuessStride of the catalogue. Per chunk into the thread's packing buffer, so
// the sample never needs an array of its own.
inline void gather_guess_panels(const TopkArgs& a, const KernelOps& ops, int64_t first, int64_t count, float* dst) {
    const int64_t panel_floats = a.d * kPanel;
    for (int64_t i = 0; i < count; ++i) {
        const int64_t p = kGuessStride / 2 + (first + i) * kGuessStride;
        if (a.packed != nullptr)
            std::memcpy(dst + i * panel_floats, a.packed + p * panel_floats, size_t(panel_floats) * sizeof(float));
        else
            ops.pack_panels(a.items + p * kPanel * a.d, kPanel, a.d, dst + i * panel_floats);
    }
}

}  // namespace mmrec
