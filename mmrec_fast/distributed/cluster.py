"""Connecting to Ray: the embedded local default, or an existing cluster by address.

One machine is the default: when no Ray is running in this process and no address is given (neither
``address=`` nor ``$RAY_ADDRESS``), :func:`init` starts a local Ray with this machine's CPUs. With an
address (``"auto"`` for a cluster started on this machine by ``ray start --head``, or
``"ray://host:10001"`` / ``"host:6379"``) the same code runs on that cluster.
"""

from __future__ import annotations

import os

from ._ray import require_ray

__all__ = ["init", "shutdown", "cluster_cpus", "cluster_gpus", "alive_nodes"]

_started_here = False


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def init(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None, **ray_init_kwargs):
    """Make sure this process is connected to Ray, and return the ``ray`` module.

    Parameters
    ----------
    address : str, optional
        An existing cluster ("auto", "host:6379", "ray://host:10001"). ``None``: ``$RAY_ADDRESS`` if set,
        else a local Ray started here with ``num_cpus`` (default: the CPUs this process may use).
    num_cpus, num_gpus : int, optional
        Resources of the local Ray (only when starting one; a cluster declares its own).
    **ray_init_kwargs
        Passed to ``ray.init`` (e.g. ``runtime_env``, ``object_store_memory``).

    Notes
    -----
    If Ray is already initialised in this process (by the caller or an earlier call) it is reused as is.
    """
    ray = require_ray()
    global _started_here
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray_init_kwargs.setdefault("include_dashboard", False)
    ray_init_kwargs.setdefault("ignore_reinit_error", True)
    if address is None:
        ray.init(num_cpus=num_cpus or _machine_cpus(), num_gpus=num_gpus, **ray_init_kwargs)
        _started_here = True
    else:
        if num_cpus is not None or num_gpus is not None:
            raise ValueError(
                "num_cpus: a cluster declares its own resources; pass num_cpus/num_gpus only "
                "when starting a local Ray (address=None)"
            )
        ray_init_kwargs.pop("include_dashboard")
        ray.init(address=address, **ray_init_kwargs)
    return ray


def shutdown(force: bool = False) -> None:
    """Stop the local Ray this module started (a cluster connection is only disconnected with ``force``)."""
    global _started_here
    ray = require_ray()
    if ray.is_initialized() and (_started_here or force):
        ray.shutdown()
    _started_here = False


def cluster_cpus() -> int:
    """Total CPUs the cluster declares."""
    return int(require_ray().cluster_resources().get("CPU", 0))


def cluster_gpus() -> int:
    """Total GPUs the cluster declares."""
    return int(require_ray().cluster_resources().get("GPU", 0))


def alive_nodes() -> int:
    """Number of alive nodes."""
    return max(1, sum(1 for node in require_ray().nodes() if node.get("Alive")))
