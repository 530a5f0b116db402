"""File retention: which uploaded files of a run a ``files:`` rule would delete, and why the rest survive.

Storage is what W&B users run out of (wandb/wandb#9749, #10928, #7311). A file is a
*candidate* of a rule when it matches one of the rule's ``delete`` globs. A candidate
survives when it is protected (a ``keep`` glob of any rule matching the run, or a W&B
system file), fails ``older_than`` or ``larger_than``, or is picked by one of the policy
selectors that rank the remaining candidates: ``keep_last``, the calendar buckets
``keep_hourly`` ... ``keep_yearly`` and ``keep_within``, with restic's ``forget``
semantics (``reconcile.policy``). Every survivor carries the reasons it survives (the
plan's "kept and why"). ``unless_top`` needs every matched run's metric, so the planner
applies it at the end with ``top_runs``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from wcmatch import glob

from reconcile import policy
from reconcile.models import (
    FilesRule,
    Goal,
    KeepReason,
    KeptFile,
    KeyPath,
    LiveFile,
    LiveRun,
    UnlessTop,
    utc_from_iso,
)
from reconcile.render.common import age_text, original_upload_text, size_text

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

RESTORED_KEY = ("_reconcile", "restored_files")
"""Where an undo remembers, in the run's summary, the original upload time of each file it
re-uploaded: ``{name: {"updated_at": ISO, "size": N, "md5": W&B's md5}}``. A re-upload gets a
new upload time from W&B; without this, ``keep_last`` and ``older_than`` would rank a restored
old checkpoint as the newest file and delete the real newest ones."""

_FLAGS = glob.GLOBSTAR  # `*` stays within a path segment, `**` crosses segments


def glob_matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether the run-relative file path ``name`` matches any of ``patterns``."""
    return bool(patterns) and _matcher(tuple(patterns)).match(name)


@lru_cache(maxsize=4096)
def _matcher(patterns: tuple[str, ...]) -> Any:
    """``patterns`` compiled once (``globmatch`` compiles them on every call: half of a plan's CPU)."""
    return glob.compile(list(patterns), flags=_FLAGS)


def is_system_file(name: str) -> bool:
    """Whether ``name`` is one of the files W&B writes for every run (protected by default)."""
    return glob_matches(name, SYSTEM_FILES)


@dataclass(slots=True)
class Decision:
    """What one files rule decides for one run: the files it deletes and its candidates that survive."""

    delete: list[LiveFile] = field(default_factory=list)
    kept: list[KeptFile] = field(default_factory=list)
    original: dict[str, datetime] = field(default_factory=dict)  # file id -> the original upload time it
    # was ranked by, for the candidates an undo re-uploaded (display: the plan shows that time)

    @property
    def candidates(self) -> int:
        """How many files the rule's ``delete`` globs matched."""
        return len(self.delete) + len(self.kept)


def _protection(rule_name: str, rule: FilesRule, file: LiveFile, keep: Sequence[str],
                now: datetime, uploaded: datetime) -> list[KeepReason]:
    """Why a candidate may not be deleted at all, before the policy selectors rank the rest."""
    reasons = [KeepReason(rule_name, "keep", f'"{pattern}"') for pattern in dict.fromkeys(keep)
               if glob_matches(file.name, [pattern])]
    if not rule.allow_system_files and is_system_file(file.name):
        reasons.append(KeepReason(rule_name, "system_file"))
    return reasons + narrowing(rule_name, rule, uploaded, file.size, now)


def narrowing(rule_name: str, rule: policy.HasPolicy, when: datetime, size: int,
              now: datetime) -> list[KeepReason]:
    """Why ``older_than``/``larger_than`` leave a candidate (a file or an artifact version) alone."""
    reasons = []
    if rule.older_than is not None and not when < now - rule.older_than:
        age = age_text(when, now)
        reasons.append(KeepReason(rule_name, "older_than",
                                  f"{policy.duration_text(rule.older_than)} not reached ({age})"))
    if rule.larger_than is not None and not size > rule.larger_than:
        reasons.append(KeepReason(rule_name, "larger_than",
                                  f"{size_text(rule.larger_than)} not exceeded ({size_text(size)})"))
    return reasons


def restored_record(file: LiveFile) -> dict[str, object]:
    """What an undo writes under ``RESTORED_KEY`` for a file it re-uploads (``file`` is the original)."""
    return {"updated_at": file.updated_at.isoformat().replace("+00:00", "Z"), "size": file.size,
            "md5": file.md5}


def upload_times(run: LiveRun, files: Iterable[LiveFile]) -> dict[str, datetime]:
    """Each file's upload time for retention, by file id: W&B's, or for a file an undo re-uploaded
    (same name, size and md5 as recorded under ``RESTORED_KEY``) the original one."""
    node: object = run.summary
    for key in RESTORED_KEY:
        node = node.get(key) if isinstance(node, Mapping) else None
    records = node if isinstance(node, Mapping) else {}
    times: dict[str, datetime] = {}
    for file in files:
        times[file.id] = file.updated_at
        record = records.get(file.name)
        if not isinstance(record, Mapping) or record.get("size") != file.size:
            continue
        if record.get("md5") and file.md5 and record.get("md5") != file.md5:
            continue  # another file uploaded under that name since the undo
        try:
            times[file.id] = utc_from_iso(str(record.get("updated_at")))
        except ValueError:
            continue
    return times


def decide(rule_name: str, rule: FilesRule, files: Iterable[LiveFile], *, keep: Sequence[str],
           now: datetime, times: Mapping[str, datetime] | None = None) -> Decision:
    """Which candidates of one run ``rule`` deletes, and why each other one survives (before ``unless_top``).

    ``keep`` holds the keep globs of the other rules that match the run (any rule's keep
    wins; the rule's own are always added). The policy selectors rank only the candidates
    left after protection and the ``older_than``/``larger_than`` narrowing, so they can only
    spare more files. ``times`` (from ``upload_times``) overrides a file's ``updated_at`` by id.
    """
    times = times or {}

    def uploaded(f: LiveFile) -> datetime:
        return times.get(f.id, f.updated_at)

    keep = (*rule.keep, *keep)
    files = (f for f in files if glob_matches(f.name, rule.delete))
    result = policy.sort_out(
        rule_name, rule, files, protection=lambda f: _protection(rule_name, rule, f, keep, now, uploaded(f)),
        when=uploaded, name=lambda f: f.name, now=now,
    )
    original = {f.id: times[f.id] for f in (*result.delete, *(file for file, _ in result.kept))
                if f.id in times and times[f.id] != f.updated_at}
    decision = Decision(result.delete, [KeptFile(file, reasons, original.get(file.id))
                                        for file, reasons in result.kept], original)
    decision.delete.sort(key=lambda f: f.name)
    decision.kept.sort(key=lambda k: k.file.name)
    return decision


def select(
    rule: FilesRule, files: Iterable[LiveFile], *, keep: Sequence[str], now: datetime
) -> list[LiveFile]:
    """The files ``rule`` would delete from one run, before ``unless_top`` (sorted by name)."""
    return decide("", rule, files, keep=keep, now=now).delete


def spare_top(rule_name: str, decision: Decision, top: UnlessTop) -> Decision:
    """``decision`` for a run among the rule's top runs: every file it would delete survives instead."""
    reason = KeepReason(rule_name, "unless_top", top_detail(top))
    spared = [KeptFile(file, (reason,), decision.original.get(file.id)) for file in decision.delete]
    return Decision(delete=[], kept=sorted([*decision.kept, *spared], key=lambda k: k.file.name),
                    original=decision.original)


def top_detail(top: UnlessTop) -> str:
    """How an ``unless_top`` reason reads: ``top 3 by val_acc (maximize)``."""
    return f"top {top.count} by {'.'.join(top.metric)} ({top.goal.value})"


def merge_kept(decisions: Iterable[Decision], deleted: set[str]) -> tuple[KeptFile, ...]:
    """One entry per surviving candidate of a run (no rule deletes it), with every rule's reasons."""
    by_id: dict[str, tuple[KeptFile, list[KeepReason]]] = {}
    for decision in decisions:
        for kept in decision.kept:
            if kept.file.id not in deleted:
                by_id.setdefault(kept.file.id, (kept, []))[1].extend(kept.reasons)
    return tuple(KeptFile(first.file, tuple(reasons), first.original_updated_at)
                 for first, reasons in sorted(by_id.values(), key=lambda item: item[0].file.name))


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


def describe(file: LiveFile, now: datetime, original: datetime | None = None) -> str:
    """Display-only size and age of a file, e.g. ``114.4 MiB, 320 days old``; with ``original`` (the
    upload time retention ranked a file an undo re-uploaded by) the age counts from it, and says so."""
    size = size_text(file.size)
    days = max((now - (original or file.updated_at)).days, 0)
    return f"{size}, {days} day{'s' if days != 1 else ''} old{original_upload_text(original)}"
