// Device discovery for the CUDA extension. The fused top-k kernels live beside this file (issue: GPU
// engine); this translation unit exists so the nvcc build path is compiled and exercised on every
// machine with nvcc, GPU or not.
//
// Plain C ABI: the pybind11 bindings (module.cpp) are compiled by the host compiler, so nvcc never has
// to parse pybind11's headers.

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/cuda_abi.h"

extern "C" {

// Number of visible devices; returns a cudaError_t code (0 on success). With no driver or no device the
// runtime reports an error code, which the bindings turn into count 0 plus a reason.
int mmrec_cuda_device_count(int* count) {
    *count = 0;
    return static_cast<int>(cudaGetDeviceCount(count));
}

// Name and compute capability of one device.
int mmrec_cuda_device_info(int device, char* name, std::size_t name_len, int* major, int* minor) {
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return static_cast<int>(err);
    std::size_t i = 0;
    for (; i + 1 < name_len && prop.name[i] != '\0'; ++i) name[i] = prop.name[i];
    if (name_len) name[i] = '\0';
    *major = prop.major;
    *minor = prop.minor;
    return 0;
}

const char* mmrec_cuda_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}

int mmrec_cuda_runtime_version(int* version) {
    return static_cast<int>(cudaRuntimeGetVersion(version));
}

}  // extern "C"
