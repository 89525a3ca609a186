// The certified int8 top-k (see int8_quant.h for the quantisation and the bound it rests on).
//
// Pass 1, per (user block, item shard), item blocks in ascending order: an int8 score tile
// approx = fl(fl(Q) * fl(s_u * s_v)); exclusions and the item mask set entries to -inf; the block's
// normaliser terms (the float32 engine's own row_epilogue, on the approximate scores) and the positions
// whose approx can still reach the user's threshold L; for those, in float64, the per-pair certificate
//     E = (A_u ||r_v|| + C_u ||v||) (1 + 2^-40) + 2^-21 |approx| + (16131 d + 4) 2^-149,
//     A_u = s_u ||q_u||,  C_u = ||r_u|| + gamma_d ||u||  (both inflated by 1 + 2^-30),
// which bounds |fp32 score - approx|: the quantisation and float32 dot-product terms of int8_quant.h, the
// at most three roundings of approx (relative 3 * 2^-24 < 2^-21, plus underflow: |Q| + 2 half-subnormals),
// the float64 evaluation of E and of the norms (d < 2^16: relative < 2^-36, inside the inflations), and
// the stored norms (rounded up to float32). ub = approx + E (rounded up to float32), lb = approx - E
// (rounded down). L = the k-th largest lb seen so far (-inf before k): k items score >= L, so an item with
// ub < L scores below k others and cannot be in the top k, ties included. Items with ub >= L (>=: ties at
// the k-th place survive) go to the user's candidate buffer; a full buffer is cut to ub >= the new L.
// The vectorised pre-filter keeps approx > L - Emax_u (Emax_u: E with the catalogue's largest norms), so
// every item with ub >= L reaches the exact test.
//
// Pass 2: the survivors (ub >= the final L, the largest over item shards) are rescored with the float32
// engine's arithmetic (Int8Ops::rescore: the same fma chain) and cut to the best k by the engine's order
// (select.h: score descending, index ascending, -0 == +0). The result equals the float32 path's bit for bit.
// A user whose buffer outgrows kFailSlots (certificates too wide to prune: e.g. scores far below the
// quantisation error) is computed by the float32 engine itself instead.
//
// Normaliser: the float32 engine's algorithm on the approximate scores, so |lse_int8 - lse_fp32| <=
// Emax_u / T (every score moves by at most Emax_u) plus the engine's own rounding on both sides (see
// lse_bound_of below); reported per user.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/order_key.h"
#include "cpu/int8_quant.h"
#include "cpu/normaliser.h"
#include "cpu/select.h"
#include "cpu/threads.h"
#include "cpu/topk.h"

#if defined(MMREC_FAST_OPENMP)
#include <omp.h>
#endif

namespace mmrec {
namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kInfD = std::numeric_limits<double>::infinity();
constexpr double kTwoM30 = 9.313225746154785e-10;   // 2^-30
constexpr double kTwoM40 = 9.094947017729282e-13;   // 2^-40
constexpr double kTwoM21 = 4.76837158203125e-07;    // 2^-21
constexpr double kTwoM149 = 1.401298464324817e-45;  // 2^-149, the smallest float32 subnormal
// Candidate slots per user before the user is handed to the float32 engine (memory guard).
constexpr int64_t kFailSlotsMin = 32768;

float round_up_f(double x) {
    float f = static_cast<float>(x);
    if (double(f) < x) f = std::nextafter(f, kInfF);
    return f;
}

float round_down_f(double x) {
    float f = static_cast<float>(x);
    if (double(f) > x) f = std::nextafter(f, -kInfF);
    return f;
}

double mul0(double a, double b) {  // a * b with 0 * inf = 0 (a zero norm bounds exactly)
    return (a == 0.0 || b == 0.0) ? 0.0 : a * b;
}

struct RowQuant {
    float scale;
    double qnorm;  // ||q||
    double resid;  // ||x - s q||
    double norm;   // ||x||
    int32_t qsum;
};

// Symmetric per-row quantisation into q[0 .. d) (see int8_quant.h).
RowQuant quantise_row(const float* x, int64_t d, int8_t* q) {
    float mx = 0.0f;
    for (int64_t k = 0; k < d; ++k) mx = std::max(mx, std::fabs(x[k]));
    const float s = static_cast<float>(double(mx) / 127.0);
    RowQuant out{s, 0.0, 0.0, 0.0, 0};
    double qq = 0.0, rr = 0.0, xx = 0.0;
    for (int64_t k = 0; k < d; ++k) {
        const double xk = x[k];
        double c = 0.0;
        if (s > 0.0f) c = std::min(127.0, std::max(-127.0, std::nearbyint(xk / double(s))));
        q[k] = static_cast<int8_t>(c);
        out.qsum += static_cast<int32_t>(c);
        const double r = xk - double(s) * c;  // exact (see int8_quant.h)
        qq += c * c;
        rr += r * r;
        xx += xk * xk;
    }
    out.qnorm = std::sqrt(qq);
    out.resid = std::sqrt(rr);
    out.norm = std::sqrt(xx);
    return out;
}

// ---- dispatch ------------------------------------------------------------------------------------------

uint64_t lcg(uint64_t& state) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
}

bool cpu_has(Int8Level level) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (level == Int8Level::Avx2) return avx2;
    if (level == Int8Level::Avx512Vnni)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
#endif
    return level == Int8Level::Scalar;
}

const Int8Ops& ops_of(Int8Level level) {
    switch (level) {
        case Int8Level::Avx512Vnni:
            return int8_kernels_avx512vnni();
        case Int8Level::Avx2:
            return int8_kernels_avx2();
        default:
            return int8_kernels_scalar();
    }
}

struct Dispatch {
    std::vector<const Int8Ops*> passing;  // best first, scalar last
    std::vector<std::string> failures;
};

const Dispatch& dispatch() {
    static const Dispatch table = [] {
        Dispatch t;
        for (Int8Level level : {Int8Level::Avx512Vnni, Int8Level::Avx2}) {
            if (!cpu_has(level)) continue;
            const Int8Ops& ops = ops_of(level);
            if (int8_self_check(ops))
                t.passing.push_back(&ops);
            else
                t.failures.push_back(std::string("int8 kernel '") + ops.name +
                                     "' disagreed with the scalar kernel on its self-check; disabled");
        }
        t.passing.push_back(&int8_kernels_scalar());
        return t;
    }();
    return table;
}

// ---- the driver ----------------------------------------------------------------------------------------

struct I8Cand {
    int32_t idx;
    float ub;
    float lb;
};

struct UserQ {
    float su;
    int32_t usum;
    double a;     // A_u
    double c;     // C_u
    double emax;  // E bound over every item
};

struct UserRun {
    std::vector<I8Cand> buf;
    int64_t cap;
    float L;
    bool failed;
    double run_max, run_sum;
    int64_t cursor, end;
};

struct Plan {
    int64_t ub, ib, ldt, d4, n_shards, shard_len, fail_slots, cap0;
    double gamma;
};

struct Workspace {
    std::vector<int8_t> uq;
    std::vector<float> su;
    std::vector<int32_t> usum;
    std::vector<UserQ> uqs;
    std::vector<float> tile;
    std::vector<int32_t> pos;
    std::vector<int32_t> masked;
    std::vector<UserRun> runs;
    std::vector<float> lbs;
    // pass 2
    std::vector<int32_t> sel_idx;
    std::vector<float> sel_score;
    std::vector<Candidate> cand, ties;
    std::vector<uint32_t> keys;
    std::vector<uint64_t> sort_a, sort_b;
    std::vector<int64_t> failed;
    int64_t survivors = 0;
};

// Cut a full buffer: L = max(L, k-th largest lb), then keep ub >= L.
void prune_buffer(UserRun& s, int64_t k, std::vector<float>& lbs) {
    const int64_t n = int64_t(s.buf.size());
    if (n >= k) {
        lbs.resize(size_t(n));
        for (int64_t q = 0; q < n; ++q) lbs[size_t(q)] = s.buf[size_t(q)].lb;
        std::nth_element(lbs.begin(), lbs.begin() + (k - 1), lbs.end(), [](float x, float y) { return x > y; });
        s.L = std::max(s.L, lbs[size_t(k - 1)]);
    }
    int64_t w = 0;
    for (int64_t q = 0; q < n; ++q)
        if (!(s.buf[size_t(q)].ub < s.L)) s.buf[size_t(w++)] = s.buf[size_t(q)];
    s.buf.resize(size_t(w));
}

void quantise_users(const Int8TopkArgs& a, const Plan& plan, int64_t u0, int64_t nu, Workspace& ws, double norm_max,
                    double resid_max) {
    const int64_t ldu = plan.d4 * 4;
    std::fill(ws.uq.begin(), ws.uq.begin() + nu * ldu, int8_t(0));
    const double tiny = (16131.0 * double(a.d) + 4.0) * kTwoM149;
    for (int64_t r = 0; r < nu; ++r) {
        const RowQuant rq = quantise_row(a.users + (u0 + r) * a.d, a.d, ws.uq.data() + r * ldu);
        UserQ& q = ws.uqs[size_t(r)];
        q.su = rq.scale;
        q.usum = rq.qsum;
        q.a = double(rq.scale) * rq.qnorm * (1.0 + kTwoM30);
        q.c = (rq.resid + plan.gamma * rq.norm) * (1.0 + kTwoM30);
        // |approx| <= s_u ||q_u|| s_v ||q_v|| (1 + 2^-21) and s_v ||q_v|| <= ||v|| + ||r_v||.
        const double amax = mul0(q.a, norm_max + resid_max) * (1.0 + kTwoM21);
        q.emax =
            ((mul0(q.a, resid_max) + mul0(q.c, norm_max)) * (1.0 + kTwoM40) + kTwoM21 * amax + tiny) * (1.0 + kTwoM30);
        ws.su[size_t(r)] = rq.scale;
        ws.usum[size_t(r)] = rq.qsum;
    }
}

// The pre-filter threshold: strictly below L - emax (so approx > thr for every item with ub >= L).
float prefilter_threshold(float L, double emax) {
    if (L == -kInfF) return -kInfF;
    const double t = double(L) - emax;
    if (!(t > -double(std::numeric_limits<float>::max()))) return -kInfF;
    return std::nextafter(round_down_f(t), -kInfF);
}

void pass1_unit(const Int8TopkArgs& a, const Int8Ops& ops, const KernelOps& fops, const Plan& plan, int64_t u0,
                int64_t nu, int64_t shard, Workspace& ws, double norm_max, double resid_max) {
    const int64_t lo = shard * plan.shard_len, hi = std::min(a.n_items, lo + plan.shard_len);
    const int64_t ldu = plan.d4 * 4, pstride = plan.d4 * kI8Panel * 4;
    const double tiny = (16131.0 * double(a.d) + 4.0) * kTwoM149;
    quantise_users(a, plan, u0, nu, ws, norm_max, resid_max);
    for (int64_t r = 0; r < nu; ++r) {
        UserRun& s = ws.runs[size_t(r)];
        s.buf.clear();
        s.cap = plan.cap0;
        s.L = -kInfF;
        s.failed = false;
        s.run_max = -kInfD;
        s.run_sum = 0.0;
        const int64_t* e0 = a.excl_indices + a.excl_indptr[u0 + r];
        const int64_t* e1 = a.excl_indices + a.excl_indptr[u0 + r + 1];
        s.cursor = std::lower_bound(e0, e1, lo) - a.excl_indices;
        s.end = e1 - a.excl_indices;
    }
    for (int64_t i0 = lo; i0 < hi; i0 += plan.ib) {
        const int64_t n_valid = std::min(plan.ib, hi - i0);
        const int64_t n_panels = (n_valid + kI8Panel - 1) / kI8Panel;
        const int64_t n_pad = n_panels * kI8Panel;
        const int64_t i_end = i0 + n_valid;
        ops.tile_approx(ws.uq.data(), ldu, ws.su.data(), ws.usum.data(), nu, a.panels + (i0 / kI8Panel) * pstride,
                        a.scale + i0, n_panels, plan.d4, ws.tile.data(), plan.ldt);
        ws.masked.clear();
        if (a.item_mask != nullptr)
            for (int64_t j = 0; j < n_valid; ++j)
                if (a.item_mask[i0 + j] == 0) ws.masked.push_back(int32_t(j));
        for (int64_t r = 0; r < nu; ++r) {
            UserRun& s = ws.runs[size_t(r)];
            if (s.failed) continue;
            const UserQ& uq = ws.uqs[size_t(r)];
            float* row = ws.tile.data() + r * plan.ldt;
            for (int64_t j = n_valid; j < n_pad; ++j) row[j] = -kInfF;
            for (int32_t j : ws.masked) row[j] = -kInfF;
            while (s.cursor < s.end && a.excl_indices[s.cursor] < i_end) {
                const int64_t j = a.excl_indices[s.cursor] - i0;
                if (j >= 0) row[j] = -kInfF;
                ++s.cursor;
            }
            const float thr = prefilter_threshold(s.L, uq.emax);
            int64_t count;
            if (a.normalizer) {
                const RowStats rs = fops.row_epilogue(row, n_pad, a.log2e_over_temperature, thr, ws.pos.data());
                add_row_stats(s.run_max, s.run_sum, rs, a.log2e_over_temperature_lo);
                count = rs.count;
            } else {
                count = ops.filter(row, n_pad, thr, ws.pos.data());
            }
            for (int64_t q = 0; q < count; ++q) {
                const int32_t j = ws.pos[size_t(q)];
                const double approx = row[j];
                const int64_t item = i0 + j;
                const double e = (mul0(uq.a, a.resid[item]) + mul0(uq.c, a.norm[item])) * (1.0 + kTwoM40) +
                                 kTwoM21 * std::fabs(approx) + tiny;
                float ub = kInfF, lb = -kInfF;
                if (std::isfinite(approx) && std::isfinite(e)) {
                    ub = round_up_f(approx + e);
                    lb = round_down_f(approx - e);
                }
                if (ub < s.L) continue;
                if (int64_t(s.buf.size()) == s.cap) {
                    prune_buffer(s, a.k, ws.lbs);
                    if (int64_t(s.buf.size()) > s.cap / 2) s.cap *= 2;
                    if (s.cap > plan.fail_slots) {
                        s.failed = true;
                        s.buf.clear();
                        s.buf.shrink_to_fit();
                        break;
                    }
                    if (ub < s.L) continue;
                }
                s.buf.push_back(I8Cand{int32_t(item), ub, lb});
            }
        }
    }
    for (int64_t r = 0; r < nu; ++r) {
        UserRun& s = ws.runs[size_t(r)];
        if (!s.failed) prune_buffer(s, a.k, ws.lbs);
    }
}

// The engine's normaliser rounding on one side (natural-log units): the exp2 polynomial (~1.4 ulp), the
// fma giving each exponent and the float32 scale's rounding (6e-8 of |exponent| each, averaged with the
// softmax weights: at most 2 log2(n) + 4), the 16-lane float32 block sums (ib / 16 + 4 additions) and
// the top-term clamp of write_row; x1.5 for the second-order terms.
double engine_lse_tolerance(int64_t n_terms, int64_t ib, double lse) {
    const double lg = std::log2(double(n_terms) + 1.0);
    const double rel = 2e-7 + 2.0 * 6e-8 * (2.0 * lg + 4.0) + 6e-8 * (double(ib) / 16.0 + 8.0);
    return 1.5 * rel + 8.0 * std::ldexp(1.0, -52) * std::fabs(lse);
}

// Pass 2 for one user: survivors of `cands` (ub >= L) rescored in float32, the best k written.
void finish_user(const Int8TopkArgs& a, const Int8Ops& ops, const Plan& plan, int64_t u, const I8Cand* cands,
                 int64_t n_cands, float L, double run_max, double run_sum, double emax, Workspace& ws) {
    const int64_t k = a.k;
    ws.sel_idx.clear();
    for (int64_t q = 0; q < n_cands; ++q)
        if (!(cands[q].ub < L)) ws.sel_idx.push_back(cands[q].idx);
    const int64_t n = int64_t(ws.sel_idx.size());
    ws.survivors += n;
    ws.sel_score.resize(size_t(n));
    ops.rescore(a.users + u * a.d, a.items, a.d, ws.sel_idx.data(), n, ws.sel_score.data());
    ws.cand.resize(size_t(std::max<int64_t>(n, 1)));
    ws.ties.resize(size_t(std::max<int64_t>(n, 1)));
    ws.keys.resize(size_t(std::max<int64_t>(n, 1)));
    for (int64_t q = 0; q < n; ++q) ws.cand[size_t(q)] = Candidate{ws.sel_score[size_t(q)], ws.sel_idx[size_t(q)]};
    const int64_t take = std::min(n, k);
    if (n > take) prune(ws.cand.data(), n, k, SelectScratch{ws.keys.data(), ws.ties.data()});
    ws.sort_a.resize(size_t(std::max<int64_t>(take, 1)));
    ws.sort_b.resize(size_t(std::max<int64_t>(take, 1)));
    sort_best(ws.cand.data(), take, ws.sort_a.data(), ws.sort_b.data());
    int64_t* oi = a.out_indices + u * k;
    float* os = a.out_scores + u * k;
    for (int64_t q = 0; q < take; ++q) {
        oi[q] = ws.cand[size_t(q)].index;
        os[q] = ws.cand[size_t(q)].score;
    }
    for (int64_t q = take; q < k; ++q) {
        oi[q] = -1;
        os[q] = -kInfF;
    }
    if (!a.normalizer) {
        a.out_lse[u] = std::nan("");
        a.out_lse_bound[u] = std::nan("");
    } else if (run_max == -kInfD) {
        a.out_lse[u] = -kInfD;
        a.out_lse_bound[u] = 0.0;
    } else {
        double lse = (run_max + std::log2(run_sum)) * 0.6931471805599453;
        // Never below the top (float32, exact) score's own term: probabilities stay <= 1, and the float32
        // engine's normaliser is never below that term either (up to its rounding, inside the bound).
        if (take > 0) lse = std::max(lse, double(ws.cand[0].score) * a.inv_temperature);
        a.out_lse[u] = lse;
        a.out_lse_bound[u] =
            emax * a.inv_temperature * (1.0 + kTwoM30) + 2.0 * engine_lse_tolerance(a.n_items, plan.ib, lse);
    }
}

// Users whose certificates were too wide: the float32 engine on them, with the same exclusions, item mask
// and normaliser switch (it takes them directly since the filters landed).
void run_fallback(const Int8TopkArgs& a, std::vector<int64_t>& failed) {
    if (failed.empty()) return;
    std::sort(failed.begin(), failed.end());
    UserSubset subset(failed, a.users, a.d, a.excl_indptr, a.excl_indices, a.k);  // failed stays: counted after
    TopkArgs t;
    t.items = a.items;
    t.n_items = a.n_items;
    t.d = a.d;
    t.k = a.k;
    t.log2e_over_temperature = a.log2e_over_temperature;
    t.log2e_over_temperature_lo = a.log2e_over_temperature_lo;
    t.inv_temperature = a.inv_temperature;
    t.item_mask = a.item_mask;
    t.normalizer = a.normalizer;
    t.user_block = 256;
    t.item_block = 512;
    t.capacity = std::max<int64_t>(2 * a.k, a.k + 16);
    t.num_threads = a.num_threads;
    subset.point(t);
    topk(t, kernel_ops(active_simd_level()));
    subset.scatter(a.k, a.out_indices, a.out_scores, a.out_lse);
    for (const int64_t u : subset.rows) {
        if (!a.normalizer) a.out_lse[u] = std::nan("");
        a.out_lse_bound[u] = a.normalizer ? 0.0 : std::nan("");
    }
}

}  // namespace

// ---- public --------------------------------------------------------------------------------------------

bool int8_self_check(const Int8Ops& ops) {
    const Int8Ops& ref = int8_kernels_scalar();
    uint64_t state = 0x9E3779B97F4A7C15ull;
    const int64_t rows = 11, d4 = 5, n_panels = 3, ldu = d4 * 4, ldc = n_panels * kI8Panel + 3;
    std::vector<int8_t> uq(static_cast<size_t>(rows * ldu)), panels(static_cast<size_t>(n_panels * d4 * kI8Panel * 4));
    for (auto& x : uq) x = static_cast<int8_t>(int(lcg(state) % 255) - 127);
    for (auto& x : panels) x = static_cast<int8_t>(int(lcg(state) % 255) - 127);
    // Extremes: a user row of +127 and one of -127, an item of -127 (largest pair sums, signs).
    for (int64_t k = 0; k < ldu; ++k) {
        uq[size_t(2 * ldu + k)] = 127;
        uq[size_t(5 * ldu + k)] = -127;
    }
    for (int64_t q = 0; q < d4; ++q)
        for (int t = 0; t < 4; ++t) panels[size_t((q * kI8Panel + 3) * 4 + t)] = -127;
    std::vector<float> su(static_cast<size_t>(rows)), sv(static_cast<size_t>(n_panels * kI8Panel));
    std::vector<int32_t> usum(size_t(rows), 0);
    for (int64_t r = 0; r < rows; ++r) {
        su[size_t(r)] = float(lcg(state) % 1000 + 1) * 1e-3f;
        for (int64_t k = 0; k < ldu; ++k) usum[size_t(r)] += uq[size_t(r * ldu + k)];
    }
    for (auto& x : sv) x = float(lcg(state) % 1000 + 1) * 1e-4f;
    std::vector<float> c0(size_t(rows * ldc), 0.0f), c1(size_t(rows * ldc), 0.0f);
    ref.tile_approx(uq.data(), ldu, su.data(), usum.data(), rows, panels.data(), sv.data(), n_panels, d4, c0.data(),
                    ldc);
    ops.tile_approx(uq.data(), ldu, su.data(), usum.data(), rows, panels.data(), sv.data(), n_panels, d4, c1.data(),
                    ldc);
    for (int64_t r = 0; r < rows; ++r)
        if (std::memcmp(c0.data() + r * ldc, c1.data() + r * ldc, size_t(n_panels * kI8Panel) * sizeof(float)) != 0)
            return false;
    // rescore: 13 survivors (a full group of 8 and a tail), d = 37.
    const int64_t d = 37, n_items = 20, n = 13;
    std::vector<float> u(static_cast<size_t>(d)), items(static_cast<size_t>(n_items * d)), o0(static_cast<size_t>(n)),
        o1(static_cast<size_t>(n));
    for (auto& x : u) x = float(int(lcg(state) % 2001) - 1000) * 1.37e-3f;
    for (auto& x : items) x = float(int(lcg(state) % 2001) - 1000) * 0.91e-3f;
    std::vector<int32_t> idx(static_cast<size_t>(n));
    for (auto& x : idx) x = int32_t(lcg(state) % n_items);
    ref.rescore(u.data(), items.data(), d, idx.data(), n, o0.data());
    ops.rescore(u.data(), items.data(), d, idx.data(), n, o1.data());
    if (std::memcmp(o0.data(), o1.data(), size_t(n) * sizeof(float)) != 0) return false;
    // filter
    std::vector<float> s(static_cast<size_t>(48));
    for (auto& x : s) x = float(int(lcg(state) % 21) - 10);
    s[7] = -kInfF;
    std::vector<int32_t> p0(static_cast<size_t>(64)), p1(static_cast<size_t>(64));
    const int64_t n0 = ref.filter(s.data(), 48, 0.0f, p0.data()), n1 = ops.filter(s.data(), 48, 0.0f, p1.data());
    return n0 == n1 && std::equal(p0.begin(), p0.begin() + n0, p1.begin());
}

std::vector<std::string> int8_supported_levels() {
    std::vector<std::string> out;
    for (const Int8Ops* ops : dispatch().passing) out.emplace_back(ops->name);
    return out;
}

std::vector<std::string> int8_self_check_failures() {
    return dispatch().failures;
}

const Int8Ops& int8_active_ops() {
    const char* env = std::getenv("MMREC_FAST_SIMD");
    Int8Level cap = Int8Level::Avx512Vnni;
    if (env != nullptr && env[0] != '\0') {
        const std::string want(env);
        if (want == "auto" || want == "avx512")
            cap = Int8Level::Avx512Vnni;
        else if (want == "avx2")
            cap = Int8Level::Avx2;
        else if (want == "scalar")
            cap = Int8Level::Scalar;
        else
            throw std::invalid_argument("MMREC_FAST_SIMD=" + want +
                                        ": expected one of 'auto', 'avx512', 'avx2', 'scalar'");
    }
    for (const Int8Ops* ops : dispatch().passing)
        if (static_cast<int>(ops->level) <= static_cast<int>(cap)) return *ops;
    return int8_kernels_scalar();
}

int64_t int8_panel_bytes(int64_t n_items, int64_t d) {
    return round_up(n_items, kI8Panel) * round_up(d, 4);
}

void int8_prepare(const float* items, int64_t n_items, int64_t d, int8_t* panels, float* scale, float* resid,
                  float* norm, int num_threads) {
    const int64_t d4 = (d + 3) / 4, n_panels = round_up(n_items, kI8Panel) / kI8Panel;
    const int nt = resolve_threads(num_threads);
    (void)nt;
#if defined(MMREC_FAST_OPENMP)
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t p = 0; p < n_panels; ++p) {
        int8_t* out = panels + p * d4 * kI8Panel * 4;
        std::memset(out, 0, size_t(d4 * kI8Panel * 4));
        std::vector<int8_t> q(size_t(d4 * 4));
        for (int64_t l = 0; l < kI8Panel; ++l) {
            const int64_t j = p * kI8Panel + l;
            if (j >= n_items) {
                scale[j] = 0.0f;  // the scale array is padded to whole panels
                continue;
            }
            const RowQuant rq = quantise_row(items + j * d, d, q.data());
            scale[j] = rq.scale;
            resid[j] = round_up_f(rq.resid * (1.0 + kTwoM30));
            norm[j] = round_up_f(rq.norm * (1.0 + kTwoM30));
            for (int64_t k = 0; k < d; ++k) out[((k / 4) * kI8Panel + l) * 4 + k % 4] = q[size_t(k)];
        }
    }
}

void int8_topk(const Int8TopkArgs& a, const Int8Ops& ops) {
    if (a.n_users < 0 || a.n_items < 0 || a.d < 1) throw std::invalid_argument("bad sizes");
    if (a.d > kI8MaxDim) throw std::invalid_argument("d: the int8 path supports d <= 65536");
    if (a.k < 1) throw std::invalid_argument("k must be >= 1");
    if (a.n_items > int64_t(std::numeric_limits<int32_t>::max()) - kI8Panel)
        throw std::invalid_argument("too many items for the native engine (limit 2^31 - 17)");
    if (a.out_stats != nullptr) a.out_stats[0] = a.out_stats[1] = 0;
    if (a.n_users == 0) return;
    const KernelOps& fops = kernel_ops(active_simd_level());

    Plan plan;
    plan.ib = round_up(std::min(std::max<int64_t>(a.item_block, 1), std::max<int64_t>(a.n_items, 1)), kI8Panel);
    plan.ldt = plan.ib + kI8Panel;
    plan.d4 = (a.d + 3) / 4;
    plan.n_shards = item_shards(a.n_users, a.n_items, a.k, plan.ib, &plan.shard_len);
    plan.fail_slots = std::max<int64_t>(8 * a.k, kFailSlotsMin);
    plan.cap0 = std::max<int64_t>(2 * a.k, a.k + 64);
    const double eps = std::ldexp(1.0, -24), de = double(a.d) * eps;
    plan.gamma = de / (1.0 - de);
    double norm_max = 0.0, resid_max = 0.0;
    for (int64_t j = 0; j < a.n_items; ++j) {
        norm_max = std::max(norm_max, double(a.norm[j]));
        resid_max = std::max(resid_max, double(a.resid[j]));
    }

    int nt = resolve_threads(a.num_threads);
    int64_t ub = std::max<int64_t>(1, std::min(a.user_block, a.n_users));
    if (nt > 1 && (a.n_users + ub - 1) / ub * plan.n_shards < nt)
        ub = std::max<int64_t>(1, round_up((a.n_users + nt - 1) / nt, 4));
    ub = std::max<int64_t>(1, std::min(ub, a.n_users));
    plan.ub = ub;
    const int64_t n_blocks = (a.n_users + ub - 1) / ub, n_units = n_blocks * plan.n_shards;
    nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, n_units)));

    std::vector<Workspace> ws(static_cast<size_t>(nt));
    for (Workspace& w : ws) {
        w.uq.resize(size_t(ub * plan.d4 * 4));
        w.su.resize(size_t(ub));
        w.usum.resize(size_t(ub));
        w.uqs.resize(size_t(ub));
        w.tile.resize(size_t(ub * plan.ldt));
        w.pos.resize(size_t(plan.ib + kI8Panel));
        w.runs.resize(size_t(ub));
    }
    // Item-split path: per (shard, user) candidates, threshold and normaliser pair, merged per user.
    const bool split = plan.n_shards > 1;
    const int64_t n_slots = split ? plan.n_shards * a.n_users : 0;
    std::vector<std::vector<I8Cand>> sh_buf(static_cast<size_t>(n_slots));
    std::vector<float> sh_L(static_cast<size_t>(n_slots));
    std::vector<double> sh_max(static_cast<size_t>(n_slots)), sh_sum(static_cast<size_t>(n_slots));
    std::vector<char> sh_failed(static_cast<size_t>(n_slots), 0);
    std::vector<double> emax(static_cast<size_t>(split ? a.n_users : 0));

#if defined(MMREC_FAST_OPENMP)
#pragma omp parallel num_threads(nt)
#endif
    {
        Workspace& w = ws[size_t(thread_id())];
#if defined(MMREC_FAST_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t unit = 0; unit < n_units; ++unit) {
            const int64_t b = unit / plan.n_shards, shard = unit % plan.n_shards;
            const int64_t u0 = b * ub, nu = std::min(ub, a.n_users - u0);
            pass1_unit(a, ops, fops, plan, u0, nu, shard, w, norm_max, resid_max);
            for (int64_t r = 0; r < nu; ++r) {
                UserRun& s = w.runs[size_t(r)];
                const int64_t u = u0 + r;
                if (split) {
                    const int64_t slot = shard * a.n_users + u;
                    sh_buf[size_t(slot)] = s.buf;
                    sh_L[size_t(slot)] = s.L;
                    sh_max[size_t(slot)] = s.run_max;
                    sh_sum[size_t(slot)] = s.run_sum;
                    sh_failed[size_t(slot)] = s.failed;
                    if (shard == 0) emax[size_t(u)] = w.uqs[size_t(r)].emax;
                } else if (s.failed) {
                    w.failed.push_back(u);
                } else {
                    finish_user(a, ops, plan, u, s.buf.data(), int64_t(s.buf.size()), s.L, s.run_max, s.run_sum,
                                w.uqs[size_t(r)].emax, w);
                }
            }
        }
        if (split) {
            std::vector<I8Cand> all;
#if defined(MMREC_FAST_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t u = 0; u < a.n_users; ++u) {
                all.clear();
                float L = -kInfF;
                double run_max = -kInfD, run_sum = 0.0;
                bool failed = false;
                for (int64_t s = 0; s < plan.n_shards; ++s) {  // shard order: a fixed fold order
                    const int64_t slot = s * a.n_users + u;
                    failed = failed || sh_failed[size_t(slot)];
                    L = std::max(L, sh_L[size_t(slot)]);
                    all.insert(all.end(), sh_buf[size_t(slot)].begin(), sh_buf[size_t(slot)].end());
                    add_block_sum(run_max, run_sum, sh_max[size_t(slot)], sh_sum[size_t(slot)]);
                }
                if (failed)
                    w.failed.push_back(u);
                else
                    finish_user(a, ops, plan, u, all.data(), int64_t(all.size()), L, run_max, run_sum, emax[size_t(u)],
                                w);
            }
        }
    }
    std::vector<int64_t> failed;
    int64_t survivors = 0;
    for (const Workspace& w : ws) {
        failed.insert(failed.end(), w.failed.begin(), w.failed.end());
        survivors += w.survivors;
    }
    run_fallback(a, failed);
    if (a.out_stats != nullptr) {
        a.out_stats[0] = survivors;
        a.out_stats[1] = int64_t(failed.size());
    }
}

}  // namespace mmrec
