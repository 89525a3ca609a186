// Run-time SIMD dispatch: the best level this CPU supports, lowered by MMREC_FAST_SIMD for tests.
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/topk.h"

namespace mmrec {

SimdLevel best_simd_level() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // libgcc's checks include the OS's XSAVE support for the ymm / zmm state.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return SimdLevel::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::Avx2;
#endif
    return SimdLevel::Scalar;
}

SimdLevel active_simd_level() {
    static const SimdLevel best = best_simd_level();
    const char* env = std::getenv("MMREC_FAST_SIMD");
    if (env == nullptr || env[0] == '\0') return best;
    const std::string want(env);
    SimdLevel requested;
    if (want == "auto") return best;
    if (want == "avx512")
        requested = SimdLevel::Avx512;
    else if (want == "avx2")
        requested = SimdLevel::Avx2;
    else if (want == "scalar")
        requested = SimdLevel::Scalar;
    else
        throw std::invalid_argument("MMREC_FAST_SIMD=" + want + ": expected one of 'auto', 'avx512', 'avx2', 'scalar'");
    return static_cast<int>(requested) < static_cast<int>(best) ? requested : best;
}

const char* simd_level_name(SimdLevel level) {
    return kernel_ops(level).name;
}

std::vector<std::string> supported_simd_levels() {
    std::vector<std::string> out;
    for (int l = static_cast<int>(best_simd_level()); l >= 0; --l)
        out.emplace_back(simd_level_name(static_cast<SimdLevel>(l)));
    return out;
}

const KernelOps& kernel_ops(SimdLevel level) {
    switch (level) {
        case SimdLevel::Avx512:
            return kernels_avx512();
        case SimdLevel::Avx2:
            return kernels_avx2();
        default:
            return kernels_scalar();
    }
}

}  // namespace mmrec
