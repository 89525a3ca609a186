// The blocked CPU engine: user blocks in parallel (OpenMP, dynamic schedule), item blocks streamed in
// ascending order, a score tile per (user block, item block) from the SIMD micro-kernel, then per tile
// row: exclusions -> block max / exp-sum (folded into a float64 running pair) -> threshold filter ->
// candidate buffer (pruned to the k-th best's histogram bucket when full; cut to the exact best k at the
// end). With a large k each user's threshold starts at a guess from a strided item sample (see
// "Threshold guess"; users it fails are scored again). See mmrec_fast/backends/base.py for the contract.
//
// Every user's result is computed by the same sequence of float operations whatever the thread count,
// the user block size and the SIMD level (see kernels.h), so outputs are bitwise reproducible across
// those; only the item block size changes the rounding of the log-sum-exp (by a few ulps).
#include "cpu/topk.h"

#include "common/order_key.h"
#include "cpu/normaliser.h"
#include "cpu/select.h"
#include "cpu/threads.h"
#include "cpu/threshold_guess.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(MMREC_FAST_OPENMP)
#include <omp.h>
#endif

namespace mmrec {

// ---------------------------------------------------------------------------------------------------
// top-k

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Upper bound on one thread's candidate buffers; larger k shrink the user block (results do not
// depend on the user block).
constexpr int64_t kCandidateBytesPerThread = int64_t(16) << 20;
// Item split: below this many users the items are cut into shards (at most kMaxShards, each at least
// kMinShardBlocks item blocks and kMinShardItemsPerK * k items, their partial results at most
// kShardBytes) so that every core has work. Each shard restarts its threshold at -inf (about
// k * (1 + ln(shard / k)) extra candidates), hence the floor on the shard length relative to k. With
// more users, user blocks (down to 8 users) feed the threads instead.
constexpr int64_t kSplitBelowUsers = 128;
constexpr int64_t kMaxShards = 16;
constexpr int64_t kMinShardBlocks = 8;
constexpr int64_t kMinShardItemsPerK = 256;
constexpr int64_t kShardBytes = int64_t(64) << 20;

struct UserState {
    // The normaliser so far in base 2: sum over seen items of 2^(s * scale2) = run_sum * 2^run_max.
    // run_max is the largest of the kernels' reference exponents so far (integers, except after
    // huge-score blocks), so rescaling is by exact powers of two.
    double run_max;
    double run_sum;
    float threshold;
    float guess;  // the threshold guess (-inf: none); the threshold never drops below it
    int64_t count;
    int64_t cursor;
    int64_t end;
};

template <typename T>
struct AlignedArray {
    T* ptr = nullptr;
    AlignedArray() = default;
    explicit AlignedArray(size_t n)
        : ptr(static_cast<T*>(::operator new(std::max<size_t>(n, 1) * sizeof(T), std::align_val_t{64}))) {}
    AlignedArray(const AlignedArray&) = delete;
    AlignedArray& operator=(const AlignedArray&) = delete;
    AlignedArray(AlignedArray&& o) noexcept : ptr(o.ptr) { o.ptr = nullptr; }
    ~AlignedArray() {
        if (ptr) ::operator delete(ptr, std::align_val_t{64});
    }
};

struct Workspace {
    AlignedArray<float> tile;
    AlignedArray<int32_t> pos;
    AlignedArray<int32_t> masked;  // one item block's positions that item_mask rules out
    AlignedArray<Candidate> cand;
    AlignedArray<UserState> state;
    AlignedArray<uint32_t> select_keys;
    AlignedArray<Candidate> select_ties;
    AlignedArray<uint64_t> sort_keys;  // 2 x cap
    AlignedArray<float> pack;          // one packed item block (streaming mode, guess sample)
    AlignedArray<float> guess;         // ub x guess capacity: the sample's best scores per user
    std::vector<int64_t> failed;       // users whose guess was too high (rerun without one)
    Workspace(int64_t ub, int64_t ldt, int64_t ib, int64_t cap, int64_t pack_floats, int64_t guess_cap)
        : tile(size_t(ub * ldt)),
          pos(size_t(ib + kPanel)),
          masked(size_t(ib)),
          cand(size_t(ub * cap)),
          state(size_t(ub)),
          select_keys(size_t(cap)),
          select_ties(size_t(cap)),
          sort_keys(size_t(2 * cap)),
          pack(size_t(pack_floats)),
          guess(size_t(ub * guess_cap)) {}
};

struct Plan {
    int64_t ub;         // users per block
    int64_t ib;         // items per block (multiple of kPanel)
    int64_t ldt;        // tile row stride (floats)
    int64_t cap;        // candidate slots per user
    int64_t n_shards;   // item shards (>= 1); depends only on (U, I, k, block sizes), never on threads
    int64_t shard_len;  // items per shard (multiple of ib)
};

// Per (shard, user) partial results of the item-split path: the shard's best k (unsorted) and its
// (max, sum) pair of the online log-sum-exp.
struct ShardResults {
    Candidate* cand = nullptr;  // [shard][user][k]
    int64_t* count = nullptr;   // [shard][user]
    double* run_max = nullptr;
    double* run_sum = nullptr;
};

// Writes user u's outputs from its sorted best `take` candidates and its (max, sum) pair.
void write_row(const TopkArgs& a, int64_t u, const Candidate* c, int64_t take, double run_max, double run_sum) {
    const int64_t k = a.k;
    int64_t* oi = a.out_indices + u * k;
    float* os = a.out_scores + u * k;
    for (int64_t q = 0; q < take; ++q) {
        oi[q] = c[q].index;
        os[q] = c[q].score;
    }
    for (int64_t q = take; q < k; ++q) {
        oi[q] = -1;
        os[q] = kNegInf;
    }
    // Base 2 to natural log: log(sum_j e^(s_j / T)) = log2(sum_j 2^(s_j * C)) * ln(2), C = log2(e) / T.
    if (run_max == -std::numeric_limits<double>::infinity()) {
        a.out_lse[u] = -std::numeric_limits<double>::infinity();
    } else {
        const double top = take > 0 ? double(c[0].score) : 0.0;  // take > 0 whenever run_max is finite
        const double lse = (run_max + std::log2(run_sum)) * 0.6931471805599453;
        // top * inv_temperature is the product result.probabilities computes for the top score. The
        // normaliser is at least that term (rounding must not push the top probability above 1), and an
        // excess within a few float64 steps of it is the base-2 path's rounding, not a resolvable sum:
        // at |score / T| ~ 1e15+ one step is >= 0.5 and would zero the top probability.
        const double top_term = top * a.inv_temperature;
        const double step = std::fabs(std::nextafter(top_term, std::numeric_limits<double>::infinity()) - top_term);
        a.out_lse[u] = lse - top_term <= 4.0 * step ? top_term : lse;
    }
}

// One work unit: users [u0, u0 + nu) against the items of shard `shard`, item blocks in ascending
// order. With one shard the sorted best k go straight to the outputs; otherwise the shard's best k
// and its (max, sum) go to `sh` for the merge.
// Each user's guess (see "Threshold guess"): the sample scored in item-block chunks, the best scores
// kept in a small buffer cut back to the best `rank` whenever it fills. -inf when no guess.
void guess_thresholds(const TopkArgs& a, const KernelOps& ops, const Plan& plan, const GuessPlan& g, int64_t u0,
                      int64_t nu, Workspace& ws) {
    UserState* st = ws.state.ptr;
    std::vector<int64_t> count(size_t(nu), 0);
    std::vector<float> cut(size_t(nu), kNegInf);
    std::vector<int64_t> cursor(static_cast<size_t>(nu));
    for (int64_t r = 0; r < nu; ++r) cursor[size_t(r)] = a.excl_indptr[u0 + r];
    const int64_t chunk = plan.ib / kPanel;
    const auto desc = [](float x, float y) { return x > y; };
    for (int64_t p0 = 0; p0 < g.n_panels; p0 += chunk) {
        const int64_t np = std::min(chunk, g.n_panels - p0);
        gather_guess_panels(a, ops, p0, np, ws.pack.ptr);
        ops.tile_scores(a.users + u0 * a.d, a.d, nu, ws.pack.ptr, np, a.d, ws.tile.ptr, plan.ldt);
        // Masked items are not in the sample either (the guess ranks eligible items only).
        int64_t n_masked = 0;
        if (a.item_mask != nullptr) {
            for (int64_t i = 0; i < np; ++i) {
                const uint8_t* m = a.item_mask + (kGuessStride / 2 + (p0 + i) * kGuessStride) * kPanel;
                for (int64_t l = 0; l < kPanel; ++l) {
                    ws.masked.ptr[n_masked] = static_cast<int32_t>(i * kPanel + l);
                    n_masked += m[l] == 0;
                }
            }
        }
        // Items past the chunk's last sampled panel wait for the next chunk.
        const int64_t item_end = ((p0 + np - 1) * kGuessStride + kGuessStride / 2 + 1) * kPanel;
        for (int64_t r = 0; r < nu; ++r) {
            float* row = ws.tile.ptr + r * plan.ldt;
            float* best = ws.guess.ptr + r * g.cap;
            // Excluded items do not count in the guess: with many of them (a category filter written
            // as exclusions, say) a guess from all items would fail for most users.
            const int64_t excl_end = a.excl_indptr[u0 + r + 1];
            for (int64_t& q = cursor[size_t(r)]; q < excl_end && a.excl_indices[q] < item_end; ++q) {
                const int64_t item = a.excl_indices[q];
                const int64_t panel = item / kPanel - kGuessStride / 2;
                if (item < 0 || panel < 0 || panel % kGuessStride != 0 || panel / kGuessStride < p0) continue;
                row[(panel / kGuessStride - p0) * kPanel + item % kPanel] = kNegInf;
            }
            for (int64_t q = 0; q < n_masked; ++q) row[ws.masked.ptr[q]] = kNegInf;
            for (int64_t j = 0; j < np * kPanel; ++j) {
                const float v = row[j];
                if (!(v > cut[size_t(r)])) continue;  // also drops NaN
                if (count[size_t(r)] == g.cap) {
                    std::nth_element(best, best + (g.rank - 1), best + g.cap, desc);
                    count[size_t(r)] = g.rank;
                    cut[size_t(r)] = best[g.rank - 1];
                    if (!(v > cut[size_t(r)])) continue;
                }
                best[count[size_t(r)]++] = v;
            }
        }
    }
    for (int64_t r = 0; r < nu; ++r) {
        float* best = ws.guess.ptr + r * g.cap;
        if (count[size_t(r)] < g.rank) continue;  // too few finite sample scores: no guess
        std::nth_element(best, best + (g.rank - 1), best + count[size_t(r)], desc);
        // Just below the rank-th best score, so that items tied with it are kept (many ties would
        // otherwise leave fewer than k above the guess).
        st[r].threshold = st[r].guess = std::nextafter(best[g.rank - 1], kNegInf);
    }
}

void process_unit(const TopkArgs& a, const KernelOps& ops, const Plan& plan, int64_t u0, int64_t nu, int64_t shard,
                  Workspace& ws, const ShardResults& sh, const GuessPlan& g) {
    const int64_t d = a.d, k = a.k, cap = plan.cap;
    const int64_t lo = shard * plan.shard_len, hi = std::min(a.n_items, lo + plan.shard_len);
    const float scale2 = a.log2e_over_temperature;
    UserState* st = ws.state.ptr;
    const SelectScratch scratch{ws.select_keys.ptr, ws.select_ties.ptr};
    for (int64_t r = 0; r < nu; ++r) {
        st[r].run_max = -std::numeric_limits<double>::infinity();
        st[r].run_sum = 0.0;
        st[r].threshold = kNegInf;
        st[r].guess = kNegInf;
        st[r].count = 0;
        const int64_t* e0 = a.excl_indices + a.excl_indptr[u0 + r];
        const int64_t* e1 = a.excl_indices + a.excl_indptr[u0 + r + 1];
        // Sorted rows: the first exclusion >= lo. (Unsorted rows stay memory safe: see below.)
        st[r].cursor = lo == 0 ? (e0 - a.excl_indices) : (std::lower_bound(e0, e1, lo) - a.excl_indices);
        st[r].end = e1 - a.excl_indices;
    }
    if (g.n_panels > 0) guess_thresholds(a, ops, plan, g, u0, nu, ws);
    const float* users = a.users + u0 * d;
    for (int64_t i0 = lo; i0 < hi; i0 += plan.ib) {
        const int64_t n_valid = std::min(plan.ib, hi - i0);
        const int64_t n_panels = (n_valid + kPanel - 1) / kPanel;
        const int64_t n_pad = n_panels * kPanel;
        const int64_t i_end = i0 + n_valid;
        // Items the global mask rules out in this block; a block without an eligible item is skipped
        // (exclusion cursors catch up in the next block: entries below it are passed over).
        int64_t n_masked = 0;
        if (a.item_mask != nullptr) {
            const uint8_t* m = a.item_mask + i0;
            // Branch-free: a random mask would mispredict a branch on every few items.
            for (int64_t j = 0; j < n_valid; ++j) {
                ws.masked.ptr[n_masked] = static_cast<int32_t>(j);
                n_masked += m[j] == 0;
            }
            if (n_masked == n_valid) continue;
        }
        const float* panels;
        if (a.packed != nullptr) {
            panels = a.packed + (i0 / kPanel) * d * kPanel;
        } else {  // streaming: pack this block now (a few hundred KB, stays in this core's L2)
            ops.pack_panels(a.items + i0 * d, n_valid, d, ws.pack.ptr);
            panels = ws.pack.ptr;
        }
        ops.tile_scores(users, d, nu, panels, n_panels, d, ws.tile.ptr, plan.ldt);
        for (int64_t r = 0; r < nu; ++r) {
            UserState& s = st[r];
            float* row = ws.tile.ptr + r * plan.ldt;
            for (int64_t j = n_valid; j < n_pad; ++j) row[j] = kNegInf;
            // Exclusions: this user's sorted CSR segment, consumed block by block (O(nnz) overall).
            // Out-of-order or out-of-range entries are skipped, never written out of bounds.
            while (s.cursor < s.end && a.excl_indices[s.cursor] < i_end) {
                const int64_t j = a.excl_indices[s.cursor] - i0;
                if (j >= 0) row[j] = kNegInf;
                ++s.cursor;
            }
            for (int64_t q = 0; q < n_masked; ++q) row[ws.masked.ptr[q]] = kNegInf;
            int64_t n_pos;
            if (a.normalizer) {
                const RowStats rs = ops.row_epilogue(row, n_pad, scale2, s.threshold, ws.pos.ptr);
                add_row_stats(s.run_max, s.run_sum, rs, a.log2e_over_temperature_lo);
                n_pos = rs.count;
            } else {
                n_pos = ops.row_select(row, n_pad, s.threshold, ws.pos.ptr);
            }
            // Survivors of the threshold, in ascending item order.
            Candidate* c = ws.cand.ptr + r * cap;
            for (int64_t q = 0; q < n_pos; ++q) {
                const int32_t j = ws.pos.ptr[q];
                const float v = row[j];
                if (!(v > s.threshold)) continue;  // the threshold rose within this block
                if (s.count == cap) {
                    if (cap <= k) continue;  // unreachable: cap > k whenever cap < n_items
                    s.threshold = std::max(prune_streaming(c, s.count, k, cap, scratch), s.guess);
                    if (!(v > s.threshold)) continue;
                }
                c[s.count++] = Candidate{v, static_cast<int32_t>(i0 + j)};
            }
        }
    }
    for (int64_t r = 0; r < nu; ++r) {
        const UserState& s = st[r];
        const int64_t u = u0 + r;
        Candidate* c = ws.cand.ptr + r * cap;
        if (s.count < k && s.guess != kNegInf) {  // the guess was too high: rerun (see "Threshold guess")
            ws.failed.push_back(u);
            continue;
        }
        const int64_t take = std::min(s.count, k);
        if (s.count > take) prune(c, s.count, k, scratch);  // take == k
        if (plan.n_shards > 1) {
            const int64_t slot = shard * a.n_users + u;
            std::memcpy(sh.cand + slot * k, c, size_t(take) * sizeof(Candidate));
            sh.count[slot] = take;
            sh.run_max[slot] = s.run_max;
            sh.run_sum[slot] = s.run_sum;
            continue;
        }
        sort_best(c, take, ws.sort_keys.ptr, ws.sort_keys.ptr + cap);
        write_row(a, u, c, take, s.run_max, s.run_sum);
    }
}

// Users whose threshold guess was too high, scored again without one (same plan, one item shard, so
// the same float operations as a run without guess): gathered into a contiguous problem of their own.
void rerun_failed_guesses(const TopkArgs& a, const KernelOps& ops, const Plan& plan, int nt, std::vector<Workspace>& ws,
                          const ShardResults& sh) {
    std::vector<int64_t> failed;
    for (const Workspace& w : ws) failed.insert(failed.end(), w.failed.begin(), w.failed.end());
    if (failed.empty()) return;
    std::sort(failed.begin(), failed.end());
    UserSubset subset(std::move(failed), a.users, a.d, a.excl_indptr, a.excl_indices, a.k);
    const int64_t nf = int64_t(subset.rows.size());
    TopkArgs sub = a;
    subset.point(sub);
    sub.guess_threshold = false;
    const int64_t n_blocks = (nf + plan.ub - 1) / plan.ub;
    const GuessPlan none;
#if defined(MMREC_FAST_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
#endif
    for (int64_t b = 0; b < n_blocks; ++b)
        process_unit(sub, ops, plan, b * plan.ub, std::min(plan.ub, nf - b * plan.ub), 0, ws[size_t(thread_id())], sh,
                     none);
    subset.scatter(a.k, a.out_indices, a.out_scores, a.out_lse);
}

}  // namespace

UserSubset::UserSubset(std::vector<int64_t> rows_, const float* all_users, int64_t d, const int64_t* excl_indptr,
                       const int64_t* excl_indices, int64_t k)
    : rows(std::move(rows_)),
      users(rows.size() * size_t(d)),
      indptr(rows.size() + 1, 0),
      out_indices(rows.size() * size_t(k)),
      out_scores(rows.size() * size_t(k)),
      out_lse(rows.size()) {
    for (size_t f = 0; f < rows.size(); ++f) {
        const int64_t u = rows[f];
        std::memcpy(users.data() + f * size_t(d), all_users + u * d, size_t(d) * sizeof(float));
        indices.insert(indices.end(), excl_indices + excl_indptr[u], excl_indices + excl_indptr[u + 1]);
        indptr[f + 1] = int64_t(indices.size());
    }
}

void UserSubset::point(TopkArgs& t) {
    t.users = users.data();
    t.n_users = int64_t(rows.size());
    t.excl_indptr = indptr.data();
    t.excl_indices = indices.data();
    t.out_indices = out_indices.data();
    t.out_scores = out_scores.data();
    t.out_lse = out_lse.data();
}

void UserSubset::scatter(int64_t k, int64_t* all_indices, float* all_scores, double* all_lse) const {
    for (size_t f = 0; f < rows.size(); ++f) {
        const int64_t u = rows[f];
        std::memcpy(all_indices + u * k, out_indices.data() + f * size_t(k), size_t(k) * sizeof(int64_t));
        std::memcpy(all_scores + u * k, out_scores.data() + f * size_t(k), size_t(k) * sizeof(float));
        all_lse[u] = out_lse[f];
    }
}

int64_t item_shards(int64_t n_users, int64_t n_items, int64_t k, int64_t item_block, int64_t* shard_len) {
    // A fixed number of shards that depends only on (U, I, k, item block), never on the thread count;
    // merged exactly in shard order afterwards.
    const int64_t ib = round_up(std::min(std::max<int64_t>(item_block, 1), std::max<int64_t>(n_items, 1)), kPanel);
    const int64_t n_iblocks = std::max<int64_t>(1, (n_items + ib - 1) / ib);
    int64_t shards = 1;
    if (n_users > 0 && n_users < kSplitBelowUsers && k >= 1) {
        shards = std::min<int64_t>(kMaxShards, n_iblocks / kMinShardBlocks);
        shards = std::min<int64_t>(shards, n_items / (kMinShardItemsPerK * k));
        shards = std::min<int64_t>(shards, kShardBytes / (n_users * k * int64_t(sizeof(Candidate))));
        shards = std::max<int64_t>(1, shards);
    }
    const int64_t len = (n_iblocks + shards - 1) / shards * ib;
    if (shard_len != nullptr) *shard_len = len;
    return std::max<int64_t>(1, (n_items + len - 1) / len);
}

int64_t threshold_guess_rank(int64_t n_users, int64_t n_items, int64_t k, int64_t item_block) {
    TopkArgs a;
    a.n_users = n_users;
    a.n_items = n_items;
    a.k = k;
    return plan_guess(a, item_shards(n_users, n_items, k, item_block, nullptr)).rank;
}

void topk(const TopkArgs& a, const KernelOps& ops) {
    if (a.n_users < 0 || a.n_items < 0 || a.d < 0) throw std::invalid_argument("negative size");
    if (a.k < 1) throw std::invalid_argument("k must be >= 1");
    if (a.user_block < 1 || a.item_block < 1) throw std::invalid_argument("block sizes must be >= 1");
    if (a.n_items > int64_t(std::numeric_limits<int32_t>::max()) - kPanel)
        throw std::invalid_argument("too many items for the native engine (limit 2^31 - 17)");
    if (a.n_users == 0) return;

    Plan plan;
    plan.ib = round_up(std::min(a.item_block, std::max<int64_t>(a.n_items, 1)), kPanel);
    plan.ldt = plan.ib + kPanel;  // a padded stride avoids 4K-aliasing of the tile rows
    if (a.capacity >= a.n_items) {
        plan.cap = std::max<int64_t>(a.n_items, 1);  // every item fits: never prunes
    } else {
        if (a.capacity <= a.k) throw std::invalid_argument("candidate capacity must exceed k");
        plan.cap = a.capacity;
    }
    plan.n_shards = item_shards(a.n_users, a.n_items, a.k, a.item_block, &plan.shard_len);

    int64_t ub = std::min(a.user_block, a.n_users);
    ub = std::min(ub, std::max<int64_t>(8, kCandidateBytesPerThread / (plan.cap * int64_t(sizeof(Candidate)))));
    int nt = resolve_threads(a.num_threads);
    // Enough units for every thread (results depend neither on the user block nor on the threads).
    if (nt > 1 && (a.n_users + ub - 1) / ub * plan.n_shards < nt)
        ub = std::max<int64_t>(1, round_up((a.n_users + nt - 1) / nt, 8));
    ub = std::max<int64_t>(1, std::min(ub, a.n_users));
    plan.ub = ub;
    const int64_t n_blocks = (a.n_users + ub - 1) / ub;
    const int64_t n_units = n_blocks * plan.n_shards;
    nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, n_units)));

    std::vector<Workspace> ws;
    ws.reserve(size_t(nt));
    const GuessPlan guess = plan_guess(a, plan.n_shards);
    // One packed item block: streaming items, or the guess's sample panels (gathered chunk by chunk).
    const int64_t pack_floats = a.packed == nullptr || guess.n_panels > 0 ? plan.ib * a.d : 0;
    for (int t = 0; t < nt; ++t) ws.emplace_back(plan.ub, plan.ldt, plan.ib, plan.cap, pack_floats, guess.cap);

    const int64_t n_slots = plan.n_shards > 1 ? plan.n_shards * a.n_users : 0;
    AlignedArray<Candidate> sh_cand{size_t(n_slots * a.k)};
    AlignedArray<int64_t> sh_count{size_t(n_slots)};
    AlignedArray<double> sh_max{size_t(n_slots)}, sh_sum{size_t(n_slots)};
    const ShardResults sh{sh_cand.ptr, sh_count.ptr, sh_max.ptr, sh_sum.ptr};
    // Merge scratch: all shards' candidates of one user, plus the select / sort scratch for them.
    const int64_t merge_n = plan.n_shards > 1 ? plan.n_shards * a.k : 0;
    std::vector<AlignedArray<Candidate>> merge_cand, merge_ties;
    std::vector<AlignedArray<uint32_t>> merge_keys;
    std::vector<AlignedArray<uint64_t>> merge_sort;
    if (merge_n > 0) {
        for (int t = 0; t < nt; ++t) {
            merge_cand.emplace_back(size_t(merge_n));
            merge_ties.emplace_back(size_t(merge_n));
            merge_keys.emplace_back(size_t(merge_n));
            merge_sort.emplace_back(size_t(2 * a.k));
        }
    }

#if defined(MMREC_FAST_OPENMP)
#pragma omp parallel num_threads(nt)
#endif
    {
#if defined(MMREC_FAST_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t unit = 0; unit < n_units; ++unit) {
            const int64_t b = unit / plan.n_shards, shard = unit % plan.n_shards;
            const int64_t u0 = b * ub;
            process_unit(a, ops, plan, u0, std::min(ub, a.n_users - u0), shard, ws[size_t(thread_id())], sh, guess);
        }
        if (merge_n > 0) {
#if defined(MMREC_FAST_OPENMP)
#pragma omp for schedule(static)
#endif
            for (int64_t u = 0; u < a.n_users; ++u) {
                const size_t t = size_t(thread_id());
                Candidate* buf = merge_cand[t].ptr;
                int64_t n = 0;
                double run_max = -std::numeric_limits<double>::infinity(), run_sum = 0.0;
                for (int64_t s = 0; s < plan.n_shards; ++s) {  // shard order: fixed fold order
                    const int64_t slot = s * a.n_users + u;
                    std::memcpy(buf + n, sh.cand + slot * a.k, size_t(sh.count[slot]) * sizeof(Candidate));
                    n += sh.count[slot];
                    add_block_sum(run_max, run_sum, sh.run_max[slot], sh.run_sum[slot]);
                }
                const int64_t take = std::min(n, a.k);
                if (n > take) prune(buf, n, a.k, SelectScratch{merge_keys[t].ptr, merge_ties[t].ptr});
                sort_best(buf, take, merge_sort[t].ptr, merge_sort[t].ptr + a.k);
                write_row(a, u, buf, take, run_max, run_sum);
            }
        }
    }
    rerun_failed_guesses(a, ops, plan, nt, ws, sh);
}

}  // namespace mmrec
