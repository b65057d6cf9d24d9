"""Make Snakemake read ``--configfile`` study files through :func:`mfg_study.config.load_study`.

Snakemake parses the files given with ``--configfile`` before it reads the Snakefile, and for a
YAML syntax error or a file that is not a mapping it prints a generic message without the file's
name or the line. With this hook armed, that first reading goes through the strict loader, so the
error names the file, the line and the key (duplicate keys included); JSON files and yte templates
are left to Snakemake.

Armed at interpreter start-up by the ``mfg_study_snakemake_hook.pth`` file that ``make`` writes into
the virtualenv (``mfg_study.snakemake_hook.install()``): it patches
``snakemake.common.configfile`` when -- and only when -- Snakemake imports it. Without the hook the
workflow still re-reads every study file strictly (``workflow/rules/common.smk``); only the two
early errors keep Snakemake's wording.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

TARGET = "snakemake.common.configfile"
PTH_NAME = "mfg_study_snakemake_hook.pth"


def patch(module) -> None:
    """Wrap ``module._load_configfile`` (Snakemake's reader) with the strict study loader."""
    original = module._load_configfile
    if getattr(original, "_mfg_study", False):
        return

    def _load_configfile(configpath_or_obj, filetype="Config"):
        path = configpath_or_obj
        if filetype == "Config" and isinstance(path, (str, Path)) and str(path).endswith((".yaml", ".yml")):
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError:
                return original(configpath_or_obj, filetype)
            if not text.lstrip().startswith("__use_yte__"):
                from snakemake.exceptions import WorkflowError

                from .config import StudyConfigError, parse_study

                try:
                    return parse_study(text, str(path))
                except StudyConfigError as exc:
                    raise WorkflowError(f"Invalid config: {exc}") from None
        return original(configpath_or_obj, filetype)

    _load_configfile._mfg_study = True
    module._load_configfile = _load_configfile


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``TARGET`` is imported, it lets the real loader run and patches."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def arm() -> None:
    """Patch Snakemake's config reader now if it is imported, else when it is."""
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def install(site_packages: str | None = None) -> Path:
    """Write the ``.pth`` file that arms the hook at start-up into ``site_packages`` (this
    interpreter's, by default); returns its path."""
    import sysconfig

    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME
    # one line starting with "import" (the site module executes those); silent if mfg_study is gone
    target.write_text('import sys; exec("try:\\n import mfg_study.snakemake_hook as h\\n h.arm()\\n'
                      'except ImportError:\\n pass")\n', encoding="utf-8")
    return target
