"""What a workflow job needs around its work: its log, and the one thread policy."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def job_log(path: str | os.PathLike, *, level: int = logging.INFO) -> Iterator[Any]:
    """Send the ``mfg_core`` logger (iteration progress, at INFO) and Python warnings to ``path``.

    Each attempt of a job starts its log afresh (a retried job's log is that attempt's alone).
    Yields the logger to use for the job's own messages. The file is line-buffered, so ``tail -f``
    on a running job's log shows each iteration as it finishes.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.StreamHandler(open(path, "w", buffering=1, encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger("mfg_core"), logging.getLogger("py.warnings")]
    old = [lg.level for lg in loggers]
    logging.captureWarnings(True)
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(level)
    job = logging.getLogger("mfg_study.job")
    job.addHandler(handler)
    job.setLevel(level)
    try:
        yield job
    except BaseException:
        job.exception("job failed")
        raise
    finally:
        logging.captureWarnings(False)
        for lg, lvl in zip(loggers, old):
            lg.removeHandler(handler)
            lg.setLevel(lvl)
        job.removeHandler(handler)
        handler.close()


def use_caches(cache_dir: str | os.PathLike) -> Path:
    """Make JIT work persist under ``cache_dir``: numba's on-disk cache (``NUMBA_CACHE_DIR``) and
    jax's persistent compilation cache (every compilation kept, however short). Call it before
    numba or jax is imported. Both write their entries atomically, so parallel jobs may share them."""
    root = Path(cache_dir).absolute()
    (root / "numba").mkdir(parents=True, exist_ok=True)
    (root / "jax").mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(root / "numba")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(root / "jax")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    if "jax" in sys.modules:  # imported already: its config, not the environment, counts now
        jax = importlib.import_module("jax")
        jax.config.update("jax_compilation_cache_dir", str(root / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return root


def set_threads(threads: int) -> int:
    """The one thread policy: every library a job uses runs on ``threads`` threads.

    Call it first thing in a job (before numba or torch are imported where possible). It sets the
    variables numba (``NUMBA_NUM_THREADS``, read once at import), OpenMP/torch and BLAS read, and
    calls ``torch.set_num_threads`` / ``numba.set_num_threads`` for libraries already imported. The
    kernels themselves never change thread settings. XLA (jax) has no stable thread-count flag, so
    jax is left alone rather than fed a flag it may reject.
    """
    n = max(1, int(threads))
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        importlib.import_module("torch").set_num_threads(n)
    if "numba" in sys.modules:
        numba = importlib.import_module("numba")
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n
