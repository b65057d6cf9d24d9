"""The errors the solvers raise (one module, so that every layer names them the same way)."""


class ConvergenceError(RuntimeError):
    """An inner solve (Newton) failed to converge, or an iterate became non-finite.

    Inside a fixed-point iteration the loop sets ``iteration`` (and adds it as a note).
    """

    iteration: int | None = None


class NonFiniteError(ConvergenceError):
    """A solve produced NaN or inf, or the coupling is not finite for the density it was given.

    Inside a fixed-point iteration this is divergence: the loop re-raises it as
    :class:`DivergenceError` naming the iteration.
    """


class DivergenceError(ConvergenceError):
    """The fixed-point iterate became NaN or inf; ``iteration`` says at which iteration."""

    def __init__(self, message: str, iteration: int | None = None):
        super().__init__(message)
        if iteration is not None:
            self.iteration = iteration
