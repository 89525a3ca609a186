"""The CUDA extension: compiled wherever nvcc exists; GPU checks skip with a reason elsewhere."""

import importlib
import shutil

import pytest


def _cuda_module():
    try:
        return importlib.import_module("mmrec_fast._cuda")
    except ImportError as exc:
        return exc


def test_cuda_extension_built_when_nvcc_present():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH: the CUDA extension is not built on this machine")
    module = _cuda_module()
    assert not isinstance(module, Exception), f"nvcc is present but mmrec_fast._cuda failed: {module}"
    assert module.runtime_version() >= 11000


def test_device_query_never_crashes():
    module = _cuda_module()
    if isinstance(module, Exception):
        pytest.skip(f"CUDA extension not built: {module}")
    count, reason = module.device_count()
    assert count >= 0
    if count == 0:
        assert reason  # says why (no driver / no device)


@pytest.mark.gpu
def test_device_info_on_gpu():
    module = _cuda_module()
    if isinstance(module, Exception):
        pytest.skip(f"CUDA extension not built: {module}")
    count, reason = module.device_count()
    if count == 0:
        pytest.skip(f"no CUDA device: {reason}")
    name, major, minor = module.device_info(0)
    assert name and major >= 5
