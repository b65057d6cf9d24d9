"""torch backend: float64 tensors, a vectorised (cyclic-reduction) tridiagonal solve."""


def version() -> str:
    import torch

    return torch.__version__
