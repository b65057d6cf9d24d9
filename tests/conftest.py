"""Shared fixtures: a ``backend`` fixture over every registered backend (absent ones skipped)."""

import pytest

from mfg_core import backends

ALL_BACKENDS = backends.names()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Name of each backend in turn; skips those whose library is not installed here."""
    name = request.param
    if name not in backends.available():
        pytest.skip(f"backend {name!r} not installed")
    return name


@pytest.fixture(params=[b for b in ALL_BACKENDS if b != "numpy"])
def accelerated_backend(request):
    """Each non-reference backend (numba, jax, torch), skipped if absent."""
    name = request.param
    if name not in backends.available():
        pytest.skip(f"backend {name!r} not installed")
    return name
