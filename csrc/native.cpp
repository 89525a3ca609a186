// pybind11 bindings of the CPU engine: module mmrec_fast._native.
//
// Only memory safety is checked here (dtypes, shapes, contiguity, writability of the arrays handed
// over); user-facing validation happens in Python. Violations raise ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#include "cpu/int8_quant.h"
#include "cpu/topk.h"

namespace py = pybind11;

namespace {

template <typename T>
void check_array(const py::array& arr, const char* name, std::initializer_list<int64_t> shape, bool writable) {
    if (!arr.dtype().equal(py::dtype::of<T>()))  // equal, not is: unpickled arrays carry their own dtype object
        throw std::invalid_argument(std::string(name) + ": wrong dtype " + std::string(py::str(arr.dtype())));
    if (arr.ndim() != static_cast<py::ssize_t>(shape.size()))
        throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(shape.size()) +
                                    " dimensions, got " + std::to_string(arr.ndim()));
    int axis = 0;
    for (int64_t extent : shape) {
        if (extent >= 0 && arr.shape(axis) != extent)
            throw std::invalid_argument(std::string(name) + ": axis " + std::to_string(axis) + " has length " +
                                        std::to_string(arr.shape(axis)) + ", expected " + std::to_string(extent));
        ++axis;
    }
    if (!(arr.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
    if (writable && !arr.writeable()) throw std::invalid_argument(std::string(name) + ": must be writeable");
}

py::array pack_items(const py::array& items, int num_threads) {
    check_array<float>(items, "items", {-1, -1}, false);
    const int64_t n_items = items.shape(0), d = items.shape(1);
    const int64_t n = mmrec::packed_size(n_items, d);
    // 64-byte aligned storage owned by a capsule.
    void* mem = ::operator new(static_cast<size_t>(n > 0 ? n : 1) * sizeof(float), std::align_val_t{64});
    py::capsule owner(mem, [](void* p) { ::operator delete(p, std::align_val_t{64}); });
    py::array_t<float> out({static_cast<py::ssize_t>(n)}, {static_cast<py::ssize_t>(sizeof(float))},
                           static_cast<float*>(mem), owner);
    const float* src = static_cast<const float*>(items.data());
    {
        py::gil_scoped_release release;
        mmrec::pack_items(src, n_items, d, static_cast<float*>(mem), num_threads);
    }
    return out;
}

void topk(const py::array& users, const py::array& packed, int64_t n_items, int64_t k, double inv_temperature,
          const py::array& excl_indptr, const py::array& excl_indices, int64_t user_block, int64_t item_block,
          int64_t capacity, int num_threads, py::array out_indices, py::array out_scores, py::array out_lse,
          const py::object& item_mask, bool normalizer) {
    check_array<float>(users, "users", {-1, -1}, false);
    const int64_t n_users = users.shape(0), d = users.shape(1);
    if (n_items < 0) throw std::invalid_argument("n_items must be >= 0");
    if (k < 1) throw std::invalid_argument("k must be >= 1");
    // `packed`: the 1-D output of pack_items, or the (n_items, d) row-major items themselves (packed
    // block by block on the fly: no full copy).
    const bool is_packed = packed.ndim() == 1;
    if (is_packed)
        check_array<float>(packed, "packed", {mmrec::packed_size(n_items, d)}, false);
    else
        check_array<float>(packed, "packed", {n_items, d}, false);
    check_array<int64_t>(excl_indptr, "excl_indptr", {n_users + 1}, false);
    check_array<int64_t>(excl_indices, "excl_indices", {-1}, false);
    check_array<int64_t>(out_indices, "out_indices", {n_users, k}, true);
    check_array<float>(out_scores, "out_scores", {n_users, k}, true);
    check_array<double>(out_lse, "out_lse", {n_users}, true);
    if (num_threads < 0) throw std::invalid_argument("num_threads must be >= 0");
    const uint8_t* mask = nullptr;
    if (!item_mask.is_none()) {
        if (!py::isinstance<py::array>(item_mask)) throw std::invalid_argument("item_mask: expected a NumPy array");
        const py::array mask_arr = py::reinterpret_borrow<py::array>(item_mask);
        check_array<uint8_t>(mask_arr, "item_mask", {n_items}, false);
        mask = static_cast<const uint8_t*>(mask_arr.data());
    }

    const int64_t* indptr = static_cast<const int64_t*>(excl_indptr.data());
    const int64_t nnz = excl_indices.shape(0);
    if (indptr[0] < 0 || indptr[n_users] > nnz)
        throw std::invalid_argument("excl_indptr: row pointers outside [0, len(excl_indices)]");
    for (int64_t u = 0; u < n_users; ++u)
        if (indptr[u + 1] < indptr[u]) throw std::invalid_argument("excl_indptr: must be non-decreasing");

    mmrec::TopkArgs a;
    a.users = static_cast<const float*>(users.data());
    a.n_users = n_users;
    a.packed = is_packed ? static_cast<const float*>(packed.data()) : nullptr;
    a.items = is_packed ? nullptr : static_cast<const float*>(packed.data());
    a.n_items = n_items;
    a.d = d;
    a.k = k;
    // One rounding from the double 1 / temperature (the Python layer keeps it within float32 range).
    a.inv_temperature = inv_temperature;
    const double scale2 = 1.4426950408889634 * inv_temperature;
    if (!(inv_temperature > 0.0) || !std::isfinite(inv_temperature) || !std::isfinite(static_cast<float>(scale2)))
        throw std::invalid_argument("temperature: log2(e) / temperature must be a positive, finite float32");
    // At temperatures past ~1e38 the float32 scale would round to 0 (and -inf * 0 to NaN): keep it at
    // the smallest normal float32; the double remainder below puts the difference back.
    a.log2e_over_temperature = std::max(static_cast<float>(scale2), std::numeric_limits<float>::min());
    a.log2e_over_temperature_lo = scale2 - double(a.log2e_over_temperature);
    a.excl_indptr = indptr;
    a.excl_indices = static_cast<const int64_t*>(excl_indices.data());
    a.item_mask = mask;
    a.normalizer = normalizer;
    a.user_block = user_block;
    a.item_block = item_block;
    a.capacity = capacity;
    a.num_threads = num_threads;
    a.out_indices = static_cast<int64_t*>(out_indices.mutable_data());
    a.out_scores = static_cast<float*>(out_scores.mutable_data());
    a.out_lse = static_cast<double*>(out_lse.mutable_data());
    const mmrec::KernelOps& ops = mmrec::kernel_ops(mmrec::active_simd_level());  // may throw (env var)
    py::gil_scoped_release release;
    mmrec::topk(a, ops);
}

// ---- int8 first pass (csrc/cpu/int8_quant.h) ----
py::tuple int8_prepare(const py::array& items, int num_threads) {
    check_array<float>(items, "items", {-1, -1}, false);
    const int64_t n_items = items.shape(0), d = items.shape(1);
    if (d < 1 || d > mmrec::kI8MaxDim) throw std::invalid_argument("items: the int8 path needs 1 <= d <= 65536");
    const int64_t padded = (n_items + mmrec::kI8Panel - 1) / mmrec::kI8Panel * mmrec::kI8Panel;
    py::array_t<int8_t> panels({static_cast<py::ssize_t>(mmrec::int8_panel_bytes(n_items, d))});
    py::array_t<float> scale({static_cast<py::ssize_t>(padded)});
    py::array_t<float> resid({static_cast<py::ssize_t>(n_items)});
    py::array_t<float> norm({static_cast<py::ssize_t>(n_items)});
    const float* src = static_cast<const float*>(items.data());
    int8_t* pp = panels.mutable_data();
    float *sp = scale.mutable_data(), *rp = resid.mutable_data(), *np_ = norm.mutable_data();
    {
        py::gil_scoped_release release;
        mmrec::int8_prepare(src, n_items, d, pp, sp, rp, np_, num_threads);
    }
    return py::make_tuple(panels, scale, resid, norm);
}

void int8_topk(const py::array& users, const py::array& panels, const py::array& scale, const py::array& resid,
               const py::array& norm, const py::array& items, int64_t k, double inv_temperature,
               const py::array& excl_indptr, const py::array& excl_indices, const py::object& item_mask,
               bool normalizer, int64_t user_block, int64_t item_block, int num_threads, py::array out_indices,
               py::array out_scores, py::array out_lse, py::array out_lse_bound, py::array out_stats) {
    check_array<float>(users, "users", {-1, -1}, false);
    const int64_t n_users = users.shape(0), d = users.shape(1);
    check_array<float>(items, "items", {-1, d}, false);
    const int64_t n_items = items.shape(0);
    const int64_t padded = (n_items + mmrec::kI8Panel - 1) / mmrec::kI8Panel * mmrec::kI8Panel;
    check_array<int8_t>(panels, "panels", {mmrec::int8_panel_bytes(n_items, d)}, false);
    check_array<float>(scale, "scale", {padded}, false);
    check_array<float>(resid, "resid", {n_items}, false);
    check_array<float>(norm, "norm", {n_items}, false);
    if (k < 1) throw std::invalid_argument("k must be >= 1");
    check_array<int64_t>(excl_indptr, "excl_indptr", {n_users + 1}, false);
    check_array<int64_t>(excl_indices, "excl_indices", {-1}, false);
    const uint8_t* mask = nullptr;
    if (!item_mask.is_none()) {
        const py::array m = item_mask.cast<py::array>();
        check_array<uint8_t>(m, "item_mask", {n_items}, false);
        mask = static_cast<const uint8_t*>(m.data());
    }
    check_array<int64_t>(out_indices, "out_indices", {n_users, k}, true);
    check_array<float>(out_scores, "out_scores", {n_users, k}, true);
    check_array<double>(out_lse, "out_lse", {n_users}, true);
    check_array<double>(out_lse_bound, "out_lse_bound", {n_users}, true);
    check_array<int64_t>(out_stats, "out_stats", {2}, true);
    if (num_threads < 0) throw std::invalid_argument("num_threads must be >= 0");
    if (user_block < 1 || item_block < 1) throw std::invalid_argument("block sizes must be >= 1");
    const int64_t* indptr = static_cast<const int64_t*>(excl_indptr.data());
    const int64_t nnz = excl_indices.shape(0);
    if (indptr[0] < 0 || indptr[n_users] > nnz)
        throw std::invalid_argument("excl_indptr: row pointers outside [0, len(excl_indices)]");
    for (int64_t u = 0; u < n_users; ++u)
        if (indptr[u + 1] < indptr[u]) throw std::invalid_argument("excl_indptr: must be non-decreasing");

    mmrec::Int8TopkArgs a;
    a.users = static_cast<const float*>(users.data());
    a.n_users = n_users;
    a.panels = static_cast<const int8_t*>(panels.data());
    a.scale = static_cast<const float*>(scale.data());
    a.resid = static_cast<const float*>(resid.data());
    a.norm = static_cast<const float*>(norm.data());
    a.items = static_cast<const float*>(items.data());
    a.n_items = n_items;
    a.d = d;
    a.k = k;
    a.inv_temperature = inv_temperature;
    const double scale2 = 1.4426950408889634 * inv_temperature;
    if (!(inv_temperature > 0.0) || !std::isfinite(inv_temperature) || !std::isfinite(static_cast<float>(scale2)))
        throw std::invalid_argument("temperature: log2(e) / temperature must be a positive, finite float32");
    a.log2e_over_temperature = std::max(static_cast<float>(scale2), std::numeric_limits<float>::min());
    a.log2e_over_temperature_lo = scale2 - double(a.log2e_over_temperature);
    a.excl_indptr = indptr;
    a.excl_indices = static_cast<const int64_t*>(excl_indices.data());
    a.item_mask = mask;
    a.normalizer = normalizer;
    a.num_threads = num_threads;
    a.user_block = user_block;
    a.item_block = item_block;
    a.out_indices = static_cast<int64_t*>(out_indices.mutable_data());
    a.out_scores = static_cast<float*>(out_scores.mutable_data());
    a.out_lse = static_cast<double*>(out_lse.mutable_data());
    a.out_lse_bound = static_cast<double*>(out_lse_bound.mutable_data());
    a.out_stats = static_cast<int64_t*>(out_stats.mutable_data());
    const mmrec::Int8Ops& ops = mmrec::int8_active_ops();  // may throw (env var)
    py::gil_scoped_release release;
    mmrec::int8_topk(a, ops);
}

// A deliberately wrong kernel (tile off by one ulp): proves in tests that the self-check can fail.
const mmrec::Int8Ops& int8_broken_ops() {
    static const mmrec::Int8Ops ops{
        mmrec::Int8Level::Avx2, "broken",
        [](const int8_t* uq, int64_t ldu, const float* su, const int32_t* usum, int64_t n_rows, const int8_t* panels,
           const float* sv, int64_t n_panels, int64_t d4, float* c, int64_t ldc) {
            mmrec::int8_kernels_scalar().tile_approx(uq, ldu, su, usum, n_rows, panels, sv, n_panels, d4, c, ldc);
            c[ldc + 5] = std::nextafter(c[ldc + 5], std::numeric_limits<float>::infinity());
        },
        mmrec::int8_kernels_scalar().rescore, mmrec::int8_kernels_scalar().filter};
    return ops;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "mmrec_fast C++ CPU engine: blocked float32 top-k with an online log-sum-exp.";
    // std::invalid_argument thrown by the checks surfaces as ValueError (pybind11's default translation).

    m.attr("PANEL") = mmrec::kPanel;

    m.def(
        "simd_level", [] { return std::string(mmrec::simd_level_name(mmrec::active_simd_level())); },
        "SIMD path the next call uses: 'avx512', 'avx2' or 'scalar' (honours MMREC_FAST_SIMD).");
    m.def(
        "best_simd_level", [] { return std::string(mmrec::simd_level_name(mmrec::best_simd_level())); },
        "Best SIMD path this CPU supports (ignores MMREC_FAST_SIMD).");
    m.def("supported_simd_levels", &mmrec::supported_simd_levels, "SIMD paths this CPU can run, best first.");
    m.def("openmp_enabled", &mmrec::openmp_enabled, "Whether the extension was built with OpenMP.");
    m.def("max_threads", &mmrec::max_threads, "OpenMP's default thread count (1 without OpenMP).");
    m.def("packed_size", &mmrec::packed_size, py::arg("n_items"), py::arg("d"),
          "Length (float32 elements) of the packed item array.");
    m.def(
        "item_shards",
        [](int64_t n_users, int64_t n_items, int64_t k, int64_t item_block) {
            return mmrec::item_shards(n_users, n_items, k, item_block, nullptr);
        },
        py::arg("n_users"), py::arg("n_items"), py::arg("k"), py::arg("item_block"),
        "How many item shards topk() splits the catalogue into for these sizes (1: none). Depends only\n"
        "on the arguments, never on the thread count.");
    m.def("threshold_guess_rank", &mmrec::threshold_guess_rank, py::arg("n_users"), py::arg("n_items"), py::arg("k"),
          py::arg("item_block"),
          "Rank in the strided item sample whose score starts each user's threshold for these sizes (0: no\n"
          "guess). Results never depend on it.");
    m.def("pack_items", &pack_items, py::arg("items"), py::arg("num_threads") = 0,
          "Pack a float32 C-contiguous (I, d) matrix into 16-item panels [panel][d][16] (zero padded);\n"
          "returns a 1-D 64-byte aligned float32 array of packed_size(I, d) elements.");
    m.def("topk", &topk, py::arg("users"), py::arg("packed"), py::arg("n_items"), py::arg("k"),
          py::arg("inv_temperature"), py::arg("excl_indptr"), py::arg("excl_indices"), py::arg("user_block"),
          py::arg("item_block"), py::arg("capacity"), py::arg("num_threads"), py::arg("out_indices"),
          py::arg("out_scores"), py::arg("out_lse"), py::arg("item_mask") = py::none(), py::arg("normalizer") = true,
          "Blocked top-k + log-sum-exp per the kernel contract of mmrec_fast.backends.base; fills the\n"
          "out_* arrays. `packed` is pack_items' 1-D output, or the (n_items, d) float32 C-contiguous\n"
          "items themselves (then packed block by block on the fly, no full copy). `item_mask`: None or\n"
          "uint8 (n_items,), 0 = never eligible; normalizer=False skips the exp-sum (out_lse left -inf).\n"
          "Releases the GIL.");

    m.def("int8_supported_levels", &mmrec::int8_supported_levels,
          "int8 kernels this CPU runs whose self-check passed, best first.");
    m.def(
        "int8_level", [] { return std::string(mmrec::int8_active_ops().name); },
        "int8 kernel the next call uses (honours MMREC_FAST_SIMD: 'avx512' allows 'avx512vnni').");
    m.def("int8_self_check_failures", &mmrec::int8_self_check_failures,
          "Messages of int8 kernels disabled because their self-check disagreed with the scalar kernel.");
    m.def(
        "int8_self_check",
        [](const std::string& level) {
            if (level == "broken") return mmrec::int8_self_check(int8_broken_ops());
            if (level == "scalar") return mmrec::int8_self_check(mmrec::int8_kernels_scalar());
            if (level == "avx2") return mmrec::int8_self_check(mmrec::int8_kernels_avx2());
            if (level == "avx512vnni") return mmrec::int8_self_check(mmrec::int8_kernels_avx512vnni());
            throw std::invalid_argument("level: unknown int8 level " + level);
        },
        py::arg("level"),
        "Run one int8 level's self-check (the CPU must support it); 'broken' is a deliberately wrong kernel.");
    m.def("int8_prepare", &int8_prepare, py::arg("items"), py::arg("num_threads") = 0,
          "Quantise (I, d) float32 items: (panels int8, scale float32 padded to 16, resid, norm float32).");
    m.def("int8_topk", &int8_topk, py::arg("users"), py::arg("panels"), py::arg("scale"), py::arg("resid"),
          py::arg("norm"), py::arg("items"), py::arg("k"), py::arg("inv_temperature"), py::arg("excl_indptr"),
          py::arg("excl_indices"), py::arg("item_mask"), py::arg("normalizer"), py::arg("user_block"),
          py::arg("item_block"), py::arg("num_threads"), py::arg("out_indices"), py::arg("out_scores"),
          py::arg("out_lse"), py::arg("out_lse_bound"), py::arg("out_stats"),
          "Certified int8 first pass + exact float32 rescoring (csrc/cpu/int8_topk.cpp). Releases the GIL.");
}
