// The online log-sum-exp in base 2: folding each block's (reference exponent, sum) into a user's
// running float64 pair by exact powers of two, with the float scale's rounding put back per block.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"

namespace mmrec {

// v * 2^e in double: exact (a power of two) when e is an integer, as the kernels' references are.
inline double times_pow2(double v, double e) {
    if (e == std::floor(e)) {
        if (e < -1074.0) return 0.0;  // also e = -inf
        if (e <= 1023.0 && e >= -1022.0) {
            const uint64_t bits = uint64_t(int64_t(e) + 1023) << 52;
            double p;
            std::memcpy(&p, &bits, sizeof p);
            return v * p;
        }
        return std::ldexp(v, int(e));
    }
    return v * std::exp2(e);
}

// Folds a block's base-2 (reference, sum) into a running pair in float64 (sum * 2^reference each).
inline void add_block_sum(double& run_max, double& run_sum, double block_max, double block_sum) {
    if (block_max == -std::numeric_limits<double>::infinity()) return;
    if (block_max > run_max) {
        run_sum = times_pow2(run_sum, run_max - block_max) + block_sum;
        run_max = block_max;
    } else {
        run_sum += times_pow2(block_sum, block_max - run_max);
    }
}

// 2^x for the small x of the scale correction below (|x| < 2^-12: a cubic, relative error < 1e-15),
// std::exp2 otherwise.
inline double exp2_small(double x) {
    if (std::fabs(x) < 0.000244140625) {
        const double y = x * 0.6931471805599453;
        return 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0)));
    }
    return std::exp2(x);
}

// The kernels scale by the float c = fl(C), C = log2(e) / T, so each term of a block is off by the
// factor 2^(s_j * (C - c)): 2^(block top * (C - c)) up to (s_j - top) * (C - c), a relative 6e-8 of
// the term's distance below the block's top -- negligible. The common factor is put back per block
// (without it the normaliser is off by a relative 6e-8 of the top score / T, which breaks p <= 1
// once that reaches ~1e6). Per block, not per user, so a block's contribution does not depend on
// which other blocks share its pass: item shards sum exactly what one pass sums.
// On the fast path |top * (C - c)| < 1 and the factor multiplies the block's sum; on the large path
// (row_epilogue_large) it can be huge and goes into the block's reference exponent instead.
inline void add_row_stats(double& run_max, double& run_sum, const RowStats& rs, double scale_lo) {
    if (rs.max == -std::numeric_limits<double>::infinity()) return;
    const double x = double(rs.top) * scale_lo;
    if (std::fabs(x) < 1.0)
        add_block_sum(run_max, run_sum, rs.max, double(rs.sum) * exp2_small(x));
    else
        add_block_sum(run_max, run_sum, rs.max + x, rs.sum);
}

}  // namespace mmrec
