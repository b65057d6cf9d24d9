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


ROUND_OFF = 1e-10  # |mass - 1| below this is round-off: no figure, one sentence with the maximum

# styles come from the registries, in their order: a new method or backend gets its own without edits here
_COLORS = dict(zip(methods.names("coupling"), ("tab:blue", "tab:green", "tab:red", "tab:orange", "tab:purple",
                                               "tab:brown", "tab:pink", "tab:olive")))
_STYLES = dict(zip(backends.names(), ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1)))))


# ---------------------------------------------------------------------------------------------
# figures
def _run_max(df: pd.DataFrame, column: str) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for key, g in df.groupby(list(RUN_KEYS), sort=True):
        v = np.abs(g[column].to_numpy(dtype=float))
        out[tuple(key)] = float(np.nanmax(v)) if np.any(np.isfinite(v)) else math.nan
    return out


def mass_figure(problem: str, over_time: pd.DataFrame, over_iterations: pd.DataFrame,
                round_off: float = ROUND_OFF):
    """|mass(t) - 1| of each run's solution, and the mass error of each iterate, on log scales.

    Runs whose mass stays within ``round_off`` of 1 (over time and iterations) are not drawn -- their
    curves would only show floating-point noise -- and the figure says how many and their maximum."""
    plt = _plt()
    over_time = over_time[over_time["problem"] == problem]
    over_iterations = over_iterations[over_iterations["problem"] == problem]
    worst = _run_max(over_time, "deviation")
    for key, v in _run_max(over_iterations, "mass_error").items():
        worst[key] = float(np.fmax(worst.get(key, math.nan), v))  # the finite one if one is NaN
    quiet = {k for k, v in worst.items() if np.isfinite(v) and v < round_off}
    fig, (ax_t, ax_k) = plt.subplots(1, 2, figsize=(11, 4.2))
    floor = 1e-17  # exact conservation (FDM) would be log(0): plotted at the floor, said in the label
    for key, g in over_time.groupby(list(RUN_KEYS), sort=True):
        run = dict(zip(RUN_KEYS, key))
        dev = np.abs(g["deviation"].to_numpy(dtype=float))
        if tuple(key) in quiet or not np.any(np.isfinite(dev)):
            continue
        ax_t.plot(g["t"], np.maximum(dev, floor), _STYLES.get(run["backend"], "-"),
                  color=_COLORS.get(run["coupling"]), marker="o" if run["fp"] == "particle" else None,
                  markersize=2, label=_label(run))
    for key, g in over_iterations.groupby(list(RUN_KEYS), sort=True):
        run = dict(zip(RUN_KEYS, key))
        if tuple(key) in quiet or g.empty:
            continue
        ax_k.plot(g["iteration"], np.maximum(g["mass_error"].to_numpy(dtype=float), floor),
                  _STYLES.get(run["backend"], "-"), color=_COLORS.get(run["coupling"]),
                  marker="o" if run["fp"] == "particle" else None, markersize=2, label=_label(run))
    ax_t.set(yscale="log", xlabel="t", ylabel=f"|mass(t) - 1| (floored at {floor:g})",
             title=f"{problem}: mass of the solution over time")
    ax_k.set(yscale="log", xlabel="iteration", ylabel="max_t |mass - 1| of the iterate",
             title=f"{problem}: mass error over iterations")
    if quiet:
        top = max(worst[k] for k in quiet)
        fig.suptitle(f"not drawn: {len(quiet)} of {len(worst)} runs at round-off (max |mass - 1| = {top:.2g} "
                     f"< {round_off:g})", fontsize=9, y=1.02)
    _legend(fig, ax_t, ax_k)
    return fig


def mass_round_off(mass_df: pd.DataFrame, problem: str | None = None, round_off: float = ROUND_OFF) -> dict[str, Any]:
    """Whether every run (of ``problem``) keeps its mass within ``round_off`` of 1, from the mass table
    (:func:`mfg_study.tables.mass_table`: deviations in percent, over time and over iterations).

    Returns ``at_round_off`` (all finite runs below ``round_off``), ``max`` (the largest |mass - 1|, not in
    percent) and ``run`` (which run), ``above`` (labels of the runs above round-off, worst first, with
    their values), ``runs`` (runs with a finite mass) and ``no_mass`` (runs without: diverged or failed).
    """
    df = mass_df if problem is None else mass_df[mass_df["problem"] == problem]
    cols = [c for c in ("max_deviation_over_time_pct", "max_mass_error_over_iterations_pct") if c in df]
    dev = df[cols].astype(float).max(axis=1, skipna=True) / 100.0 if cols else pd.Series(np.nan, index=df.index)
    labels = ["/".join(str(r[k]) for k in RUN_KEYS if problem is None or k != "problem")
              for _, r in df.iterrows()]
    finite = dev.notna().to_numpy()
    values = dev.to_numpy(dtype=float)
    order = [i for i in np.argsort(-np.where(finite, values, -np.inf)) if finite[i]]
    above = [(labels[i], float(values[i])) for i in order if values[i] >= round_off]
    return {"at_round_off": bool(finite.any()) and not above, "max": float(values[order[0]]) if order else math.nan,
            "run": labels[order[0]] if order else "", "above": above, "runs": int(finite.sum()),
            "no_mass": int((~finite).sum()), "round_off": round_off}


def residual_figure(problem: str, runs: Iterable[tuple[Mapping[str, str], Any]],
                    tolerances: Mapping[str, float] | None = None):
    """Fixed-point residual ``max(residual_U, residual_M)`` per iteration on a log scale (for newton:
    ``max|F(U, M)|`` of the whole system, its own convergence measure), one panel per FP method (see
    :func:`mfg_study.tables.residual_history`)."""
    plt = _plt()
    runs = [(k, ds) for k, ds in runs if k["problem"] == problem]
    fps = sorted({k["fp"] for k, _ in runs}) or ["fdm"]
    fig, axes = plt.subplots(1, len(fps), figsize=(5.5 * len(fps), 4.2), squeeze=False)
    for ax, fp in zip(axes[0], fps):
        for k, ds in sorted(((k, ds) for k, ds in runs if k["fp"] == fp), key=lambda r: _label(r[0])):
            # Newton measures its own residual, max|F(U, M)| of the whole system, at every step (its
            # quadratic tail); the Picard residual of its iterates is taken at the end only
            newton = "newton_residual" in ds
            res = np.asarray(ds["newton_residual"].values, dtype=float) if newton else residual_history(ds)
            status = ds.attrs.get("status", "")
            label = (_label(k, skip=("problem", "fp")) + (" (max|F|)" if newton else "")
                     + ("" if status == "converged" else f" ({status})"))
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
OPEN_ROWS = 8      # tables up to this many rows start open, longer ones collapsed

_CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222;
       line-height: 1.4; overflow-wrap: anywhere; }
h1 { border-bottom: 2px solid #444; font-size: 1.7em; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
nav.toc { font-size: 0.9em; } nav.toc a { margin-right: 0.9em; white-space: nowrap; display: inline-block; }
a { color: #1a56a8; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.4em 0 0.8em; width: 100%; table-layout: fixed; }
table.narrow { width: auto; max-width: 100%; table-layout: auto; }
table.wide { font-size: 0.72em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.4em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; word-break: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: normal; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e2e8f0; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 0.8em; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; font-size: 0.8em; }
td.bad { color: #a40000; font-weight: 600; }
details { margin: 0.5em 0 0.9em; } details > summary { cursor: pointer; font-weight: 600; padding: 0.15em 0; }
details > summary .rows { font-weight: normal; color: #666; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; display: block; }
figure { margin: 0.8em 0; max-width: 100%; } figcaption { margin-top: 0.2em; }
.note { color: #555; font-size: 0.9em; }
p.statement { background: #f3f7f3; border-left: 4px solid #6a9f6a; padding: 0.4em 0.7em; }
pre { background: #f6f6f6; padding: 0.8em; font-size: 0.78em; white-space: pre-wrap; overflow-wrap: anywhere;
      max-width: 100%; }
ol.findings { list-style: none; padding: 0; margin: 0; counter-reset: finding; }
ol.findings > li { counter-increment: finding; border: 1px solid #d6d6d6; border-left: 5px solid #5b7fb3;
                   border-radius: 4px; padding: 0.6em 0.9em; margin: 0 0 0.9em; display: grid;
                   grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 0.4em 1.2em; }
ol.findings > li.nofigure { grid-template-columns: minmax(0, 1fr); }
ol.findings > li.warn { border-left-color: #c0392b; background: #fff7f6; }
ol.findings > li.not_run { border-left-color: #aaa; color: #555; }
ol.findings h3 { margin: 0 0 0.3em; } ol.findings h3::before { content: counter(finding) ". "; }
ol.findings .answer { margin: 0.2em 0; } ol.findings .headline { font-size: 1.35em; font-weight: 700; margin: 0.1em 0; }
ol.findings .seed { color: #555; font-size: 0.88em; margin: 0.3em 0; }
ol.findings figure { margin: 0; }
"""

# sorts a table by the clicked header: numbers by their data-v value (missing ones last), text naturally
_SORT_JS = """
document.addEventListener('DOMContentLoaded', function () {
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) return {n: NaN, s: ''};
    var v = cell.getAttribute('data-v');
    return {n: v === null ? NaN : parseFloat(v), s: cell.textContent.trim()};
  }
  function missing(k) { return isNaN(k.n) && (k.s === '-' || k.s === ''); }
  function compare(a, b) {
    var an = !isNaN(a.n), bn = !isNaN(b.n);
    if (an && bn) return a.n - b.n;
    if (an !== bn) return an ? -1 : 1;
    return a.s.localeCompare(b.s, undefined, {numeric: true, sensitivity: 'base'});
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.title = 'click to sort';
      function sort() {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.map.call(body.rows, function (r) { return {row: r, key: key(r, col)}; });
        rows.sort(function (a, b) {  // missing values ('-', empty) last in either direction
          var am = missing(a.key), bm = missing(b.key);
          if (am || bm) return am === bm ? 0 : (am ? 1 : -1);
          var c = compare(a.key, b.key);
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r.row); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); }
      });
    });
  });
});
"""


_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"GIF87a": "image/gif", b"GIF89a": "image/gif"}


def png_data_uri(path: str | Path) -> str:
    """A PNG (or animated GIF) file as a ``data:`` URI (raises naming the file if it is neither)."""
    data = Path(path).read_bytes()
    kind = next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ValueError(f"{path} is not a PNG or GIF file")
    return f"data:{kind};base64," + base64.b64encode(data).decode("ascii")


def slug(text: str) -> str:
    """An HTML id from a title: lower case, runs of other characters as one '-'."""
    out = "".join(c if c.isalnum() else "-" for c in str(text).lower())
    return "-".join(p for p in out.split("-") if p) or "section"


def _cell(v, digits: int) -> tuple[str, str | None]:
    """(shown text, sort value or None) of one table cell."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)), None
    if isinstance(v, (int, np.integer)):
        return str(int(v)), str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "-", None
        return f"{v:.{digits}g}", repr(v)
    if v is None or (isinstance(v, str) and v == ""):
        return "", None
    return str(v), None


def _column_widths(header: Sequence[str], cells: Sequence[Sequence[str]]) -> list[float]:
    """Relative widths (in characters) for a fixed-layout table: what a column usually holds,
    bounded so that a long reason wraps instead of taking the page."""
    widths = []
    for j, name in enumerate(header):
        lengths = sorted(len(row[j]) for row in cells) or [0]
        typical = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
        # a header breaks after its underscores; its longest piece (bold: a little wider) must fit
        longest_word = math.ceil(1.15 * max((len(w) + 1 for w in str(name).replace("_", " ").split()), default=1))
        widths.append(float(min(max(typical, longest_word, 3), 40)))
    return widths


def table_html(df: pd.DataFrame, *, css_class: str = "", digits: int = 4, sortable: bool = True) -> str:
    """A DataFrame as an escaped HTML table: floats with ``digits`` significant digits, NaN as '-',
    numbers right-aligned with their exact value in ``data-v`` (what the sort uses), header names
    breakable at underscores, column widths from their contents (so the table fits the page)."""
    e = html.escape
    header = [str(c) for c in df.columns]
    cells = [[_cell(v, digits) for v in row] for row in df.itertuples(index=False, name=None)]
    texts = [[t for t, _ in row] for row in cells]
    widths = _column_widths(header, texts)
    total = sum(widths) or 1.0
    classes = [c for c in (css_class, "sortable" if sortable else "") if c]
    if total <= 70 and max(widths, default=0) < 40:
        classes.append("narrow")  # a few short columns: natural widths read better than a stretched table
    elif len(header) > 10:
        classes.append("wide")
    out = [f"<table class='{' '.join(classes)}'>" if classes else "<table>"]
    if "narrow" not in classes:
        out.append("<colgroup>" + "".join(f"<col style='width:{100 * w / total:.2f}%'>" for w in widths)
                   + "</colgroup>")
    out.append("<thead><tr>" + "".join(f"<th scope='col'>{e(h).replace('_', '_<wbr>')}</th>" for h in header)
               + "</tr></thead><tbody>")
    for row, raw in zip(cells, df.itertuples(index=False, name=None)):
        tds = []
        for (text, value), col, v in zip(row, header, raw):
            cls = []
            if value is not None:
                cls.append("num")
            if col == "status" and text in ("diverged", "failed"):
                cls.append("bad")
            attrs = (f" class='{' '.join(cls)}'" if cls else "") + (f" data-v='{value}'" if value is not None else "")
            tds.append(f"<td{attrs}>{e(text)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def collapsible_table(caption: str, df: pd.DataFrame, *, open_rows: int = OPEN_ROWS, note: str = "") -> str:
    """A table inside ``<details>``: open when it has at most ``open_rows`` rows, collapsed otherwise."""
    e = html.escape
    n = len(df)
    if not n:
        return f"<h3>{e(caption)}</h3><p class='note'>(empty)</p>"
    rows = f"{n} row{'s' if n != 1 else ''}" + ("" if n <= open_rows else ", click to show")
    return (f"<details{' open' if n <= open_rows else ''}><summary>{e(caption)} <span class='rows'>({rows}; "
            f"click a column header to sort)</span></summary>"
            + (f"<p class='note'>{e(note)}</p>" if note else "") + table_html(df) + "</details>")


def _figure_html(caption: str, path: str | Path) -> str:
    e = html.escape
    return (f"<figure><img alt='{e(caption)}' src='{png_data_uri(path)}'>"
            f"<figcaption class='note'>{e(caption)}</figcaption></figure>")


def _paragraphs(text: str, css: str = "") -> list[str]:
    cls = f" class='{css}'" if css else ""
    return [f"<p{cls}>{html.escape(p)}</p>" for p in str(text).split("\n\n") if p.strip()]


def _summary_html(summary: Sequence[Mapping[str, Any]], ids: set[str]) -> list[str]:
    e = html.escape
    out = ["<ol class='findings'>"]
    for f in summary:
        figure = f.get("figure")
        level = f.get("level", "ok")
        classes = " ".join(c for c in (level, "" if figure else "nofigure") if c)
        out.append(f"<li class='{classes}'><div>")
        out.append(f"<h3>{e(f['title'])}</h3>")
        if f.get("headline"):
            out.append(f"<p class='headline'>{e(f['headline'])}</p>")
        out += _paragraphs(f.get("answer", ""), "answer")
        if f.get("seed"):
            out.append(f"<p class='seed'>Seed report: {e(f['seed'])}</p>")
        see = f.get("see")
        if see and see in ids:
            out.append(f"<p class='note'><a href='#{e(see)}'>Details: {e(f.get('see_title', see))}</a></p>")
        out.append("</div>")
        if figure:
            out.append(_figure_html(*figure))
        out.append("</li>")
    out.append("</ol>")
    return out


def render_report(*, study: str, summary: Sequence[Mapping[str, Any]], sections: Sequence[Mapping[str, Any]],
                  what_was_run: Mapping[str, Any], generated: str | None = None) -> str:
    """The HTML page: one self-contained file (figures as base64 PNG, the sort script and the styles
    inline, no reference to anything outside it).

    ``summary`` comes first: numbered findings, dicts with ``title``, ``answer`` (plain text; blank
    lines separate paragraphs), optional ``headline`` (the number that answers it), ``seed`` (what the
    seed report said), ``figure`` ((caption, png path)), ``see`` (the id of the section with the details)
    and ``level`` (``ok``, ``warn``: something failed or contradicts, ``not_run``).

    ``sections`` are dicts with ``title``, optional ``id`` (default: from the title), ``text`` (plain
    text, escaped), ``statements`` (short sentences shown highlighted, e.g. in place of a figure that
    would only show round-off), ``tables`` (list of (caption, DataFrame) or (caption, DataFrame, note)),
    shown in ``<details>`` (collapsed when longer than :data:`OPEN_ROWS` rows) and sortable, and
    ``figures`` (list of (caption, png path)).
    """
    e = html.escape
    now = generated or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ids = {s.get("id") or slug(s["title"]): s["title"] for s in sections}
    summary = [{**f, "see_title": ids.get(f.get("see"), f.get("see"))} for f in summary]
    out = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>mfg-study: {e(study)}</title><style>{_CSS}</style><script>{_SORT_JS}</script></head><body>",
        f"<h1>mfg-study report: study <code>{e(study)}</code></h1>",
        f"<p class='note'>Generated {e(now)} from the study's stores and tables (nothing was re-solved "
        "for this page). Tables: click a header to sort; long ones are collapsed, click their title.</p>",
        "<nav class='toc'>" + "".join(f"<a href='#{e(i)}'>{e(t)}</a>" for i, t in
                                      [("summary", "Summary"), *ids.items(), ("what-was-run", "What was run")])
        + "</nav>",
        "<section id='summary'><h2>Summary</h2>",
        "<p>The questions the seed report (<em>Backend Integration Status</em>) answered, or left open, and "
        "what this study measured; each finding links to its section.</p>",
        *_summary_html(summary, set(ids)),
        "</section>",
    ]
    for section in sections:
        sid = section.get("id") or slug(section["title"])
        out.append(f"<section id='{e(sid)}'><h2>{e(section['title'])}</h2>")
        if section.get("text"):
            out += _paragraphs(section["text"])
        for statement in section.get("statements", ()):
            out.append(f"<p class='statement'>{e(statement)}</p>")
        for caption, df, *note in section.get("tables", ()):
            out.append(collapsible_table(caption, df, note=note[0] if note else ""))
        for caption, path in section.get("figures", ()):
            out.append(_figure_html(caption, path))
        out.append("</section>")
    out.append("<section id='what-was-run'><h2>What was run, with which versions</h2>")
    for key, value in what_was_run.items():
        if isinstance(value, pd.DataFrame):
            out.append(collapsible_table(key, value, open_rows=0))
            continue
        if isinstance(value, (dict, list)):
            body = f"<pre>{e(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"
            out.append(f"<details><summary>{e(key)}</summary>{body}</details>")
        else:
            out.append(f"<p><strong>{e(key)}:</strong> {e(str(value))}</p>")
    out.append("</section></body></html>")
    return "\n".join(out)
