"""The undo plan: the inverse of what an apply did, itself a plan ``reconcile apply`` takes.

Per applied run it sets every changed field back to its before-value (created keys are
unset, tag adds and removes swap, renames go back) and re-uploads each backed-up deleted
file (``FILE``/``ADD`` with ``source``). Its fingerprint is taken from the state read back
after the apply, so applying the undo plan refuses a run that changed since.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from reconcile.apply.events import UndoRecord
from reconcile.models import FORMAT_VERSION, Change, ChangeKind, ChangeOp, ConfigWrites, Plan, RunPlan
from reconcile.planfile import write_plan

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


def undo_run(rp: RunPlan, record: UndoRecord) -> RunPlan | None:
    """The undo ``RunPlan`` of one applied run, or ``None`` if nothing took effect."""
    changes: list[Change] = []
    for index in record.inverted:
        inverse = invert(rp.changes[index])
        if inverse is not None and inverse.kind is ChangeKind.CONFIG and inverse.op is ChangeOp.UNSET \
                and rp.config_writes is ConfigWrites.MERGE:
            # Said up front: a merging server keeps config keys (wandb/wandb#11055), so applying
            # this undo will report the key as not converged rather than remove it.
            inverse = dataclasses.replace(inverse, detail="a merging W&B server cannot remove config keys "
                                                          "(wandb/wandb#11055); apply reports it unconverged")
        if inverse is not None:
            changes.append(inverse)
    for name, size, source in record.restored_files:
        changes.append(Change(ChangeKind.FILE, ChangeOp.ADD, (name,), None, size, ("undo",), source=source,
                              detail=f"re-upload from {source}"))
    if not changes:
        return None
    return RunPlan(entity=rp.entity, project=rp.project, run_id=rp.run_id, storage_id=rp.storage_id,
                   name=rp.name, fingerprint=record.fingerprint, fingerprint_fields=record.fingerprint_fields,
                   changes=tuple(changes), config_writes=rp.config_writes,
                   project_internal_id=rp.project_internal_id)


def undo_fields(rp: RunPlan, restores_files: bool) -> tuple[tuple[str, ...], ...]:
    """The live fields an undo of ``rp`` depends on: the plan's own, every field it touched,
    and the file list when it re-uploads (so it never overwrites a newer same-named file)."""
    fields = {tuple(f) for f in rp.fingerprint_fields}
    for change in rp.changes:
        if change.kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
            fields.add((change.kind.value, *change.key))
            if change.from_key is not None:
                fields.add((change.kind.value, *change.from_key))
        elif change.kind not in (ChangeKind.FILE, ChangeKind.ARTIFACT):
            fields.add((change.kind.value,))
    if restores_files:
        fields.add(("files",))
    return tuple(sorted(fields))


def undo_plan(plan: Plan, runs: Iterable[RunPlan]) -> Plan:
    """The undo plan of an apply of ``plan``, holding ``runs`` (from ``undo_run``)."""
    return Plan(spec_digest=f"undo:{plan.spec_digest}", created_at=datetime.now(timezone.utc),
                base_url=plan.base_url, runs=tuple(sorted(runs, key=lambda r: r.path)),
                format_version=FORMAT_VERSION)


def write_undo(plan: Plan, path: Path) -> None:
    """Write the undo plan atomically (``planfile.write_plan``)."""
    write_plan(plan, path)
