"""Templates in spec values: ``"{config.model}-lr{config.lr}"``, ``"{summary.val_acc:.3f}"``,
``"{created_at:%Y-%m-%d}"``.

Only substitution: a field is ``id``, ``name``, ``group``, ``job_type``, ``notes``,
``state``, ``created_at``, or ``config.<dotted path>`` / ``summary.<dotted path>``,
optionally followed by a Python format spec. No conversions (``!r``), no indexing, no
nested fields, no expressions. A key missing on the run is an error for that run,
never an empty string. ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconcile.models import LiveRun

SIMPLE_FIELDS = ("id", "name", "group", "job_type", "notes", "state", "created_at")
_formatter = string.Formatter()


class TemplateError(ValueError):
    """A template is malformed, or names a key the run does not have."""


@dataclass(frozen=True, slots=True)
class Field:
    """One ``{...}`` of a template."""

    source: str  # one of SIMPLE_FIELDS, "config" or "summary"
    path: tuple[str, ...]  # key path for config/summary, () otherwise
    format_spec: str

    @property
    def text(self) -> str:
        """The field as written, without the format spec."""
        return ".".join((self.source, *self.path))


def parse(template: str) -> tuple[tuple[str, Field | None], ...]:
    """Split a template into ``(literal, field)`` pairs; raises TemplateError if malformed."""
    try:
        parts = list(_formatter.parse(template))
    except ValueError as exc:
        raise TemplateError(f"malformed template {template!r}: {exc}") from exc
    out: list[tuple[str, Field | None]] = []
    for literal, field_name, format_spec, conversion in parts:
        if field_name is None:
            out.append((literal, None))
            continue
        if conversion:
            raise TemplateError(f"template {template!r}: conversions like '!{conversion}' are not allowed")
        if format_spec and ("{" in format_spec or "}" in format_spec):
            raise TemplateError(f"template {template!r}: nested fields in a format spec are not allowed")
        out.append((literal, _parse_field(template, field_name, format_spec or "")))
    return tuple(out)


def _parse_field(template: str, name: str, format_spec: str) -> Field:
    if not name:
        raise TemplateError(f"template {template!r}: empty field '{{}}'; name a field such as {{id}}")
    if any(ch in name for ch in "[]()'\" "):
        raise TemplateError(f"template {template!r}: field {{{name}}} may only be a dotted key path")
    head, _, rest = name.partition(".")
    if head in ("config", "summary"):
        path = tuple(rest.split(".")) if rest else ()
        if not path or any(not p for p in path):
            raise TemplateError(f"template {template!r}: field {{{name}}} needs a key, e.g. {{{head}.lr}}")
        return Field(head, path, format_spec)
    if head in SIMPLE_FIELDS and not rest:
        return Field(head, (), format_spec)
    allowed = ", ".join(f"{{{f}}}" for f in SIMPLE_FIELDS)
    raise TemplateError(
        f"template {template!r}: unknown field {{{name}}}; use {allowed}, {{config.KEY}} or {{summary.KEY}}"
    )


def fields(template: str) -> tuple[Field, ...]:
    """The fields a template reads (for fingerprints and validation)."""
    return tuple(f for _, f in parse(template) if f is not None)


def is_template(text: str) -> bool:
    """Whether ``text`` has at least one field."""
    return bool(fields(text))


def _value(run: LiveRun, fld: Field) -> Any:
    if fld.source in ("config", "summary"):
        node: Any = run.config if fld.source == "config" else run.summary
        for key in fld.path:
            if not isinstance(node, Mapping) or key not in node:
                raise TemplateError(f"the run has no {fld.text}")
            node = node[key]
        return node
    value = getattr(run, fld.source)
    if value is None:
        raise TemplateError(f"the run has no {fld.text}")
    return value


def render(template: str, run: LiveRun) -> str:
    """The template filled from ``run``; raises TemplateError naming a missing key."""
    out: list[str] = []
    for literal, fld in parse(template):
        out.append(literal)
        if fld is None:
            continue
        value = _value(run, fld)
        if value is None:
            raise TemplateError(f"the run's {fld.text} is null")
        if isinstance(value, (Mapping, list, tuple)):
            raise TemplateError(f"the run's {fld.text} is a {type(value).__name__}, not a single value")
        try:
            out.append(format(value, fld.format_spec))
        except (ValueError, TypeError) as exc:
            raise TemplateError(
                f"cannot format {fld.text}={value!r} with '{fld.format_spec}': {exc}"
            ) from exc
    return "".join(out)
