"""numpy backend: the reference implementation (vectorised over x, LAPACK tridiagonal solves)."""


def version() -> str:
    import numpy

    return numpy.__version__
