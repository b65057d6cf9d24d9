"""Pictures of a solution in time: density snapshots of a 2D run, and the crowd as an animation.

``density_snapshots`` draws ``m`` of a 2D run at a few times as images on the domain, with the
obstacle drawn (grey) and the value function at t = 0 beside them; ``animate`` makes an animated GIF
of the density over time (2D: images; 1D: the curve ``m(t, x)``), kept small (at most ``frames``
frames, a coarse raster) so that the report, which embeds it, stays one self-contained file.
"""

from __future__ import annotations

import io as _io
from collections.abc import Mapping
from typing import Any

import numpy as np

from .report import _label, _plt


def _extent(ds) -> list[float]:
    x, y = ds["x"].values, ds["y"].values
    return [float(x.min()), float(x.max()), float(y.min()), float(y.max())]


def _draw_obstacle(ax, obstacle: np.ndarray | None, extent) -> None:
    if obstacle is not None and obstacle.any():
        ax.imshow(np.ma.masked_where(~obstacle.astype(bool), np.ones(obstacle.shape)), origin="lower",
                  extent=extent, cmap="Greys", vmin=0, vmax=1.4, interpolation="nearest", alpha=0.9)


def density_snapshots(problem: str, run: tuple[Mapping[str, str], Any], obstacle: np.ndarray | None):
    """m(t, y, x) at four times and u at t = 0 of one 2D run, obstacle drawn in grey."""
    plt = _plt()
    key, ds = run
    t = ds["t"].values
    times = sorted({0, len(t) // 3, (2 * len(t)) // 3, len(t) - 1})
    extent = _extent(ds)
    m = ds["m"].values
    # each snapshot on its own colour scale: the initial crowd is far denser than the spread-out one
    fig, axes = plt.subplots(1, len(times) + 1, figsize=(3.3 * (len(times) + 1), 3.3))
    for ax, n in zip(axes, times):
        im = ax.imshow(m[n], origin="lower", extent=extent, cmap="viridis", vmin=0)
        _draw_obstacle(ax, obstacle, extent)
        ax.set(title=f"m at t = {t[n]:.3g}", xlabel="x", ylabel="y")
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[-1]
    im = ax.imshow(ds["u"].values[0], origin="lower", extent=extent, cmap="magma")
    _draw_obstacle(ax, obstacle, extent)
    ax.set(title="u at t = 0", xlabel="x")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{problem}: {_label(key)} ({ds.attrs.get('status', '?')})", fontsize=10)
    fig.tight_layout()
    return fig


def animate(problem: str, run: tuple[Mapping[str, str], Any], obstacle: np.ndarray | None = None,
            frames: int = 24, dpi: int = 60) -> bytes:
    """An animated GIF of the density over time (bytes)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    plt = _plt()
    key, ds = run
    t, m = ds["t"].values, ds["m"].values
    steps = np.unique(np.linspace(0, len(t) - 1, min(frames, len(t))).round().astype(int))
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    vmax = float(np.nanmax(m)) if np.isfinite(m).any() else 1.0
    if "y" in ds.dims:
        extent = _extent(ds)
        im = ax.imshow(m[0], origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=vmax)
        _draw_obstacle(ax, obstacle, extent)
        ax.set(xlabel="x", ylabel="y")

        def draw(n):  # each frame on its own scale (its maximum in the title)
            im.set_data(m[n])
            im.set_clim(0, float(np.nanmax(m[n])) or 1.0)
            ax.set_title(f"{problem}: m at t = {t[n]:.3g} (max {np.nanmax(m[n]):.3g})", fontsize=9)
            return (im,)
    else:
        x = ds["x"].values
        (line,) = ax.plot(x, m[0])
        ax.set(xlabel="x", ylabel="m", ylim=(0, 1.05 * vmax))

        def draw(n):
            line.set_ydata(m[n])
            ax.set_title(f"{problem}: m at t = {t[n]:.3g}", fontsize=9)
            return (line,)

    fig.tight_layout()
    anim = FuncAnimation(fig, draw, frames=list(steps), blit=False)
    buf = _io.BytesIO()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.gif"
        anim.save(path, writer=PillowWriter(fps=6), dpi=dpi)
        buf.write(path.read_bytes())
    plt.close(fig)
    return buf.getvalue()


def placeholder_gif() -> bytes:
    """A one-pixel GIF: the animation of a problem none of whose runs produced a solution."""
    return bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")
