"""File retention: which uploaded files of a run a ``files:`` rule would delete.

Storage is what W&B users run out of (wandb/wandb#9749, #10928, #7311). A file is
deleted by a rule when it matches one of the rule's ``delete`` globs, is not protected
(a ``keep`` glob of any rule matching the run, or a W&B system file), passes
``older_than`` and ``larger_than``, and is not among the run's ``keep_last`` newest such
candidates. ``unless_top`` needs every matched run's metric, so the planner applies it
at the end with ``top_runs``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from wcmatch import glob

from reconcile.models import FilesRule, Goal, KeyPath, LiveFile, LiveRun
from reconcile.render.common import size_text

SYSTEM_FILES = (
    "wandb-metadata.json",
    "wandb-summary.json",
    "config.yaml",
    "requirements.txt",
    "output.log",
    "diff.patch",
    "code/**",
)
"""Files W&B writes for every run; deleting them breaks the run page, so they are protected by default."""

_FLAGS = glob.GLOBSTAR  # `*` stays within a path segment, `**` crosses segments


def glob_matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether the run-relative file path ``name`` matches any of ``patterns``."""
    return bool(patterns) and glob.globmatch(name, list(patterns), flags=_FLAGS)


def is_system_file(name: str) -> bool:
    """Whether ``name`` is one of the files W&B writes for every run (protected by default)."""
    return glob_matches(name, SYSTEM_FILES)


def select(
    rule: FilesRule, files: Iterable[LiveFile], *, keep: Sequence[str], now: datetime
) -> list[LiveFile]:
    """The files ``rule`` would delete from one run, before ``unless_top``.

    ``keep`` holds the keep globs of the other rules that match the run (any rule's keep
    wins; the rule's own are always added). ``keep_last`` ranks the candidates left after protection and the
    ``older_than``/``larger_than`` narrowing, so it can only spare more files.
    """
    keep = (*rule.keep, *keep)
    candidates = [
        f
        for f in files
        if glob_matches(f.name, rule.delete)
        and not glob_matches(f.name, keep)
        and (rule.allow_system_files or not is_system_file(f.name))
        and (rule.older_than is None or f.updated_at < now - rule.older_than)
        and (rule.larger_than is None or f.size > rule.larger_than)
    ]
    if rule.keep_last:
        newest_first = sorted(candidates, key=lambda f: (-f.updated_at.timestamp(), f.name))
        candidates = newest_first[rule.keep_last:]
    return sorted(candidates, key=lambda f: f.name)


def metric_value(run: LiveRun, metric: KeyPath) -> float | None:
    """The run's summary metric as a number, or None when missing, non-numeric or NaN."""
    node: object = run.summary
    for key in metric:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    value = float(node)
    return None if math.isnan(value) else value


def top_runs(scores: Iterable[tuple[str, float | None]], goal: Goal, count: int) -> frozenset[str]:
    """Ids of the best ``count`` runs; missing/NaN metrics rank last, ties go to the smaller run id."""
    sign = -1.0 if goal is Goal.MAXIMIZE else 1.0

    def rank(item: tuple[str, float | None]) -> tuple[int, float, str]:
        run_id, value = item
        return (1, 0.0, run_id) if value is None else (0, sign * value, run_id)

    return frozenset(run_id for run_id, _ in sorted(scores, key=rank)[: max(count, 0)])


def describe(file: LiveFile, now: datetime) -> str:
    """Display-only size and age of a file, e.g. ``114.4 MiB, 320 days old``."""
    size = size_text(file.size)
    days = max((now - file.updated_at).days, 0)
    return f"{size}, {days} day{'s' if days != 1 else ''} old"
