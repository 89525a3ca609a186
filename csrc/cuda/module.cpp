// pybind11 bindings of the CUDA extension `mmrec_fast._cuda` (host compiler; kernels come from nvcc
// objects through a C ABI).
#include <pybind11/pybind11.h>

#include <cstddef>
#include <stdexcept>
#include <string>

extern "C" {
int mmrec_cuda_device_count(int* count);
int mmrec_cuda_device_info(int device, char* name, std::size_t name_len, int* major, int* minor);
const char* mmrec_cuda_error_string(int code);
int mmrec_cuda_runtime_version(int* version);
}

namespace py = pybind11;

namespace {

void check(int code, const char* what) {
  if (code != 0) throw std::runtime_error(std::string(what) + ": " + mmrec_cuda_error_string(code));
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

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "mmrec_fast CUDA extension: device discovery (fused GPU kernels arrive with the GPU engine)";
  m.def("device_count", &device_count, "(number of visible CUDA devices, reason when 0)");
  m.def("device_info", &device_info, py::arg("device"), "(name, major, minor) of a device");
  m.def("runtime_version", &runtime_version, "CUDA runtime version the extension was built with");
}
