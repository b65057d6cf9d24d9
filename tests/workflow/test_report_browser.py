"""The HTML report in a real browser: headless Chromium loads the report of a tiny study.

A copy of the report gets a checking script as the first element of its <head>. It records
window errors and console.error calls; on load it checks that every image decoded, that no element
reaches past the right edge of a 1280 px viewport (with the tables collapsed as the page opens them,
and again with every <details> open), that a click on a table header sorts the rows, and writes a
JSON verdict into the DOM, which ``chromium --dump-dom`` prints. A full-height screenshot of the
report (as it opens) is kept under the test's tmp dir and in ``results/test-artifacts/``.

Chromium is the Debian package ``chromium``: installed with apt-get when missing and running as root
(as the cluster test installs SLURM); otherwise the tests are skipped, saying why.
"""

import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "results/test-artifacts"
VIEWPORT = 1280

# small but with every part of the report: both FP methods and both coupling families, a convergence
# study, a sweep where damping fails and Anderson does not, a scaling study (numpy only: no jit time)
STUDY = {
    "study": "browser",
    "problems": {"crowd": {"name": "congestion", "grid": {"Nx": 12, "Nt": 10}}},
    "fp_methods": ["fdm", "particle"], "couplings": ["damping", "anderson"], "backends": ["numpy"],
    "solve": {"max_iterations": 30, "tolerance": 1e-6},
    "particle": {"num_particles": 200, "max_iterations": 6, "tolerance": 1e-3, "common_random_numbers": False},
    "convergence": {"lq": {"problem": {"name": "lq"}, "levels": [8, 16, 32], "coupling": "damping"}},
    "sweep": {"kappa": {"problem": {"name": "congestion", "grid": {"Nx": 12, "Nt": 10}}, "parameter": "kappa",
                        "values": [1, 4], "couplings": ["damping", "anderson"], "continuation": True}},
    "scaling": {"fdm": {"problem": {"name": "congestion"}, "sizes": [8, 16], "backends": ["numpy"],
                        "iterations": 1, "repeats": 1}},
}

CHECKER = r"""<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target && e.target !== window ? ' (' + e.target.tagName + ')' : '';
    errors.push('error: ' + (e.message || 'resource failed to load') + t
                + (e.filename ? ' at ' + e.filename + ':' + e.lineno : ''));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { errors.push('unhandled rejection: ' + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return consoleError.apply(console, arguments);
  };
  function describe(el) {
    var s = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
            + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '');
    return s + ' "' + (el.textContent || '').replace(/\s+/g, ' ').slice(0, 60) + '"';
  }
  function measure(state) {
    var width = Math.min(window.innerWidth, document.documentElement.clientWidth || window.innerWidth);
    var wide = [];
    var all = document.body.getElementsByTagName('*');
    for (var i = 0; i < all.length; i++) {
      var r = all[i].getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.right > width + 1 || r.left < -1) {
        wide.push({element: describe(all[i]), left: Math.round(r.left), right: Math.round(r.right)});
      }
    }
    return {state: state, viewport: width, inner_width: window.innerWidth,
            scroll_width: document.documentElement.scrollWidth, body_scroll_width: document.body.scrollWidth,
            n_wide: wide.length, wide: wide.slice(0, 15), height: document.documentElement.scrollHeight};
  }
  function cellValue(row, col) {  // the exact number the page gives a cell (data-v)
    var c = row.cells[col];
    var v = c.getAttribute('data-v');
    return v === null ? NaN : parseFloat(v);
  }
  function sorted(values, ascending) {
    for (var j = 1; j < values.length; j++) {
      if (ascending ? values[j] < values[j - 1] : values[j] > values[j - 1]) return false;
    }
    return true;
  }
  function finiteColumn(body, col) {
    return Array.prototype.map.call(body.rows, function (r) { return cellValue(r, col); })
                .filter(function (v) { return isFinite(v); });
  }
  function sortCheck() {
    // a numeric column not already in ascending order (so that the click has to move rows)
    var candidates = [];
    var tables = document.querySelectorAll('table.sortable');
    for (var t = 0; t < tables.length; t++) {
      var table = tables[t], body = table.tBodies[0];
      if (!table.tHead || !body || body.rows.length < 3) continue;
      var heads = table.tHead.rows[0].cells;
      for (var col = 0; col < heads.length; col++) {
        var finite = finiteColumn(body, col);
        if (finite.length >= 3 && !finite.every(function (v) { return v === finite[0]; })) {
          candidates.push({table: table, col: col, unsorted: !sorted(finite, true)});
        }
      }
    }
    var pick = candidates.filter(function (c) { return c.unsorted; })[0] || candidates[0];
    if (!pick) return {checked: false};
    var th = pick.table.tHead.rows[0].cells[pick.col], body = pick.table.tBodies[0];
    th.click();
    var ascending = sorted(finiteColumn(body, pick.col), true);
    th.click();
    var descending = sorted(finiteColumn(body, pick.col), false);
    return {checked: true, column: th.textContent, rows: body.rows.length, was_unsorted: pick.unsorted,
            ascending: ascending, descending: descending, aria: th.getAttribute('aria-sort')};
  }
  window.addEventListener('load', function () {
    var verdict = {errors: errors};
    try {
      var images = Array.prototype.slice.call(document.images);
      verdict.images = images.length;
      verdict.bad_images = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                                 .map(function (i) { return i.alt || i.src.slice(0, 60); });
      verdict.external = Array.prototype.slice.call(document.querySelectorAll('[src], [href]'))
        .map(function (e) { return e.getAttribute('src') || e.getAttribute('href'); })
        .filter(function (u) { return /^\s*(https?:|\/\/|ftp:)/i.test(u); });
      var details = Array.prototype.slice.call(document.querySelectorAll('details'));
      verdict.details = details.map(function (d) {
        return {open: d.open, rows: d.querySelectorAll('tbody tr').length,
                summary: d.querySelector('summary') ? d.querySelector('summary').textContent.slice(0, 80) : ''};
      });
      verdict.layout = [measure('as opened')];
      details.forEach(function (d) { d.open = true; });
      verdict.layout.push(measure('every <details> open'));
      verdict.sort = sortCheck();
    } catch (exc) {
      errors.push('checker failed: ' + exc);
    }
    var out = document.createElement('pre');
    out.id = 'browser-check-verdict';
    out.hidden = true;
    out.textContent = JSON.stringify(verdict);
    document.body.appendChild(out);
  });
})();
</script>"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-default-apps", "--mute-audio", "--no-default-browser-check"]


def _chromium_path():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
def chromium():
    """The chromium executable; installs the Debian package when missing (root only), else skips."""
    found = _chromium_path()
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and this is not root: cannot apt-get install chromium")
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and there is no apt-get to install it (not Debian/Ubuntu)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    tail = ""
    for attempt in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "chromium"]):
        try:
            proc = subprocess.run(attempt, capture_output=True, text=True, timeout=1200, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"{' '.join(attempt)} timed out")
        tail = (proc.stdout + proc.stderr)[-1500:]
        if attempt[1] == "install" and proc.returncode == 0 and _chromium_path():
            return _chromium_path()
    pytest.skip(f"apt-get install -y chromium failed (no network or no package?):\n{tail}")


def _profile(tmp: Path) -> list[str]:
    return [f"--user-data-dir={tmp}", f"--crash-dumps-dir={tmp}"]


def check_in_chromium(chromium: str, page: Path, tmp: Path) -> dict:
    """Load a copy of ``page`` with the checking script in Chromium and return its verdict."""
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text, re.I)
    assert head, f"{page} has no <head>"
    copy = tmp / f"checked-{page.name}"
    copy.write_text(text[:head.end()] + CHECKER + text[head.end():], encoding="utf-8")
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, *_profile(tmp / "profile-check"),
                           f"--window-size={VIEWPORT},900", "--virtual-time-budget=10000", "--dump-dom",
                           copy.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r"<pre[^>]*id=\"browser-check-verdict\"[^>]*>(.*?)</pre>", proc.stdout, re.S)
    assert m, f"no verdict from chromium (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(html.unescape(m.group(1)))


def screenshot(chromium: str, page: Path, target: Path, height: int) -> Path:
    """A full-height PNG of ``page`` as it opens, at the viewport's width."""
    height = max(600, min(int(height) + 40, 16000))
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, *_profile(target.parent / "profile-shot"),
                           f"--window-size={VIEWPORT},{height}", "--hide-scrollbars",
                           "--virtual-time-budget=10000", f"--screenshot={target}", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert target.exists() and target.read_bytes().startswith(b"\x89PNG"), proc.stderr[-3000:]
    return target


def assert_renders_cleanly(verdict: dict, *, min_images: int = 1) -> None:
    assert verdict["errors"] == [], verdict["errors"]
    assert verdict["images"] >= min_images and verdict["bad_images"] == [], verdict
    assert verdict["external"] == [], verdict["external"]
    for layout in verdict["layout"]:
        assert layout["n_wide"] == 0, (f"{layout['n_wide']} elements wider than the {layout['viewport']} px "
                                       f"viewport ({layout['state']}): {json.dumps(layout['wide'], indent=1)}")
        assert layout["scroll_width"] <= layout["viewport"] + 1, layout
    for d in verdict["details"]:  # long tables start collapsed, short ones open
        if d["rows"] > 8:
            assert not d["open"], d
    sort = verdict["sort"]  # a click on a header sorts its column, a second click reverses it
    assert sort["checked"] and sort["ascending"] and sort["descending"] and sort["aria"] == "descending", sort


@pytest.fixture(scope="module")
def browser_report(run_snakemake, tmp_path_factory):
    work = tmp_path_factory.mktemp("browser-study")
    cfg = work / "browser.yaml"
    cfg.write_text(yaml.safe_dump(STUDY))
    proc = run_snakemake("--cores", "2", "--configfile", cfg, "--directory", work, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return work / "results/browser/report.html"


def test_report_of_a_tiny_study_in_chromium(chromium, browser_report, tmp_path):
    verdict = check_in_chromium(chromium, browser_report, tmp_path)
    shot = screenshot(chromium, browser_report, tmp_path / "report-screenshot.png", verdict["layout"][0]["height"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report-screenshot.png")
    (ARTIFACTS / "report-verdict.json").write_text(json.dumps(verdict, indent=1))
    assert_renders_cleanly(verdict, min_images=5)


def test_report_is_one_self_contained_file(browser_report):
    page = browser_report.read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href|action|poster)\s*=\s*["']?\s*([^"'\s>]+)""", page, re.I)
    assert refs and all(r.startswith(("data:image/png;base64,", "data:image/gif;base64,", "#")) for r in refs), \
        sorted({r[:60] for r in refs if not r.startswith(("data:", "#"))})
    assert not re.search(r"https?://", page), re.search(r".{60}https?://.{60}", page)
    assert not re.search(r"<(link|iframe|object|embed)\b|<script[^>]*\bsrc=|url\(|@import", page, re.I)


def test_a_page_with_long_tables_and_failed_runs_fits_the_viewport(chromium, tmp_path):
    """The layout rules on a page heavier than the tiny study's: 40 runs, long reasons, wide tables."""
    from mfg_study import report

    rows = []
    for i in range(40):
        status = ("diverged", "failed", "not_converged", "converged")[i % 4]
        rows.append({"problem": f"problem_with_a_long_name_{i % 3}", "fp": "particle", "coupling": "anderson_plain",
                     "backend": "numpy", "status": status, "iterations": i, "final_residual": 10.0 ** -i,
                     "wall_time_s": 0.1 * i, "compile_time_s": math.nan,
                     "reason": "DivergenceError: the iterate became non-finite at iteration 4 of the HJB sweep; "
                               "try_a_smaller_thetaUM_or_Anderson_with_safeguards_" * 3,
                     **{f"extra_column_number_{j}": j * 1.2345e-7 for j in range(12)}})
    df = pd.DataFrame(rows)
    summary = [{"title": "Run outcomes", "answer": "10 runs diverged and 10 failed. " * 5, "level": "warn",
                "seed": "", "see": "runs"}]
    page = report.render_report(study="stress", summary=summary, sections=[
        {"id": "runs", "title": "Runs", "text": "x" * 3000,
         "tables": [("All runs", df), ("Short", df.head(3)[["problem", "status", "reason"]])]}],
        what_was_run={"config": {"key_" * 50: "value_" * 200}, "versions": "a" * 500})
    target = tmp_path / "stress.html"
    target.write_text(page, encoding="utf-8")
    verdict = check_in_chromium(chromium, target, tmp_path)
    assert_renders_cleanly(verdict, min_images=0)
