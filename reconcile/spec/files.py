"""Which files make a spec (directories give their sorted YAML files), and reading their text."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.errors import SpecIssue
from reconcile.models import Import, Limits, Location, Rule, Target
from reconcile.spec.document import Abort


@dataclass(frozen=True, slots=True)
class FileReport:
    """What loading found in one file: how many rules (and imports) it holds and its problems."""

    file: str
    rules: int
    issues: tuple[SpecIssue, ...]
    imports: int = 0


def issue_order(issue: SpecIssue) -> tuple[str, int, int, str]:
    return (issue.file, issue.line, issue.column, issue.path)


def expand(paths: Sequence[Path]) -> tuple[list[tuple[str, Path]], list[FileReport], list[SpecIssue]]:
    """The spec files named by ``paths`` (directories give their sorted YAML files)."""
    files: list[tuple[str, Path]] = []
    reports: list[FileReport] = []
    issues: list[SpecIssue] = []
    seen: set[Path] = set()

    def problem(name: str, message: str) -> None:
        issue = SpecIssue(name, 0, 0, "", message)
        issues.append(issue)
        reports.append(FileReport(name, 0, (issue,)))

    if not paths:
        problem("<none>", "no spec files given; name a spec file or a directory of them")
    for path in paths:
        name = str(path)
        try:
            if path.is_dir():
                members = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
                if not members:
                    problem(name, "the directory holds no .yaml or .yml files")
            elif path.exists():
                members = [path]
            else:
                problem(name, "no such file or directory; check the path")
                continue
        except OSError as exc:
            problem(name, f"cannot read: {exc.strerror or type(exc).__name__}")
            continue
        for member in members:
            key = member.resolve()
            if key not in seen:
                seen.add(key)
                files.append((str(member), member))
    return files, reports, issues


@dataclass
class FileResult:
    """One file's part of the spec, before merging."""

    file: str
    issues: list[SpecIssue] = dataclasses.field(default_factory=list)
    raw_rules: list[Any] = dataclasses.field(default_factory=list)
    rules: list[Rule | None] = dataclasses.field(default_factory=list)
    rule_names: list[tuple[int, str, Location]] = dataclasses.field(default_factory=list)
    raw_imports: list[Any] = dataclasses.field(default_factory=list)
    imports: list[Import | None] = dataclasses.field(default_factory=list)
    import_names: list[tuple[int, str, Location]] = dataclasses.field(default_factory=list)
    target: tuple[Target, Location] | None = None
    limits: tuple[Limits, Location] | None = None


def decode(name: str, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise Abort(
            SpecIssue(
                name,
                line,
                column,
                "",
                f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8",
            )
        ) from exc
