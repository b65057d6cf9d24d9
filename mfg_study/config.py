"""Reading a study file strictly: every mistake is named by file, line and field, before any job.

PyYAML alone is lenient where a study must not be: a key given twice silently keeps the last one,
``1e-6`` is a string (YAML 1.1 wants ``1.0e-6``), ``.nan`` and ``.inf`` pass every range check of a
JSON schema, and an empty file or a list is "not a mapping" without a word about which file.
:func:`load_study` reads a study file with

* duplicate keys refused, naming the key and both lines;
* numbers written like ``1e-6``, ``1E+3`` or ``-2e5`` read as numbers (YAML 1.2's float syntax);
* a file that is not a mapping (empty, comments only, a list, a scalar) or has a syntax error
  refused naming the file and, for a syntax error, the line and column;

and :func:`non_finite` finds every NaN or infinite number, by its path, for the caller to refuse.
The Snakemake workflow reads its config files through this module (``workflow/rules/common.smk``),
and :mod:`mfg_study.snakemake_hook` makes Snakemake's own early reading of ``--configfile`` use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


class StudyConfigError(ValueError):
    """A study file that cannot be read as a study (the message names file, line and key)."""


class _StrictLoader(yaml.SafeLoader):
    pass


# YAML 1.2 floats: also an exponent without a dot before it (1e-6), which YAML 1.1 reads as a string
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor" merges a mapping; its keys may be overridden (YAML's semantics)
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise StudyConfigError(f"{loader.name}, line {line}: key {key!r} is given twice (first on line "
                                   f"{seen[key]}); a repeated key would silently replace the first")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_study(text: str, name: str = "<study>") -> dict[str, Any]:
    """Parse the text of a study file (see the module docstring); ``name`` is used in messages."""
    loader = _StrictLoader(text)
    loader.name = name
    try:
        data = loader.get_single_data()
    except StudyConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = ""
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            context = f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise StudyConfigError(f"{name}{where}: not valid YAML: {exc.problem or exc}{context}") from None
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{name}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        raise StudyConfigError(f"{name}: the study file is empty (or holds only comments); it must be a "
                               "mapping of settings, e.g. 'study: mystudy'")
    if not isinstance(data, dict):
        raise StudyConfigError(f"{name}: a study file must be a mapping of settings (key: value at the top "
                               f"level), got a {type(data).__name__}")
    return data


def load_study(path: str | Path) -> dict[str, Any]:
    """Read and parse a study file (see :func:`parse_study`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyConfigError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyConfigError(f"{path}: cannot be read ({exc})") from None
    return parse_study(text, str(path))


def non_string_keys(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, key)`` of every key that is not text (``1:`` or ``true:`` in YAML): a study's keys are
    names, and the schema's checks of names only see text keys."""
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if not isinstance(k, str):
                yield (path or "(top level)"), k
            yield from non_string_keys(v, where)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from non_string_keys(v, f"{path}.{i}")


def non_finite(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """``(path, value)`` of every NaN or infinite number in a nested config (``a.b[2]`` style paths)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from non_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from non_finite(v, f"{path}.{i}")
    elif isinstance(value, float) and not math.isfinite(value):
        yield path, value
