// Threads and the packed item layout (kernels.h) for a whole catalogue.
#include <algorithm>
#include <cstdint>

#include "cpu/kernels.h"
#include "cpu/threads.h"
#include "cpu/topk.h"

namespace mmrec {

bool openmp_enabled() {
#if defined(MMREC_FAST_OPENMP)
    return true;
#else
    return false;
#endif
}

int max_threads() {
#if defined(MMREC_FAST_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int64_t packed_size(int64_t n_items, int64_t d) {
    return round_up(n_items, kPanel) * d;
}

void pack_items(const float* items, int64_t n_items, int64_t d, float* packed, int num_threads) {
    const int64_t n_panels = round_up(n_items, kPanel) / kPanel;
    const int nt = resolve_threads(num_threads);
    (void)nt;
#if defined(MMREC_FAST_OPENMP)
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
    for (int64_t p = 0; p < n_panels; ++p) {
        // The same panel packer the streaming path uses per block (a plain copy, zero padded).
        const int64_t first = p * kPanel;
        pack_panels_portable(items + first * d, std::min<int64_t>(kPanel, n_items - first), d, packed + p * d * kPanel);
    }
}

}  // namespace mmrec
