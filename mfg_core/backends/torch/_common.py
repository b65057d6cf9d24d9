"""What every torch kernel shares: float64, the device, arrays in and results out.

A kernel takes numpy arrays (or tensors) and works on tensors on its device; it returns its results
*native*: on the CPU the numpy arrays that share the tensors' memory (no copy: the 1D kernels have
always returned numpy arrays there), on another device the tensors themselves (``to_host`` copies
them back). Nothing here changes torch's thread settings.
"""

from __future__ import annotations

import numpy as np
import torch

from . import resolve_device

F64 = torch.float64


def device_of(device) -> torch.device:
    """The factory's ``device=`` argument as a ``torch.device`` (raises naming it if absent)."""
    return resolve_device(device)


def on_device(a, device: torch.device) -> torch.Tensor:
    """``a`` (a float64 numpy array or a tensor) as a float64 tensor on ``device``: on the CPU a
    writeable numpy array is shared, not copied (a read-only one is copied: torch would warn)."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=F64)
    a = np.asarray(a, dtype=np.float64)
    if device.type == "cpu":
        return torch.from_numpy(a) if a.flags.writeable else torch.tensor(a)
    return torch.as_tensor(a, dtype=F64, device=device)


def field(name: str, arr, shape: tuple[int, ...], device: torch.device, check) -> torch.Tensor:
    """A checked input field on ``device``: a tensor is checked for its shape here, anything else by
    ``check`` (:func:`mfg_core.backends.checks.field`, the same message)."""
    if isinstance(arr, torch.Tensor):
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")
        return arr.to(device=device, dtype=F64)
    return on_device(check(name, arr, shape), device)


def native(t: torch.Tensor):
    """A result as the kernel returns it: the numpy view on the CPU, the tensor elsewhere."""
    return t.numpy() if t.device.type == "cpu" else t
