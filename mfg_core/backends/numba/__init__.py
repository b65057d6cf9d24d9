"""numba backend: ``@njit`` kernels (Thomas algorithm, fused Newton, particle steps)."""


def version() -> str:
    import numba

    return numba.__version__
