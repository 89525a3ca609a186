// pybind11 bindings of the CUDA extension `mmrec_fast._cuda` (host compiler; kernels come from nvcc
// objects through a C ABI, so this file needs no CUDA headers).
//
// Device arrays arrive as raw pointers (ints) from torch (`data_ptr()`), CuPy (`.data.ptr`) or a
// DeviceBuffer, with the stream to run on; host NumPy arrays go through DeviceBuffer uploads. Every
// CUDA error becomes a Python exception (RuntimeError; ValueError for an unsupported k).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/cuda_abi.h"

namespace py = pybind11;

namespace {

void check(int code, const char* what) {
    if (code != 0) throw std::runtime_error(std::string(what) + ": " + mmrec_cuda_topk_error_string(code));
}

template <typename T>
T* as_ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

// (count, reason): count 0 with the runtime's reason when there is no usable driver or device.
py::tuple device_count() {
    int count = 0;
    int code = mmrec_cuda_device_count(&count);
    if (code != 0) return py::make_tuple(0, std::string(mmrec_cuda_error_string(code)));
    return py::make_tuple(count, std::string(count ? "" : "no CUDA device"));
}

py::tuple device_info(int device) {
    char name[256];
    int major = 0, minor = 0;
    check(mmrec_cuda_device_info(device, name, sizeof(name), &major, &minor), "cudaGetDeviceProperties");
    return py::make_tuple(std::string(name), major, minor);
}

int runtime_version() {
    int version = 0;
    check(mmrec_cuda_runtime_version(&version), "cudaRuntimeGetVersion");
    return version;
}

// Owning device allocation (cudaMalloc / cudaFree) for host inputs and persistent item indexes.
class DeviceBuffer {
  public:
    DeviceBuffer(std::size_t nbytes, int device) : nbytes_(nbytes), device_(device) {
        void* ptr = nullptr;
        check(mmrec_cuda_malloc(&ptr, nbytes, device), "cudaMalloc");
        ptr_ = ptr;
    }
    ~DeviceBuffer() {
        if (ptr_) mmrec_cuda_free(ptr_);  // destructors must not throw; a failed free leaks, nothing worse
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void upload(py::array array) {
        py::buffer_info info = array.request();
        const std::size_t n = static_cast<std::size_t>(info.size) * static_cast<std::size_t>(info.itemsize);
        if (!(array.flags() & py::array::c_style)) throw std::invalid_argument("upload: array must be C-contiguous");
        if (n > nbytes_) throw std::invalid_argument("upload: array larger than the buffer");
        if (n == 0) return;
        py::gil_scoped_release release;
        check(mmrec_cuda_memcpy_htod(ptr_, info.ptr, n), "cudaMemcpy (host to device)");
    }

    void download(py::array array) {
        py::buffer_info info = array.request(true);
        const std::size_t n = static_cast<std::size_t>(info.size) * static_cast<std::size_t>(info.itemsize);
        if (!(array.flags() & py::array::c_style)) throw std::invalid_argument("download: array must be C-contiguous");
        if (n > nbytes_) throw std::invalid_argument("download: array larger than the buffer");
        if (n == 0) return;
        py::gil_scoped_release release;
        check(mmrec_cuda_memcpy_dtoh(info.ptr, ptr_, n), "cudaMemcpy (device to host)");
    }

    std::uintptr_t ptr() const { return reinterpret_cast<std::uintptr_t>(ptr_); }
    std::size_t nbytes() const { return nbytes_; }
    int device() const { return device_; }

  private:
    void* ptr_ = nullptr;
    std::size_t nbytes_;
    int device_;
};

// Version of the argument lists below: 2 added `item_mask` and `normalizer` (the Python side refuses an older build).
constexpr int kAbiVersion = 2;

// Fused top-k on device pointers (users and items of one element type, see `dtype`). `item_mask`: device bytes, one
// per item (0 = ineligible for every user), or 0 for none; `normalizer` false skips the exp work (out_lse becomes
// NaN). Sizes and validity are the caller's (mmrec_fast.backends.cuda_backend) responsibility; the launcher
// re-checks what it can and reports the rest as errors.
void topk(std::uintptr_t users, long long n_users, std::uintptr_t items, long long n_items, int dim, int dtype, int k,
          float inv_temperature, std::uintptr_t excl_indptr, std::uintptr_t excl_indices, std::uintptr_t item_mask,
          bool normalizer, int capacity, long long workspace_bytes, std::uintptr_t out_indices,
          std::uintptr_t out_scores, std::uintptr_t out_lse, int device, std::uintptr_t stream, bool synchronize) {
    if (dtype < 0 || dtype > 2) throw py::value_error("dtype: 0 (float32), 1 (float16) or 2 (bfloat16)");
    if (k < 1 || k > mmrec_cuda_max_k() || k > n_items)
        throw py::value_error("k: the CUDA kernel needs 1 <= k <= min(I, " + std::to_string(mmrec_cuda_max_k()) +
                              "), got k=" + std::to_string(k) + " with I=" + std::to_string(n_items));
    int code;
    {
        py::gil_scoped_release release;
        code = mmrec_cuda_topk(as_ptr<const void>(users), n_users, as_ptr<const void>(items), n_items, dim, dtype, k,
                               inv_temperature, as_ptr<const long long>(excl_indptr),
                               as_ptr<const long long>(excl_indices), as_ptr<const std::uint8_t>(item_mask),
                               normalizer ? 1 : 0, capacity, workspace_bytes, as_ptr<long long>(out_indices),
                               as_ptr<float>(out_scores), as_ptr<double>(out_lse), device, as_ptr<void>(stream));
        if (code == 0 && synchronize) code = mmrec_cuda_stream_synchronize(as_ptr<void>(stream));
    }
    check(code, "mmrec_fast CUDA top-k");
}

// Tensor-core path (topk_mma.cu): as `topk` plus `precision` (0 native 16-bit; float32: 1 bf16, 2 bf16x3,
// 3 bf16x6, 4 tf32). The Python side (cuda_backend.py) maps names to codes and validates them.
void topk_mma(std::uintptr_t users, long long n_users, std::uintptr_t items, long long n_items, int dim, int dtype,
              int precision, int k, float inv_temperature, std::uintptr_t excl_indptr, std::uintptr_t excl_indices,
              std::uintptr_t item_mask, bool normalizer, int capacity, long long workspace_bytes,
              std::uintptr_t out_indices, std::uintptr_t out_scores, std::uintptr_t out_lse, int device,
              std::uintptr_t stream, bool synchronize) {
    if (k < 1 || k > mmrec_cuda_max_k() || k > n_items)
        throw py::value_error("k: the CUDA kernel needs 1 <= k <= min(I, " + std::to_string(mmrec_cuda_max_k()) +
                              "), got k=" + std::to_string(k) + " with I=" + std::to_string(n_items));
    int code;
    {
        py::gil_scoped_release release;
        code = mmrec_cuda_topk_mma(as_ptr<const void>(users), n_users, as_ptr<const void>(items), n_items, dim, dtype,
                                   precision, k, inv_temperature, as_ptr<const long long>(excl_indptr),
                                   as_ptr<const long long>(excl_indices), as_ptr<const std::uint8_t>(item_mask),
                                   normalizer ? 1 : 0, capacity, workspace_bytes, as_ptr<long long>(out_indices),
                                   as_ptr<float>(out_scores), as_ptr<double>(out_lse), device, as_ptr<void>(stream));
        if (code == 0 && synchronize) code = mmrec_cuda_stream_synchronize(as_ptr<void>(stream));
    }
    if (code != 0)
        throw std::runtime_error(std::string("mmrec_fast CUDA top-k (tensor cores): ") +
                                 mmrec_cuda_mma_error_string(code));
}

py::tuple plan(long long n_users, long long n_items, int k, int capacity, int sm_count, long long workspace_bytes) {
    int shards = 0;
    long long shard_len = 0, batch = 0;
    check(mmrec_cuda_topk_plan(n_users, n_items, k, capacity, sm_count, workspace_bytes, &shards, &shard_len, &batch),
          "plan");
    return py::make_tuple(shards, shard_len, batch);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "mmrec_fast CUDA extension: device discovery and the fused top-k + logsumexp kernel";
    m.def("device_count", &device_count, "(number of visible CUDA devices, reason when 0)");
    m.def("device_info", &device_info, py::arg("device"), "(name, major, minor) of a device");
    m.def("runtime_version", &runtime_version, "CUDA runtime version the extension was built with");
    m.def("max_k", &mmrec_cuda_max_k, "Largest k the fused kernel supports");
    m.def(
        "abi_version", [] { return kAbiVersion; },
        "Version of the topk / topk_mma argument lists (2: item_mask and normalizer)");
    m.def("plan", &plan, py::arg("n_users"), py::arg("n_items"), py::arg("k"), py::arg("capacity"), py::arg("sm_count"),
          py::arg("workspace_bytes"), "(item shards, items per shard, users per launch) the launcher would use");
    m.def("topk", &topk, py::arg("users"), py::arg("n_users"), py::arg("items"), py::arg("n_items"), py::arg("dim"),
          py::arg("dtype"), py::arg("k"), py::arg("inv_temperature"), py::arg("excl_indptr"), py::arg("excl_indices"),
          py::arg("item_mask"), py::arg("normalizer"), py::arg("capacity"), py::arg("workspace_bytes"),
          py::arg("out_indices"), py::arg("out_scores"), py::arg("out_lse"), py::arg("device"), py::arg("stream"),
          py::arg("synchronize"),
          "Fused top-k + log-normaliser on device pointers (row-major users/items of one dtype: 0 float32 "
          "SIMT, 1 float16 / 2 bfloat16 tensor cores; int64 CSR; uint8 item mask or 0; outputs int64 / float32 / "
          "float64, the log-normaliser NaN when `normalizer` is false), enqueued on `stream` of `device`");
    m.def("topk_mma", &topk_mma, py::arg("users"), py::arg("n_users"), py::arg("items"), py::arg("n_items"),
          py::arg("dim"), py::arg("dtype"), py::arg("precision"), py::arg("k"), py::arg("inv_temperature"),
          py::arg("excl_indptr"), py::arg("excl_indices"), py::arg("item_mask"), py::arg("normalizer"),
          py::arg("capacity"), py::arg("workspace_bytes"), py::arg("out_indices"), py::arg("out_scores"),
          py::arg("out_lse"), py::arg("device"), py::arg("stream"), py::arg("synchronize"),
          "Fused top-k + log-normaliser on tensor cores (mma.sync): as `topk` plus `precision` (0 native 16-bit "
          "inputs; float32 inputs: 1 bf16, 2 bf16x3, 3 bf16x6, 4 tf32)");
    m.def("mma_smem_bytes", &mmrec_cuda_mma_smem_bytes, py::arg("dim"), py::arg("precision"),
          "Dynamic shared memory (bytes) the tensor-core kernel needs for `dim` at `precision`");
    py::class_<DeviceBuffer>(m, "DeviceBuffer", "An owned cudaMalloc allocation (freed with the object)")
        .def(py::init<std::size_t, int>(), py::arg("nbytes"), py::arg("device"))
        .def("upload", &DeviceBuffer::upload, py::arg("array"), "Copy a C-contiguous host array in (synchronous)")
        .def("download", &DeviceBuffer::download, py::arg("array"), "Copy into a C-contiguous host array (synchronous)")
        .def_property_readonly("ptr", &DeviceBuffer::ptr)
        .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
        .def_property_readonly("device", &DeviceBuffer::device);
}
