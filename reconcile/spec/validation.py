"""The spec's JSON Schema and its errors worded for a person editing YAML."""

from __future__ import annotations

import difflib
import functools
import json
from importlib import resources
from typing import Any

import jsonschema

from reconcile.errors import ReconcileError
from reconcile.models import SPEC_VERSIONS
from reconcile.spec.document import JsonPath, short

SCHEMA_PACKAGE = "reconcile.schemas"
SCHEMA_FILE = "reconcile.schema.json"
"""The JSON Schema of the spec: ``schemas/reconcile.schema.json``, shipped as package data of
``reconcile.schemas`` (pyproject.toml maps that package to ``schemas/``, in the wheel and editable)."""

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_PATTERN_HINTS = {
    "^[^/\\s]*$": "must not contain '/' or whitespace",
    "^(\\S(.*\\S)?)?$": "must not be blank, span lines, or start or end with whitespace",
    "^[A-Za-z_][A-Za-z0-9_]*$": "must be the name of an environment variable (letters, digits and _), "
    "never the key itself",
    "^https?://\\S+$": "must be an http:// or https:// URL",
    "^\\S+$": "must not contain whitespace",
}
_ACTIONS = ("set", "add_tags", "remove_tags", "unset", "rename", "files", "artifacts")


@functools.lru_cache(maxsize=1)
def validator() -> jsonschema.protocols.Validator:
    where = f"the spec schema ({SCHEMA_FILE} in the package {SCHEMA_PACKAGE})"
    try:
        text = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
        document = json.loads(text)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ReconcileError(f"{where} is missing; reinstall: pip install wandb-reconcile") from exc
    except (OSError, ValueError) as exc:
        raise ReconcileError(f"{where} cannot be read ({exc}); reinstall wandb-reconcile") from exc
    cls = jsonschema.validators.validator_for(document)
    return cls(document)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    for kind, check in (("object", dict), ("array", list), ("string", str), ("number", (int, float))):
        if isinstance(value, check):
            return _TYPE_NAMES[kind]
    return "null" if value is None else type(value).__name__


def schema_messages(  # noqa: PLR0912 - one wording per JSON Schema keyword
    error: jsonschema.ValidationError,
) -> list[tuple[JsonPath, bool, str]]:
    """(path, at the key?, message) for one schema error, worded for a person editing YAML."""
    path: JsonPath = tuple(error.absolute_path)
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.relative_schema_path:  # the error is about a key, reported at its mapping
        return [(path, False, f"has an invalid key {short(instance)}: keys must not be empty")]
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        out = []
        for key in instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
            out.append(((*path, key), True, f"unknown key {key!r}{hint}"))
        return out
    if kind == "required" and isinstance(instance, dict):
        hints = {"version": "; start the file with `version: 1`"}
        return [
            (path, False, f"missing required key {k!r}{hints.get(k, '')}")
            for k in expected
            if k not in instance
        ]
    if kind in ("anyOf", "oneOf"):
        return _alternatives_messages(error, path)
    if kind == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return [
            (
                path,
                False,
                f"must be {' or '.join(_TYPE_NAMES.get(t, t) for t in types)}, not {_type_of(instance)}",
            )
        ]
    if kind == "const":
        if path == ("version",):
            supported = ", ".join(str(v) for v in SPEC_VERSIONS)
            return [
                (
                    path,
                    False,
                    f"unsupported spec version {short(instance)}: this build reads spec version "
                    f"{supported}; write `version: 1` or upgrade reconcile",
                )
            ]
        if path[-1:] == ("all",):
            return [
                (
                    path,
                    False,
                    "`all` can only be true (match every run); remove it to match by the other conditions",
                )
            ]
        return [(path, False, f"must be {short(expected)}")]
    if kind == "enum":
        return [(path, False, f"must be one of {', '.join(map(str, expected))}, not {short(instance)}")]
    if kind in ("minProperties", "maxProperties") and path[-1:] == ("from",):
        return [(path, False, "give exactly one source: `mlflow` or `wandb`")]
    if kind in ("minItems", "minLength", "minProperties"):
        return [(path, False, "must not be empty" if expected == 1 else f"needs at least {expected} items")]
    if kind == "maxLength":
        return [(path, False, f"is longer than {expected} characters")]
    if kind == "minimum":
        return [(path, False, f"must be at least {expected}, not {short(instance)}")]
    if kind == "pattern":
        return [(path, False, _PATTERN_HINTS.get(expected, f"does not match {expected}"))]
    if kind == "uniqueItems" and isinstance(instance, list):
        dupes = [v for i, v in enumerate(instance) if v in instance[:i]]
        return [(path, False, f"lists {short(dupes[0]) if dupes else 'an item'} more than once")]
    message = error.message
    return [(path, False, message if len(message) <= 200 else message[:197] + "...")]


def _alternatives_messages(
    error: jsonschema.ValidationError, path: JsonPath
) -> list[tuple[JsonPath, bool, str]]:
    context = list(error.context or ())
    if context and all(e.validator == "required" for e in context):
        wanted = [e.validator_value[0] for e in context]
        noun = "rule" if set(wanted) == set(_ACTIONS) else "mapping"
        return [(path, False, f"the {noun} needs at least one of: {', '.join(wanted)}")]
    # Drop the branches that fail only on the instance's type; report the deepest remaining error.
    relevant = [e for e in context if not (e.validator == "type" and not e.relative_path)]
    if relevant:
        return schema_messages(max(relevant, key=lambda e: len(e.relative_path)))
    types = [e.validator_value for e in context if e.validator == "type"]
    names = [_TYPE_NAMES.get(t, t) for t in types if isinstance(t, str)]
    return [
        (path, False, f"must be {' or '.join(names) or 'something else'}, not {_type_of(error.instance)}")
    ]
