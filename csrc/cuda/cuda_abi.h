// The C ABI between the nvcc-compiled kernels (topk_kernel.cu, topk_mma.cu, device_query.cu) and the host-compiled
// pybind11 module (module.cpp), declared once: both sides include this header, so a changed signature
// fails to compile instead of mismatching at run time. Functions return 0 or a cudaError_t / own code.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
int mmrec_cuda_device_count(int* count);
int mmrec_cuda_device_info(int device, char* name, std::size_t name_len, int* major, int* minor);
const char* mmrec_cuda_error_string(int code);
int mmrec_cuda_runtime_version(int* version);

int mmrec_cuda_max_k();
const char* mmrec_cuda_topk_error_string(int code);
int mmrec_cuda_topk_plan(long long n_users, long long n_items, int k, int capacity, int sm_count,
                         long long workspace_bytes, int* n_shards, long long* shard_len, long long* batch_users);
// `item_mask`: device bytes, one per item (0 = ineligible for every user), or null for none; `normalizer` 0: top-k
// only (no exp work; out_lse is written NaN).
int mmrec_cuda_topk(const void* users, long long n_users, const void* items, long long n_items, int dim, int dtype,
                    int k, float inv_t, const long long* excl_indptr, const long long* excl_indices,
                    const uint8_t* item_mask, int normalizer, int capacity, long long workspace_bytes,
                    long long* out_idx, float* out_scores, double* out_lse, int device, void* stream);
// Tensor-core path (topk_mma.cu): the same call plus `precision` (0 native 16-bit inputs; float32 inputs:
// 1 bf16, 2 bf16x3, 3 bf16x6, 4 tf32).
int mmrec_cuda_topk_mma(const void* users, long long n_users, const void* items, long long n_items, int dim, int dtype,
                        int precision, int k, float inv_t, const long long* excl_indptr, const long long* excl_indices,
                        const uint8_t* item_mask, int normalizer, int capacity, long long workspace_bytes,
                        long long* out_idx, float* out_scores, double* out_lse, int device, void* stream);
const char* mmrec_cuda_mma_error_string(int code);
long long mmrec_cuda_mma_smem_bytes(int dim, int precision);
int mmrec_cuda_malloc(void** ptr, std::size_t nbytes, int device);
int mmrec_cuda_free(void* ptr);
int mmrec_cuda_memcpy_htod(void* dst, const void* src, std::size_t nbytes);
int mmrec_cuda_memcpy_dtoh(void* dst, const void* src, std::size_t nbytes);
int mmrec_cuda_stream_synchronize(void* stream);
}
