"""jax backend: float64, ``jax.jit`` over whole sweeps with ``lax.scan`` over time.

Devices. Every factory takes ``device=`` (a name, ``"cpu"`` by default; ``"gpu"``, ``"cuda"`` or
``"cuda:N"`` where jax has a GPU), resolved once by :func:`resolve_device`; the kernel's constants
and each call's inputs are placed on that device (``jax.device_put``) and the jitted sweep runs
there. Outputs stay native: jax arrays on the device, which ``backend.to_host`` (:func:`to_host`)
copies to numpy. On the CPU the buffer of a jax array *is* host memory, so there the kernels hand
back the numpy view of it (:func:`native`, no copy): the 1D contract (plain numpy arrays, which
``tests/backends/test_fdm_backends.py`` checks) holds and ``to_host`` is free.
"""

from __future__ import annotations

import re

import jax
import numpy as np

# Every kernel of this package is float64; jax defaults to float32 unless told otherwise.
jax.config.update("jax_enable_x64", True)

_GPU = re.compile(r"^(gpu|cuda)(?::(?P<index>\d+))?$")
_CPU = re.compile(r"^cpu(?::(?P<index>\d+))?$")


def version() -> str:
    return jax.__version__


def _devices(platform: str) -> list:
    try:
        return list(jax.devices(platform))
    except RuntimeError:  # no such platform in this jax installation / on this machine
        return []


def _found() -> list[str]:
    found = [str(d) for d in jax.devices()]
    found += [str(d) for d in _devices("cpu") if str(d) not in found]
    return found


def resolve_device(name) -> jax.Device:
    """The jax device called ``name``: ``"cpu"`` (or ``"cpu:N"``), ``"gpu"``/``"cuda"`` (the first
    GPU) or ``"cuda:N"``/``"gpu:N"``; a name that is not one of these, or a device this machine does
    not have, is a ``ValueError`` naming it and the devices found."""
    if isinstance(name, jax.Device):
        return name
    match_gpu = _GPU.match(name) if isinstance(name, str) else None
    match_cpu = _CPU.match(name) if isinstance(name, str) else None
    match = match_gpu or match_cpu
    if match is not None:
        devices = _devices("gpu" if match_gpu else "cpu")
        index = int(match.group("index") or 0)
        if index < len(devices):
            return devices[index]
    raise ValueError(f"device {name!r} is not available to jax: found {_found()}")


def to_host(x) -> np.ndarray:
    """A kernel's output as a numpy array (a copy from the device; a view of a CPU buffer)."""
    return np.asarray(jax.device_get(x))


def native(device: jax.Device):
    """How this backend's kernels hand back an output computed on ``device``: the jax array itself
    on an accelerator, its numpy view (no copy) on the CPU (see the module docstring)."""
    if device.platform == "cpu":
        return np.asarray
    return lambda x: x
