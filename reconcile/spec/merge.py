"""One spec from several files: rules concatenated, one target and limits, unique rule names."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

from reconcile.errors import SpecIssue
from reconcile.models import SPEC_VERSIONS, Limits, Location, Spec, Target
from reconcile.spec.files import FileResult

_T = TypeVar("_T")


def _one_setting(found: Sequence[tuple[_T, Location] | None], key: str, issues: list[SpecIssue],
                 message: str) -> tuple[_T, Location] | None:
    """The one value a top-level setting has across files; each different one is an issue there."""
    first: tuple[_T, Location] | None = None
    for item in found:
        if item is None:
            continue
        if first is None:
            first = item
        elif item[0] != first[0]:
            loc = item[1]
            issues.append(SpecIssue(loc.file, loc.line, loc.column, key, message.format(first=first[1])))
    return first


def merge(results: Sequence[FileResult], digest: str) -> tuple[Spec | None, list[SpecIssue]]:
    """One spec from several files: rules and imports concatenated, one target/limits, unique names."""
    issues: list[SpecIssue] = []
    spec_target = _one_setting(
        [r.target for r in results], "target", issues,
        "differs from the spec target at {first}; give `target` in one file only (a rule can override it "
        "with its own `target`)")
    spec_limits = _one_setting(
        [r.limits for r in results], "limits", issues,
        "differ from the limits at {first}; give `limits` in one file only")
    names: dict[str, Location] = {}
    named = [
        (section, index, name, loc)
        for result in results
        for section, found in (("rules", result.rule_names), ("imports", result.import_names))
        for index, name, loc in found
    ]
    for section, index, name, loc in named:
        if name in names:
            noun = "rule" if section == "rules" else "import"
            issues.append(
                SpecIssue(
                    loc.file,
                    loc.line,
                    loc.column,
                    f"{section}[{index}].name",
                    f"duplicate {noun} name {name!r}: also at {names[name]}; rule and import names must be "
                    "unique across all spec files",
                )
            )
        else:
            names[name] = loc
    if issues or any(r.issues for r in results) or not results:
        return None, issues
    target = spec_target[0] if spec_target else Target()
    rules = tuple(
        dataclasses.replace(rule, target=rule.target.over(target))
        for result in results
        for rule in result.rules
        if rule is not None
    )
    imports = tuple(
        dataclasses.replace(entry, target=entry.target.over(target))
        for result in results
        for entry in result.imports
        if entry is not None
    )
    spec = Spec(
        version=SPEC_VERSIONS[-1],
        target=target,
        limits=spec_limits[0] if spec_limits else Limits(),
        rules=rules,
        digest=digest,
        sources=tuple(r.file for r in results),
        imports=imports,
    )
    return spec, issues
