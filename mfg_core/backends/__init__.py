"""Backend registry: backends are registered by import path and imported only when asked for.

``get_backend("numba")`` imports numba at that moment; ``import mfg_core`` with only numpy installed
works. A backend whose library is missing raises :class:`BackendUnavailableError` naming the pip
extra to install. There is no fallback: the backend asked for is the backend that runs.
"""

from __future__ import annotations

import importlib

from .base import Backend, BackendUnavailableError

#: name -> (package path, library import name or None, pip extra)
REGISTRY: dict[str, tuple[str, str | None, str | None]] = {
    "numpy": ("mfg_core.backends.numpy", None, None),
    "numba": ("mfg_core.backends.numba", "numba", "numba"),
    "jax": ("mfg_core.backends.jax", "jax", "jax"),
    "torch": ("mfg_core.backends.torch", "torch", "torch"),
}

_CACHE: dict[tuple[str, str], Backend] = {}
#: the backends whose kernels take a ``device`` (their package has ``resolve_device``)
DEVICE_BACKENDS = ("jax", "torch")

__all__ = ["Backend", "BackendUnavailableError", "REGISTRY", "names", "available", "get_backend"]


def names() -> list[str]:
    """All registered backend names, installed or not."""
    return list(REGISTRY)


def _check_library(name: str) -> None:
    _, library, extra = REGISTRY[name]
    if library is None:
        return
    try:
        importlib.import_module(library)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} needs the package {library!r}, which is not installed ({exc}). "
            f"Install it with: pip install 'mfg-core[{extra}]' (or 'mfg-core[all]')"
        ) from exc


def available() -> list[str]:
    """Names of the backends whose library can be imported here."""
    out = []
    for name in REGISTRY:
        try:
            _check_library(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out


def get_backend(name: str | Backend | None = "numpy", device: str | None = None) -> Backend:
    """Return the backend called ``name`` (``None`` means numpy; a Backend is returned as is) on
    ``device`` (``None``: the CPU).

    Raises ``ValueError`` for an unknown name, or a device the backend cannot use or this machine
    does not have (naming the device and what was found), and :class:`BackendUnavailableError` when
    the backend's library is not installed.
    """
    if isinstance(name, Backend):
        if device is not None and device != name.device:
            return get_backend(name.name, device)
        return name
    if name is None:
        name = "numpy"
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(REGISTRY)}")
    _check_library(name)  # checked every time: a library can vanish (tests simulate that)
    device = "cpu" if device is None else device
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a name such as 'cpu' or 'cuda', got {device!r}")
    backend = _CACHE.get((name, device))
    if backend is None:
        package, library, extra = REGISTRY[name]
        module = importlib.import_module(package)
        resolve = getattr(module, "resolve_device", None)
        if resolve is None:
            if device != "cpu":
                raise ValueError(f"backend {name!r} runs on the CPU only, got device={device!r} (devices are for "
                                 f"{[n for n in REGISTRY if n in DEVICE_BACKENDS]})")
        else:
            resolve(device)  # raises naming the device and the devices found
        backend = Backend(name, package, library, extra, device)
        _CACHE[(name, device)] = backend
    return backend
