"""Validate a config against ``schemas/config.schema.yaml`` with a one-line message.

Snakemake's own ``validate`` prints the whole schema fragment and the instance on failure. Here the
error says where (``models.dpo_0.1``), what is wrong, and for an unknown key the closest valid one
(``unknown key 'fracton' (did you mean 'fraction'?)``). Defaults are filled exactly as Snakemake's
``validate(..., set_default=True)`` fills them (``properties`` with a ``default:``, wherever the
schema evaluates them), so the params of finished jobs are unchanged.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .experiment import ConfigError

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _validator(schema: Mapping[str, Any]):
    from jsonschema import Draft202012Validator, validators

    props = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, sub["default"])
        yield from props(validator, properties, instance, subschema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})(schema)


def validate_config(config: dict, schema: Mapping[str, Any] | None = None) -> dict:
    """Check ``config`` in place (filling schema defaults) and return it; raise :class:`ConfigError`."""
    from jsonschema.exceptions import best_match

    schema = schema if schema is not None else load_schema()
    validator = _validator(schema)
    errors = list(validator.iter_errors(config))
    # A failing `then` branch leaves its keys "unevaluated": report the branch's error, not its keys.
    errors = [e for e in errors if not _only_known_keys(e, schema)] or errors
    if errors:
        raise ConfigError(describe(best_match(errors, key=_relevance), schema))
    for where, value in _leaves(config, ()):
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{'.'.join(where)}: NaN is not a number (every value must be finite)")
    return config


def _leaves(node: Any, where: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every scalar of a config with its dotted path (JSON schema bounds let NaN through)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*where, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*where, str(i)))
    else:
        yield where, node


def _unexpected(error, schema: Mapping[str, Any]) -> tuple[list[str], set[str]]:
    """The keys an additional/unevaluated-properties error names, and the keys the schema node knows."""
    known = set(_property_names(error.schema, schema))
    extra = re.findall(r"'([^']*)'", error.message.split("(", 1)[-1]) or sorted(set(error.instance) - known)
    return extra, known


def _only_known_keys(error, schema: Mapping[str, Any]) -> bool:
    if error.validator != "unevaluatedProperties" or not isinstance(error.instance, dict):
        return False
    extra, known = _unexpected(error, schema)
    return bool(extra) and set(extra) <= known


def _relevance(error) -> tuple:
    """Prefer errors deep in the config (they name the culprit), and unknown keys over `oneOf` noise."""
    from jsonschema.exceptions import relevance

    unknown = error.validator in ("additionalProperties", "unevaluatedProperties")
    return (unknown, *relevance(error))


def describe(error, schema: Mapping[str, Any]) -> str:
    """One line: ``<where>: <what>``, with the closest valid key for an unknown key."""
    where = ".".join(str(p) for p in error.absolute_path) or "config"
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        extra, known = _unexpected(error, schema)
        if extra:
            key = extra[0]
            if key in known:  # a key of another branch, e.g. `repo` on a local model
                return f"{where}: key {key!r} does not apply with these settings (it belongs to another `source`)"
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {sorted(known)}"
            return f"{where}: unknown key {key!r}{hint}"
    if error.validator == "not" and isinstance(error.instance, str):
        why = error.validator_value.get("description", "reserved") if isinstance(error.validator_value, dict) else ""
        return f"{where}: {error.instance!r} is not an allowed name ({why})"
    return f"{where}: {error.message}"


def _property_names(node: Any, root: Mapping[str, Any], depth: int = 0) -> Iterator[str]:
    """Every key a schema node accepts, following ``$ref`` and the ``allOf`` / ``if``-``then`` branches."""
    if not isinstance(node, dict) or depth > 8:
        return
    yield from node.get("properties", {})
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        yield from _property_names(target, root, depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            yield from _property_names(sub, root, depth + 1)
    for key in ("then", "else"):
        yield from _property_names(node.get(key), root, depth + 1)
