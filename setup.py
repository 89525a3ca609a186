"""Build script for mmrec_fast's native extensions.

* ``mmrec_fast._native`` (always): the C++17 CPU engine, bound with pybind11, ``-O3``, OpenMP when the
  compiler accepts ``-fopenmp``. SIMD code paths (AVX-512 / AVX2 / portable) are chosen at run time by
  the extension itself, so one build serves every x86-64 machine; no ``-march=native`` here.
* ``mmrec_fast._cuda`` (only when ``nvcc`` is found): the ``.cu`` files of ``csrc/cuda/`` are compiled
  by ``nvcc`` into plain C-ABI objects and linked, with the static CUDA runtime, into a pybind11 module.
  Whether to build it depends on the compiler's presence, never on a GPU's.

Environment switches
--------------------
MMREC_FAST_BUILD_CUDA   "0" skips the CUDA extension even when nvcc exists; "1" makes a failed CUDA
                        build an error instead of a warning. Unset: build when nvcc is found.
MMREC_FAST_CUDA_ARCHS   semicolon/comma separated compute capabilities, default "80;90"
                        (``-gencode arch=compute_XX,code=sm_XX`` for each, plus PTX for the last).
MMREC_FAST_NO_OPENMP    "1" builds the CPU extension without OpenMP.

Nothing here imports torch or fetches anything from the network. A failed build of an extension
degrades to the other backends at import time (``mmrec_fast.available_backends()`` says why).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def _compiler_accepts(compiler, flag: str) -> bool:
    """Compile (and link) a tiny OpenMP program with ``flag`` to see whether the toolchain supports it."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            objects = compiler.compile([str(src)], output_dir=tmp, extra_postargs=[flag])
            compiler.link_executable(objects, str(Path(tmp) / "probe"), extra_postargs=[flag])
        except Exception:  # any compile/link failure means "not supported"
            return False
    return True


def _cuda_archs() -> list[str]:
    raw = os.environ.get("MMREC_FAST_CUDA_ARCHS", "80;90")
    archs = [a.strip().replace(".", "") for a in raw.replace(",", ";").split(";") if a.strip()]
    if not archs or not all(a.isdigit() for a in archs):
        raise SystemExit(f"MMREC_FAST_CUDA_ARCHS={raw!r}: expected compute capabilities such as '80;90'")
    return archs


class BuildExt(build_ext):
    """build_ext that adds OpenMP when available and compiles CUDA sources with nvcc."""

    def build_extensions(self):
        use_openmp = os.environ.get("MMREC_FAST_NO_OPENMP", "0") != "1" and _compiler_accepts(self.compiler, "-fopenmp")
        for ext in self.extensions:
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
                ext.define_macros.append(("MMREC_FAST_OPENMP", "1"))
        if not use_openmp:
            warnings.warn("mmrec_fast: building the native extension without OpenMP (single-threaded)", stacklevel=2)
        super().build_extensions()

    def build_extension(self, ext):
        if ext.name.endswith("._cuda"):
            try:
                self._compile_cuda_objects(ext)
                super().build_extension(ext)
            except Exception as exc:  # CUDA is optional: never fail the whole install for it
                if os.environ.get("MMREC_FAST_BUILD_CUDA") == "1":
                    raise
                warnings.warn(f"mmrec_fast: CUDA extension not built ({exc}); GPU backends unavailable", stacklevel=2)
            return
        super().build_extension(ext)

    def _compile_cuda_objects(self, ext):
        nvcc = shutil.which("nvcc")
        build_tmp = Path(self.build_temp) / "cuda"
        build_tmp.mkdir(parents=True, exist_ok=True)
        gencode = []
        archs = _cuda_archs()
        for arch in archs:
            gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        gencode += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
        for source in sorted((CSRC / "cuda").glob("*.cu")):
            obj = build_tmp / (source.stem + ".o")
            cmd = [
                nvcc,
                "-c",
                str(source),
                "-o",
                str(obj),
                "-O3",
                "-std=c++17",
                f"-I{CSRC}",
                "-Xcompiler",
                "-fPIC",
                "-Werror",
                "all-warnings",
                *gencode,
            ]
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)
            ext.extra_objects.append(str(obj))
            # setuptools decides whether to relink from sources + depends only; without this a changed
            # kernel is compiled but the module keeps the old one.
            ext.depends.append(str(obj))


def _cuda_home(nvcc: str) -> Path | None:
    """The toolkit root: $CUDA_HOME / $CUDA_PATH, nvcc's own tree, or /usr/local/cuda.

    nvcc on PATH may be a wrapper script (e.g. /usr/local/bin/nvcc exec'ing the real one), so its
    location alone does not tell where the headers and libcudart_static live.
    """
    candidates = [
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        Path(nvcc).resolve().parent.parent,
        "/usr/local/cuda",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "include" / "cuda_runtime.h").is_file():
            return Path(candidate)
    return None


def _cuda_extension() -> list[Pybind11Extension]:
    if os.environ.get("MMREC_FAST_BUILD_CUDA", "") == "0":
        return []
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return []
    cuda_home = _cuda_home(nvcc)
    if cuda_home is None:
        warnings.warn(
            f"mmrec_fast: nvcc found at {nvcc} but no CUDA toolkit headers (set CUDA_HOME); CUDA extension not built",
            stacklevel=2,
        )
        return []
    lib_dirs = [
        d for d in (cuda_home / "lib64", cuda_home / "lib", cuda_home / "targets/x86_64-linux/lib") if d.is_dir()
    ]
    return [
        Pybind11Extension(
            "mmrec_fast._cuda",
            sources=[str(p.relative_to(ROOT)) for p in sorted((CSRC / "cuda").glob("*.cpp"))],
            include_dirs=[str(CSRC), str(cuda_home / "include")],
            library_dirs=[str(d) for d in lib_dirs],
            # The static runtime keeps `import mmrec_fast._cuda` working on machines without libcudart;
            # calls then report "no CUDA driver/device" as Python exceptions.
            libraries=["cudart_static", "dl", "rt", "pthread"],
            depends=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("**/*.h"))],
            cxx_std=17,
            extra_compile_args=["-O3"],
        )
    ]


native = Pybind11Extension(
    "mmrec_fast._native",
    sources=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp")) + sorted((CSRC / "cpu").glob("*.cpp"))],
    include_dirs=[str(CSRC)],
    # Headers too: an edited header must rebuild the module (setuptools only compares these files).
    depends=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("**/*.h"))],
    cxx_std=17,
    # -ffp-contract=off: the SIMD and scalar paths are written to be bitwise identical (explicit FMAs
    # only), which needs the compiler not to fuse a separate multiply and add on its own.
    extra_compile_args=["-O3", "-fno-math-errno", "-ffp-contract=off", "-Wall", "-Wextra"],
)

setup(ext_modules=[native, *_cuda_extension()], cmdclass={"build_ext": BuildExt})
