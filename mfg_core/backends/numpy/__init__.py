"""numpy backend: the reference implementation (vectorised over x, LAPACK tridiagonal solves)."""

LIBRARY = None
EXTRA = None


def version() -> str:
    import numpy

    return numpy.__version__
