"""Load spec files: YAML with positions, the JSON Schema, semantic checks, frozen models.

The one module that imports ``yaml`` and ``jsonschema`` for specs (pre-commit's
``clientlib.py`` shape). ``schemas/reconcile.schema.json`` is the one definition of the
spec's shape; this module adds what a schema cannot say (templates, globs, durations,
sizes, key paths, conflicting operations, duplicate rule names across files) and reports
*every* problem as a ``SpecIssue`` with file, line, column and JSON path.

Several files (and directories: their ``*.yaml``/``*.yml``, sorted by name) merge into
one spec: rules are concatenated in load order; ``version`` is required in every file;
``target`` and ``limits`` may be given in any number of files but must then be equal
(the usual GitOps layout gives them once, in ``00-target.yaml``); rule names are unique
across all files. A file given twice (``-f a.yaml -f .``) is read once.

Hostile input never raises anything but ``SpecError``: the document is composed from
libyaml's event stream without recursion (libyaml's own composer crashes the process on
very deep nesting), nesting is bounded, and YAML aliases may expand to at most
``MAX_ALIAS_EXPANSION`` values beyond what the file itself holds (a "billion laughs" file
is refused instead of eating memory).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.errors import SpecError, SpecIssue
from reconcile.models import Spec
from reconcile.spec.builder import Builder
from reconcile.spec.document import (
    MAX_ALIAS_EXPANSION,
    MAX_DEPTH,
    Abort,
    Document,
    JsonPath,
    render_path,
)
from reconcile.spec.files import FileReport, FileResult, decode, expand, issue_order
from reconcile.spec.globs import FILE_GLOB_FLAGS, MAX_GLOB_LENGTH, NAME_GLOB_FLAGS
from reconcile.spec.merge import merge
from reconcile.spec.validation import SCHEMA_FILE, SCHEMA_PACKAGE, validator

__all__ = [
    "FILE_GLOB_FLAGS",
    "MAX_ALIAS_EXPANSION",
    "MAX_DEPTH",
    "MAX_GLOB_LENGTH",
    "NAME_GLOB_FLAGS",
    "SCHEMA_FILE",
    "SCHEMA_PACKAGE",
    "FileReport",
    "JsonPath",
    "LoadResult",
    "inspect_paths",
    "load_spec",
    "render_path",
    "schema",
    "validate_paths",
]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The merged spec (``None`` when there is any issue), per-file reports and every issue."""

    spec: Spec | None
    files: tuple[FileReport, ...]
    issues: tuple[SpecIssue, ...]


def inspect_paths(paths: Sequence[Path]) -> LoadResult:
    """Read, check and merge spec files and directories; never raises ``SpecError``."""
    files, reports, path_issues = expand(paths)
    results: list[FileResult] = []
    digest = hashlib.sha256()
    for name, file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            results.append(
                FileResult(name, issues=[SpecIssue(name, 0, 0, "", f"cannot read the file: {reason}")])
            )
            continue
        digest.update(data)
        results.append(read_file(name, data))
    spec, merge_issues = merge(results, "sha256:" + digest.hexdigest())
    all_issues = sorted(
        [*path_issues, *merge_issues, *(i for r in results for i in r.issues)], key=issue_order
    )
    for result in results:
        mine = tuple(i for i in all_issues if i.file == result.file)
        reports.append(FileReport(result.file, len(result.raw_rules), mine, len(result.raw_imports)))
    return LoadResult(spec if not all_issues else None, tuple(reports), tuple(all_issues))


def load_spec(paths: Sequence[Path]) -> Spec:
    """The merged spec of ``paths`` (files or directories); raises ``SpecError`` listing every issue."""
    result = inspect_paths(paths)
    if result.spec is None:
        raise SpecError(list(result.issues))
    return result.spec


def validate_paths(paths: Sequence[Path]) -> list[SpecIssue]:
    """Every problem in the spec made of ``paths``, sorted by file and position; empty if valid."""
    return list(inspect_paths(paths).issues)


def schema() -> dict[str, Any]:
    """The spec's JSON Schema (``schemas/reconcile.schema.json``, shipped as package data)."""
    return dict(validator().schema)


def read_file(name: str, data: bytes) -> FileResult:
    """Parse, schema-check and build one file; every problem becomes an issue."""
    result = FileResult(name)
    try:
        text = decode(name, data)
        document = Document.parse(name, text)
        Builder(document, result).build()
        result.issues.extend(document.issues)
    except Abort as abort:
        result.issues.append(abort.issue)
    except RecursionError:
        result.issues.append(
            SpecIssue(name, 0, 0, "", f"the document is nested too deeply (limit {MAX_DEPTH})")
        )
    return result
