"""numba backend: ``@njit`` kernels (Thomas algorithm, fused Newton, particle steps)."""

LIBRARY = "numba"
EXTRA = "numba"


def version() -> str:
    import numba

    return numba.__version__
