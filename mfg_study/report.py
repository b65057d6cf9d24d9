"""Figures and the self-contained HTML comparison report of a study.

Figures are matplotlib (Agg, no display needed). The HTML report embeds every PNG as base64 and
every table as HTML, so ``report.html`` is one file that can be mailed or archived on its own.
It reads tables and stores only: nothing here solves.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfg_core import backends, methods

from .tables import RUN_KEYS, residual_history


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)  # batch jobs have no display
    import matplotlib.pyplot as plt

    return plt


def _label(run: Mapping[str, str], skip: Sequence[str] = ("problem",)) -> str:
    return "/".join(str(run[k]) for k in RUN_KEYS if k not in skip)


# styles come from the registries, in their order: a new method or backend gets its own without edits here
_COLORS = dict(zip(methods.names("coupling"), ("tab:blue", "tab:green", "tab:red", "tab:orange", "tab:purple",
                                               "tab:brown", "tab:pink", "tab:olive")))
_STYLES = dict(zip(backends.names(), ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1)))))


# ---------------------------------------------------------------------------------------------
# figures
def mass_figure(problem: str, over_time: pd.DataFrame, over_iterations: pd.DataFrame):
    """|mass(t) - 1| of each run's solution, and the mass error of each iterate, on log scales."""
    plt = _plt()
    fig, (ax_t, ax_k) = plt.subplots(1, 2, figsize=(11, 4.2))
    floor = 1e-17  # exact conservation (FDM) would be log(0): plotted at the floor, said in the label
    for key, g in over_time[over_time["problem"] == problem].groupby(list(RUN_KEYS), sort=True):
        run = dict(zip(RUN_KEYS, key))
        dev = np.abs(g["deviation"].to_numpy(dtype=float))
        if not np.any(np.isfinite(dev)):
            continue
        ax_t.plot(g["t"], np.maximum(dev, floor), _STYLES.get(run["backend"], "-"),
                  color=_COLORS.get(run["coupling"]), marker="o" if run["fp"] == "particle" else None,
                  markersize=2, label=_label(run))
    for key, g in over_iterations[over_iterations["problem"] == problem].groupby(list(RUN_KEYS), sort=True):
        run = dict(zip(RUN_KEYS, key))
        if g.empty:
            continue
        ax_k.plot(g["iteration"], np.maximum(g["mass_error"].to_numpy(dtype=float), floor),
                  _STYLES.get(run["backend"], "-"), color=_COLORS.get(run["coupling"]),
                  marker="o" if run["fp"] == "particle" else None, markersize=2, label=_label(run))
    ax_t.set(yscale="log", xlabel="t", ylabel=f"|mass(t) - 1| (floored at {floor:g})",
             title=f"{problem}: mass of the solution over time")
    ax_k.set(yscale="log", xlabel="iteration", ylabel="max_t |mass - 1| of the iterate",
             title=f"{problem}: mass error over iterations")
    _legend(fig, ax_t, ax_k)
    return fig


def residual_figure(problem: str, runs: Iterable[tuple[Mapping[str, str], Any]],
                    tolerances: Mapping[str, float] | None = None):
    """Fixed-point residual ``max(residual_U, residual_M)`` per iteration on a log scale, one panel per FP
    method (see :func:`mfg_core.analysis.residual_history`)."""
    plt = _plt()
    runs = [(k, ds) for k, ds in runs if k["problem"] == problem]
    fps = sorted({k["fp"] for k, _ in runs}) or ["fdm"]
    fig, axes = plt.subplots(1, len(fps), figsize=(5.5 * len(fps), 4.2), squeeze=False)
    for ax, fp in zip(axes[0], fps):
        for k, ds in sorted(((k, ds) for k, ds in runs if k["fp"] == fp), key=lambda r: _label(r[0])):
            res = residual_history(ds)
            status = ds.attrs.get("status", "")
            label = _label(k, skip=("problem", "fp")) + ("" if status == "converged" else f" ({status})")
            if res.size:
                ax.plot(np.arange(1, res.size + 1), res, _STYLES.get(k["backend"], "-"),
                        color=_COLORS.get(k["coupling"]), label=label)
            else:
                ax.plot([], [], _STYLES.get(k["backend"], "-"), color=_COLORS.get(k["coupling"]), label=label)
        if tolerances and fp in tolerances:
            ax.axhline(tolerances[fp], color="grey", lw=0.8, ls="--", label="tolerance")
        ax.set(yscale="log", xlabel="iteration", ylabel="fixed-point residual", title=f"{problem}, FP {fp}")
    _legend(fig, *axes[0])
    return fig


def backend_figure(problem: str, backends: pd.DataFrame):
    """Seconds per iteration (bars) and compile time (hatched) of each backend, per run group."""
    plt = _plt()
    df = backends[backends["problem"] == problem]
    groups = sorted({(r.fp, r.coupling) for r in df.itertuples()})
    names = sorted(df["backend"].unique(), key=lambda b: list(_STYLES).index(b) if b in _STYLES else 99)
    fig, (ax_s, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(len(names), 1)
    xs = np.arange(len(groups))
    for i, b in enumerate(names):
        per = [_value(df, g, b, "seconds_per_iteration") for g in groups]
        comp = [_value(df, g, b, "compile_time_s") for g in groups]
        ax_s.bar(xs + i * width, per, width, label=b)
        ax_c.bar(xs + i * width, comp, width, label=b, hatch="//")
    for ax, title in ((ax_s, "seconds per iteration"), (ax_c, "compile (warm-up) seconds")):
        ax.set_xticks(xs + 0.4 - width / 2, [f"{fp}/{c}" for fp, c in groups], rotation=20)
        ax.set(ylabel="s", title=f"{problem}: {title}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pick_field_runs(runs: Iterable[tuple[Mapping[str, str], Any]], reference: str = "numpy"):
    """The runs a fields figure shows: for each FP method, a run with a finite density, preferring a
    converged one (so the picture is a fixed point), then the reference backend, then the coupling
    methods in registry order."""
    order = {name: i for i, name in enumerate(methods.names("coupling"))}
    chosen: dict[str, tuple[Mapping[str, str], Any]] = {}
    for fp in methods.names("fp"):
        cands = [(k, ds) for k, ds in runs if k["fp"] == fp and np.all(np.isfinite(ds["m"].values))]
        if not cands:
            continue
        cands.sort(key=lambda r: (r[1].attrs.get("status") != "converged", r[0]["backend"] != reference,
                                  order.get(r[0]["coupling"], len(order))))
        chosen[fp] = cands[0]
    return chosen


def no_solution_figure(problem: str, runs: Iterable[tuple[Mapping[str, str], Any]]):
    """The figure a problem gets when none of its runs produced a finite solution: what each did."""
    plt = _plt()
    lines = [f"{_label(k)}: {ds.attrs.get('status', '?')} at iteration {ds.attrs.get('iterations', '?')}"
             f" -- {str(ds.attrs.get('reason', ''))[:90]}" for k, ds in runs]
    fig, ax = plt.subplots(figsize=(11, 0.6 + 0.28 * max(len(lines), 1)))
    ax.axis("off")
    ax.set_title(f"{problem}: no run produced a solution to show", loc="left")
    ax.text(0.0, 1.0, "\n".join(lines) or "(no runs)", va="top", ha="left", family="monospace", fontsize=7,
            transform=ax.transAxes)
    return fig


def fields_figure(problem: str, chosen: Mapping[str, tuple[Mapping[str, str], Any]]):
    """What the solution looks like: m(t, x) and u(t, x) of the FDM run as space-time maps, and the
    density at three times, FDM (solid) beside particles (dashed) where both ran."""
    plt = _plt()
    main_fp = "fdm" if "fdm" in chosen else next(iter(chosen))
    key, ds = chosen[main_fp]
    x, t = ds["x"].values, ds["t"].values
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, name, cmap in ((axes[0], "m", "viridis"), (axes[1], "u", "magma")):
        mesh = ax.pcolormesh(x, t, ds[name].values, shading="auto", cmap=cmap)
        fig.colorbar(mesh, ax=ax)
        ax.set(xlabel="x", ylabel="t", title=f"{problem}: {name}(t, x), {_label(key)}")
    ax = axes[2]
    times = [0, len(t) // 2, len(t) - 1]
    colors = ["tab:blue", "tab:orange", "tab:green"]
    for fp, style in (("fdm", "-"), ("particle", "--")):
        if fp not in chosen:
            continue
        k, d = chosen[fp]
        for n, c in zip(times, colors):
            ax.plot(d["x"].values, d["m"].values[n], style, color=c,
                    label=f"t = {d['t'].values[n]:.3g}, {fp} ({k['coupling']}/{k['backend']}, "
                          f"{d.attrs.get('status', '?')})")
    ax.set(xlabel="x", ylabel="m(t, x)", title=f"{problem}: density, FDM (solid) vs particles (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _value(df, group, backend, col):
    sel = df[(df["fp"] == group[0]) & (df["coupling"] == group[1]) & (df["backend"] == backend)]
    # NaN (a diverged run has no time per iteration) draws no bar; 0 would look infinitely fast
    return float(sel[col].iloc[0]) if len(sel) else math.nan


def _legend(fig, *axes):
    """One legend for the figure, below the panels: with a few dozen runs a legend inside a panel
    would hide the curves it explains."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.tight_layout()
    if seen:
        ncol = min(4, len(seen))
        fig.legend(list(seen.values()), list(seen), loc="upper center", ncol=ncol, fontsize=7,
                   bbox_to_anchor=(0.5, 0.0), frameon=False)


# ---------------------------------------------------------------------------------------------
# HTML
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
table.seed td:first-child { font-weight: bold; } table.seed td { max-width: 28em; }
"""


def png_data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:`` URI (raises naming the file if it is not a PNG)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def table_html(df: pd.DataFrame, *, css_class: str = "", digits: int = 4) -> str:
    """A DataFrame as an escaped HTML table, floats with ``digits`` significant digits, NaN as '-'."""
    def fmt(v):
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.{digits}g}"
        return v

    shown = df.copy()
    for c in shown.columns:
        shown[c] = shown[c].map(fmt)
    return shown.to_html(index=False, escape=True, classes=css_class or None, border=0, na_rep="-")


def render_report(*, study: str, seed: pd.DataFrame, sections: Sequence[Mapping[str, Any]],
                  what_was_run: Mapping[str, Any]) -> str:
    """The HTML page. ``sections`` are dicts with ``title``, optional ``text`` (plain text,
    escaped), ``tables`` (list of (caption, DataFrame)) and ``figures`` (list of (caption, png path)).
    The page opens with ``seed``: the seed report's findings beside this study's measurements.
    """
    e = html.escape
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>mfg-study: {e(study)}</title><style>{_CSS}</style></head><body>",
        f"<h1>mfg-study report: study <code>{e(study)}</code></h1>",
        f"<p class='note'>Generated {e(now)} from the study's stores and tables (nothing was re-solved "
        "for this page).</p>",
        "<h2>Seed report findings beside this study</h2>",
        "<p>Each row: what the predecessor's <em>Backend Integration Status</em> report stated, and what "
        "this study measured (whatever it shows). Definitions are under each section below.</p>",
        table_html(seed, css_class="seed"),
    ]
    for section in sections:
        out.append(f"<h2>{e(section['title'])}</h2>")
        if section.get("text"):
            for para in str(section["text"]).split("\n\n"):
                out.append(f"<p>{e(para)}</p>")
        for caption, df in section.get("tables", ()):
            out.append(f"<h3>{e(caption)}</h3>")
            out.append(table_html(df) if len(df) else "<p class='note'>(empty)</p>")
        for caption, path in section.get("figures", ()):
            out.append(f"<figure><img alt='{e(caption)}' src='{png_data_uri(path)}'>"
                       f"<figcaption class='note'>{e(caption)}</figcaption></figure>")
    out.append("<h2>What was run, with which versions</h2>")
    for key, value in what_was_run.items():
        out.append(f"<h3>{e(key)}</h3>")
        if isinstance(value, pd.DataFrame):
            out.append(table_html(value))
        elif isinstance(value, (dict, list)):
            out.append(f"<pre>{e(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>")
        else:
            out.append(f"<p>{e(str(value))}</p>")
    out.append("</body></html>")
    return "\n".join(out)
