"""torch backend: float64 tensors, a vectorised (cyclic-reduction) tridiagonal solve.

Devices. Every factory takes ``device=`` (``"cpu"`` by default; :class:`mfg_core.backends.Backend`
passes its own), builds its buffers and constants there and returns its results there: on the CPU
as numpy arrays sharing the tensors' memory (no copy), elsewhere as tensors on the device, which the
solvers bring back with :func:`to_host`. :func:`resolve_device` names the devices it accepts.
"""

from __future__ import annotations


def version() -> str:
    import torch

    return torch.__version__


def _found() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return found


def resolve_device(name):
    """The ``torch.device`` called ``name``: ``"cpu"``, or ``"cuda"`` / ``"gpu"`` / ``"cuda:N"`` where
    torch sees a CUDA device. Anything else, or a device this machine does not have, raises
    ``ValueError`` naming it and the devices found (e.g. ``['cpu']`` or ``['cpu', 'cuda:0']``)."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if isinstance(name, str):
        key = name.strip().lower()
        if key == "cpu":
            return torch.device("cpu")
        if torch.cuda.is_available():
            if key in ("cuda", "gpu"):
                return torch.device("cuda", torch.cuda.current_device())
            if key.startswith("cuda:") and key[5:].isdigit() and int(key[5:]) < torch.cuda.device_count():
                return torch.device("cuda", int(key[5:]))
    raise ValueError(f"device {name!r} is not available to torch: found {_found()}")


def to_host(x):
    """A kernel's output on the host: a tensor as a numpy array (copied from the device if it is not on
    the CPU); numpy arrays and anything else pass through."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x
