"""jax backend: float64, ``jax.jit`` over whole sweeps with ``lax.scan`` over time."""

import jax

# Every kernel of this package is float64; jax defaults to float32 unless told otherwise.
jax.config.update("jax_enable_x64", True)


def version() -> str:
    return jax.__version__
