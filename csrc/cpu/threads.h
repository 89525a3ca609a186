// OpenMP thread helpers shared by the engine's translation units (1 thread without OpenMP).
#pragma once

#include <cstdint>

#if defined(MMREC_FAST_OPENMP)
#include <omp.h>
#endif

namespace mmrec {

inline int resolve_threads(int requested) {
#if defined(MMREC_FAST_OPENMP)
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

inline int thread_id() {
#if defined(MMREC_FAST_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int64_t round_up(int64_t x, int64_t m) {
    return (x + m - 1) / m * m;
}

}  // namespace mmrec
