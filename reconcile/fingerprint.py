"""Fingerprints: a hash of exactly the live fields a run's plan depends on.

A field reference is a tuple: ``("config", *key_path)``, ``("summary", *key_path)``,
or one of ``("tags",) ("name",) ("notes",) ("group",) ("job_type",) ("state",)
("created_at",) ("files",)``, or ``("files", NAME)``: only the files named NAME (an undo's re-upload
depends on the name it writes, not on the whole list). The planner records the fields it read for a run; apply
re-reads the run, hashes the same fields and calls the run stale if the hash differs.
Beside the whole fingerprint the plan keeps a short digest per field, so a stale run can be
reported with the fields that drifted (``tags``, ``config.lr``, ``files``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconcile.models import LiveRun

FieldRef = tuple[str, ...]

class _Absent:
    """A key that does not exist (distinct from a null value)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()
"""What ``lookup`` returns for a missing key; shared by the planner and apply."""

_SIMPLE = {"tags", "name", "notes", "group", "job_type", "state", "created_at"}


def lookup(mapping: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in nested ``mapping``, or ``ABSENT``."""
    node: Any = mapping
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return ABSENT
        node = node[key]
    return node


def field_value(run: LiveRun, ref: FieldRef) -> Any:
    """The JSON-safe live value a field reference names."""
    head, rest = ref[0], ref[1:]
    if head == "config":
        return lookup(run.config, rest)
    if head == "summary":
        return lookup(run.summary, rest)
    if head == "tags":
        return sorted(run.tags)
    if head == "created_at":
        return run.created_at.isoformat()
    if head == "files":
        if run.files is None:
            return ABSENT
        return sorted([f.id, f.name, f.size, f.updated_at.isoformat()] for f in run.files
                      if not rest or f.name == "/".join(rest))
    if head in _SIMPLE:
        return getattr(run, head)
    raise ValueError(f"unknown fingerprint field {ref!r}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr, allow_nan=True)


def _entry(run: LiveRun, ref: FieldRef) -> list[Any]:
    """``[ref, value]``, or ``[ref]`` for a missing key: an entry no value can spell (a marker value such
    as ``{"<absent>": true}`` would hash like a config key set to that very value)."""
    value = field_value(run, ref)
    return [list(ref)] if value is ABSENT else [list(ref), value]


def fingerprint(run: LiveRun, fields: Iterable[FieldRef]) -> str:
    """sha256 over the run's identity (entity, project, id, storage id) and the canonical JSON of
    the named live fields of ``run``: a fingerprint copied onto another run never matches it."""
    payload: list[Any] = [["run", run.entity, run.project, run.id, run.storage_id]]
    payload += [_entry(run, ref) for ref in sorted({tuple(f) for f in fields})]
    return "sha256:" + hashlib.sha256(_canonical(payload).encode()).hexdigest()


DIGEST_CHARS = 12
"""Hex characters of sha256 kept per field: enough to tell which field changed (the whole
``fingerprint`` still decides whether a run is stale)."""


def field_digests(run: LiveRun, fields: Iterable[FieldRef]) -> tuple[str, ...]:
    """One short digest per field of ``fields``, in their given order."""
    return tuple(hashlib.sha256(_canonical(_entry(run, tuple(ref))).encode()).hexdigest()[:DIGEST_CHARS]
                 for ref in fields)


def drifted(run: LiveRun, fields: Sequence[FieldRef], digests: Sequence[str]) -> tuple[str, ...]:
    """The fields (``config.lr``, ``tags``, ``files``) whose live value no longer has the digest the
    plan recorded; empty when the plan recorded none (a plan from an older reconcile)."""
    if len(digests) != len(fields):
        return ()
    now = field_digests(run, fields)
    return tuple(_shown(ref) for ref, then, live in zip(fields, digests, now, strict=True) if then != live)


def _shown(ref: FieldRef) -> str:
    """A field as a person reads it: ``config.lr``, ``tags``, ``files``, ``file ckpt/1.pt``."""
    if ref[0] == "files" and len(ref) > 1:
        return f"file {'/'.join(ref[1:])}"
    return ".".join(ref)
