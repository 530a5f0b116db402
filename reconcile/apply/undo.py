"""The undo plan: the inverse of what an apply did, itself a plan ``reconcile apply`` takes.

Per applied run it sets every changed field back to its before-value (created keys are
unset — on a merging server, where a config key cannot be removed, set to null —, tag adds
and removes swap, renames go back) and re-uploads each backed-up deleted file (``FILE``/``ADD``
with ``source`` and the backup's ``checksum``, verified before the upload), recording the
file's original upload time under ``summary._reconcile.restored_files`` so that retention
still ranks it by it. Its fingerprint is taken from the state read back after the apply, so
applying the undo plan refuses a run that changed since. Files deleted without a backup
cannot come back; ``describe`` says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from humanfriendly.text import pluralize

from reconcile.apply.backup import Backup
from reconcile.apply.events import UndoRecord
from reconcile.models import (
    FORMAT_VERSION,
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    LiveFile,
    Plan,
    PlanLike,
    RunPlan,
    Totals,
    utc_from_iso,
)
from reconcile.planfile import run_to_dict, write_plan_runs
from reconcile.render.common import size_text
from reconcile.retention import RESTORED_KEY, restored_record

_STRING_KINDS = (ChangeKind.NAME, ChangeKind.NOTES, ChangeKind.GROUP, ChangeKind.JOB_TYPE)


def invert(change: Change) -> Change | None:
    """The change that undoes ``change`` (``None`` for a file deletion: see ``restored_files``)."""
    rules = tuple(f"undo:{r}" for r in change.rules) or ("undo",)
    kind, op = change.kind, change.op
    if kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
        if op is ChangeOp.SET and change.created:
            return Change(kind, ChangeOp.UNSET, change.key, change.after, None, rules)
        if op is ChangeOp.SET:
            return Change(kind, ChangeOp.SET, change.key, change.after, change.before, rules)
        if op is ChangeOp.UNSET:
            return Change(kind, ChangeOp.SET, change.key, None, change.before, rules, created=True)
        if op is ChangeOp.RENAME and change.from_key is not None:
            return Change(kind, ChangeOp.RENAME, change.from_key, change.after, change.before, rules,
                          from_key=change.key)
    if kind is ChangeKind.TAGS:
        tag = change.key[0]
        if op is ChangeOp.ADD:
            return Change(kind, ChangeOp.REMOVE, change.key, tag, None, rules)
        return Change(kind, ChangeOp.ADD, change.key, None, tag, rules)
    if kind in _STRING_KINDS:
        return Change(kind, ChangeOp.SET, (), change.after, change.before, rules)
    if kind is ChangeKind.ARTIFACT and op is ChangeOp.SET and change.before is not None:
        # A TTL goes back to what it was (the version as planned: its aliases then).
        return Change(kind, ChangeOp.SET, change.key, change.after, change.before, rules,
                      artifact=change.artifact)
    if kind is ChangeKind.FILE and op is ChangeOp.ADD:
        # Undoing a re-upload would delete a file; an undo of an undo only restores metadata.
        return None
    # A deleted artifact version cannot be re-created with its id and version number: its files
    # stay in the backup directory (re-log them to make a new version).
    return None


def _merge_null(inverse: Change) -> Change:
    """A created config key cannot be removed on a merging server: the undo sets it to null."""
    return Change(ChangeKind.CONFIG, ChangeOp.SET, inverse.key, inverse.before, None, inverse.rules,
                  detail="set to null: a merging W&B server cannot remove config keys (wandb/wandb#11055)")


def _restore(backup: Backup) -> tuple[Change, Change]:
    """Re-upload one backup, and remember the file's original upload time in the summary."""
    original = LiveFile(id=backup.file_id, name=backup.name, size=backup.size,
                        updated_at=utc_from_iso(backup.updated_at), md5=backup.md5)
    upload = Change(ChangeKind.FILE, ChangeOp.ADD, (backup.name,), None, backup.size, ("undo",),
                    file=original, source=str(backup.path), checksum=backup.sha256,
                    detail=f"re-upload from {backup.path}")
    remember = Change(ChangeKind.SUMMARY, ChangeOp.SET, (*RESTORED_KEY, backup.name), None,
                      restored_record(original), ("undo",), created=True,
                      detail="the original upload time, so retention ranks the restored file by it")
    return upload, remember


def undo_run(rp: RunPlan, record: UndoRecord) -> RunPlan | None:
    """The undo ``RunPlan`` of one applied run, or ``None`` if nothing took effect."""
    changes: list[Change] = []
    for index in record.inverted:
        inverse = invert(rp.changes[index])
        if inverse is not None and inverse.kind is ChangeKind.CONFIG and inverse.op is ChangeOp.UNSET \
                and rp.config_writes is ConfigWrites.MERGE:
            inverse = _merge_null(inverse)
        if inverse is not None:
            changes.append(inverse)
    for backup in record.restored_files:
        changes.extend(_restore(backup))
    if not changes:
        return None
    return RunPlan(entity=rp.entity, project=rp.project, run_id=rp.run_id, storage_id=rp.storage_id,
                   name=rp.name, fingerprint=record.fingerprint, fingerprint_fields=record.fingerprint_fields,
                   field_digests=record.field_digests, changes=tuple(changes), config_writes=rp.config_writes,
                   project_internal_id=rp.project_internal_id)


def undo_fields(rp: RunPlan, restored: Iterable[str] = ()) -> tuple[tuple[str, ...], ...]:
    """The live fields an undo of ``rp`` depends on: every field it writes back (each config and summary
    key, the tags, each text field), and for each file it re-uploads (``restored`` names them) the files
    of that name (so it never overwrites a newer same-named file) and the summary key remembering its
    upload time. Not the fields the plan only read (its match, the rest of the file list): a file
    uploaded since under another name, or a state change, leaves what the undo restores as it was."""
    fields: set[tuple[str, ...]] = set()
    for change in rp.changes:
        if change.kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
            fields.add((change.kind.value, *change.key))
            if change.from_key is not None:
                fields.add((change.kind.value, *change.from_key))
        elif change.kind not in (ChangeKind.FILE, ChangeKind.ARTIFACT):
            fields.add((change.kind.value,))
    for name in restored:
        fields.add(("files", name))
        fields.add(("summary", *RESTORED_KEY, name))
    return tuple(sorted(fields))


def undo_plan(plan: PlanLike, runs: Iterable[RunPlan]) -> Plan:
    """The undo plan of an apply of ``plan``, holding ``runs`` (from ``undo_run``)."""
    return dataclasses.replace(_undo_header(plan), runs=tuple(sorted(runs, key=lambda r: r.path)))


UNDO_MARK = "undo:"
"""What an undo plan's spec digest starts with (the digest of the plan it reverts follows)."""


def _undo_header(plan: PlanLike) -> Plan:
    return Plan(spec_digest=f"{UNDO_MARK}{plan.spec_digest}", created_at=datetime.now(timezone.utc),
                base_url=plan.base_url, runs=(), format_version=FORMAT_VERSION)


def is_undo(plan: PlanLike) -> bool:
    """Whether ``plan`` is an undo plan (its header made by ``_undo_header``)."""
    return plan.spec_digest.startswith(UNDO_MARK)


EXAMPLES = 20
"""Runs or files named in a sentence before "and N more"."""


@dataclass(slots=True)
class UndoSummary:
    """What an undo plan holds, counted as its runs go by (for ``describe``)."""

    runs: int = 0
    metadata: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    nulled: int = 0
    nulled_examples: list[str] = field(default_factory=list)

    def count(self, rp: RunPlan) -> None:
        """Count one undo run."""
        self.runs += 1
        for c in rp.changes:
            if c.kind is ChangeKind.FILE and c.op is ChangeOp.ADD:
                self.uploads += 1
                self.upload_bytes += int(c.after)
            elif c.kind is not ChangeKind.FILE and c.key[:len(RESTORED_KEY)] != RESTORED_KEY:
                self.metadata += 1
            if c.detail and c.detail.startswith("set to null"):
                self.nulled += 1
                if len(self.nulled_examples) < EXAMPLES:
                    self.nulled_examples.append(f"{rp.path}: {c.path}")


@dataclass(slots=True)
class LostFiles:
    """Files deleted without a backup: how many, how big, and the first few by name."""

    count: int = 0
    bytes: int = 0
    examples: list[tuple[str, str, int]] = field(default_factory=list)  # (run, name, size)

    def add(self, run: str, name: str, size: int) -> None:
        """Count one lost file."""
        self.count += 1
        self.bytes += size
        if len(self.examples) < EXAMPLES:
            self.examples.append((run, name, size))


class UndoSink(Protocol):
    """Where an apply puts the undo runs it produces, one at a time."""

    summary: UndoSummary

    def add(self, rp: RunPlan) -> None:
        """Take one undo run."""

    def finish(self) -> Plan | None:
        """All runs given: the undo plan if it is kept in memory (None if it went to disk)."""


class UndoCollector:
    """Keeps the undo plan in memory (``ApplyResult.undo``): for callers that want the ``Plan``."""

    def __init__(self, plan: PlanLike) -> None:
        self.plan, self.runs, self.summary = plan, list[RunPlan](), UndoSummary()

    def add(self, rp: RunPlan) -> None:
        """Keep ``rp``."""
        self.runs.append(rp)
        self.summary.count(rp)

    def finish(self) -> Plan:
        """The undo plan, its runs sorted by path."""
        return undo_plan(self.plan, self.runs)


class UndoWriter:
    """Writes the undo plan to ``path`` as the apply goes: each run to a spool file beside it at once,
    and at the end the plan itself (summary first) from the spool, replacing ``path`` atomically (an
    empty plan if nothing can be undone). Memory stays flat however many runs the apply changes."""

    def __init__(self, plan: PlanLike, path: Path) -> None:
        self.header, self.path, self.summary = _undo_header(plan), Path(path), UndoSummary()
        self.totals = Totals()
        # Beside the undo plan (``Path("u.json").parent`` is "."): on the disk chosen for it, not in /tmp.
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".runs", dir=self.path.parent)
        self._spool_path = Path(name)
        self._spool = os.fdopen(fd, "w+", encoding="utf-8")

    def add(self, rp: RunPlan) -> None:
        """Spool ``rp`` (one JSON line)."""
        self._spool.write(json.dumps(run_to_dict(rp), ensure_ascii=False, allow_nan=True) + "\n")
        self.totals = self.totals.plus(rp)
        self.summary.count(rp)

    def finish(self) -> None:
        """Write the undo plan and drop the spool."""
        try:
            self._spool.flush()
            self._spool.seek(0)
            runs = (json.loads(line) for line in self._spool)
            write_plan_runs(self.header, runs, self.totals, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the spool (idempotent)."""
        self._spool.close()
        self._spool_path.unlink(missing_ok=True)


def describe(summary: UndoSummary, lost: LostFiles, *, versions_deleted: int = 0,
             artifact_backups: Path | None = None, unchecked: Sequence[str] = ()) -> list[str]:
    """What applying the undo plan restores and what it cannot, in plain sentences (one per line);
    ``unchecked`` are runs written to but not read back (what took effect there is unknown)."""
    lines: list[str] = []
    if summary.metadata or summary.uploads:
        changes = pluralize(summary.metadata, "metadata change")
        uploads = pluralize(summary.uploads, "file")
        lines.append(f"It restores {changes} on {pluralize(summary.runs, 'run')} and re-uploads {uploads} "
                     f"({size_text(summary.upload_bytes)}) from their backups (each checked against its "
                     "checksum first).")
    else:
        lines.append("It restores nothing: nothing this apply did can be undone.")
    if summary.nulled:
        others = summary.nulled - len(summary.nulled_examples)
        keys, them = pluralize(summary.nulled, "config key"), "it" if summary.nulled == 1 else "them"
        lines.append(f"It cannot remove the {keys} the apply added (a merging W&B server keeps config keys, "
                     f"wandb/wandb#11055): it sets {them} to null instead: "
                     + ", ".join(summary.nulled_examples) + (f" and {others} more" if others else "") + ".")
    if lost.count:
        names = ", ".join(f"{run}/{name}" for run, name, _size in lost.examples)
        more = f" and {lost.count - len(lost.examples)} more" if lost.count > len(lost.examples) else ""
        files = pluralize(lost.count, "file")
        lines.append(f"It cannot restore the {files} ({size_text(lost.bytes)}) deleted without a backup: "
                     f"{names}{more}.")
    if unchecked:
        names = ", ".join(unchecked[:EXAMPLES]) + (f" and {len(unchecked) - EXAMPLES} more"
                                                    if len(unchecked) > EXAMPLES else "")
        runs, them = pluralize(len(unchecked), "run"), "it" if len(unchecked) == 1 else "them"
        lines.append(f"It does not cover the {runs} written to but not read back (what took effect there "
                     f"is unknown): {names}. Apply the same plan again to finish {them}; the undo plan it "
                     f"writes covers {them}.")
    if versions_deleted:
        where = (f"their files are in {artifact_backups}" if artifact_backups is not None
                 else "they were deleted without a backup")
        lines.append(f"It cannot re-create the {pluralize(versions_deleted, 'artifact version')} deleted (a "
                     f"version logged again gets a new id and version number): {where}.")
    return lines
