"""The config schema: documented, strict, and in step with mfg_core's names."""

from pathlib import Path

import pytest
import yaml

import mfg_core as mc
from mfg_core import anderson, kde, methods

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml").read_text())

# Keys deliberately without a default: a default would be injected by snakemake.utils.validate and
# override the named problem's own grid value, a run filter, or an mfg_core.anderson default.
NO_DEFAULT = ("$defs.problem.grid.", "exclude.*.", "$defs.anderson_options.",
              # the study kinds' required keys, and optional ones whose absence means "the study's own"
              "convergence.*.problem", "convergence.*.levels", "convergence.*.fixed",
              "sweep.*.problem", "sweep.*.parameter", "sweep.*.values", "sweep.*.couplings",
              "scaling.*.problem", "scaling.*.sizes", "scaling.*.num_particles", "scaling.*.backends",
              # newton's settings keep the method's own defaults (mfg_core.methods) when left out
              "newton.")


def _walk(node, path=""):
    for key, sub in node.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _walk(sub, f"{path}{key}.")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}*.")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}*.")


def all_properties():
    yield from _walk(SCHEMA)
    for name, sub in SCHEMA.get("$defs", {}).items():
        yield from _walk(sub, f"$defs.{name}.")


def test_every_key_has_a_description_and_the_right_defaults():
    props = list(all_properties())
    assert len(props) > 40
    for path, sub in props:
        assert sub.get("description"), f"{path} has no description"
        if not path.startswith(NO_DEFAULT):
            assert "default" in sub, f"{path} has no default"
        else:
            assert "default" not in sub, f"{path} must not inject a default"


def test_every_object_rejects_unknown_keys():
    def objects(node, path="config"):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, sub in node.get("properties", {}).items():
            yield from objects(sub, f"{path}.{key}")
        for k in ("additionalProperties", "items"):
            if isinstance(node.get(k), dict):
                yield from objects(node[k], f"{path}.*")
        for name, sub in node.get("$defs", {}).items():
            yield from objects(sub, f"$defs.{name}")

    found = list(objects(SCHEMA))
    assert len(found) >= 8
    for path, node in found:
        assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_enums_match_mfg_core():
    p = SCHEMA["properties"]
    assert SCHEMA["$defs"]["problem"]["properties"]["name"]["enum"] == mc.problems.names()
    assert p["backends"]["items"]["enum"] == mc.backends.names()
    assert p["reference_backend"]["enum"] == mc.backends.names()
    assert p["exclude"]["items"]["properties"]["backend"]["enum"] == mc.backends.names()
    rules = p["particle"]["properties"]["bandwidth"]["oneOf"][0]["enum"]
    assert tuple(rules) == tuple(kde.BANDWIDTH_RULES)
    # the method registry names every FP and coupling method the schema accepts, and nothing else
    assert p["fp_methods"]["items"]["enum"] == methods.names("fp")
    assert p["couplings"]["items"]["enum"] == methods.names("coupling")
    assert p["exclude"]["items"]["properties"]["fp"]["enum"] == methods.names("fp")
    assert p["exclude"]["items"]["properties"]["coupling"]["enum"] == methods.names("coupling")
    # and the study kinds name the same methods and backends
    for kind in ("convergence", "sweep", "scaling"):
        spec = p[kind]["additionalProperties"]["properties"]
        assert spec["fp"]["enum"] == methods.names("fp"), kind
        if "coupling" in spec:
            assert spec["coupling"]["enum"] == methods.names("coupling"), kind
        if "backend" in spec:
            assert spec["backend"]["enum"] == mc.backends.names(), kind
    assert p["sweep"]["additionalProperties"]["properties"]["couplings"]["items"]["enum"] == methods.names("coupling")
    assert p["scaling"]["additionalProperties"]["properties"]["backends"]["items"]["enum"] == mc.backends.names()
    # the newton block names options of the registered method
    assert set(p["newton"]["properties"]) <= set(methods.get("coupling", "newton").options)
    opts = SCHEMA["$defs"]["anderson_options"]["properties"]
    # the Anderson settings, plus the particle solver's common random numbers for these runs
    assert set(opts) == set(anderson.OPTION_NAMES) - {"depth"} | {"common_random_numbers"}
    assert set(opts) - {"common_random_numbers"} <= set(methods.get("coupling", "anderson").options)
    # plain = every safeguard off, exactly as the registered anderson_plain method defines it
    plain = p["anderson"]["properties"]["plain_options"]["default"]
    assert plain == {**anderson.PLAIN_OPTIONS, "common_random_numbers": False}
    assert methods.get("coupling", "anderson_plain").fp_defaults == {"common_random_numbers": False}


@pytest.mark.parametrize("name", ["config/config.yaml", *sorted(
    str(q.relative_to(Path(__file__).resolve().parents[2]))
    for q in (Path(__file__).resolve().parents[2] / "config/studies").glob("*.yaml"))])
def test_shipped_configs_validate(name):
    jsonschema = pytest.importorskip("jsonschema")
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / name).read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(cfg)
