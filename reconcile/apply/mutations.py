"""From a run's planned changes and a *fresh* read of the run to the smallest write.

Pure functions, no I/O. ``build_update`` makes one ``RunUpdate`` carrying only the fields
whose planned value is not yet live; ``unconverged`` compares a read-back run with the
plan; ``revert`` undoes the planned changes on a live run in memory, which lets a resumed
apply tell "partly applied by us" from "changed by someone else".
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from reconcile.backend import RunUpdate
from reconcile.errors import PlanMismatch
from reconcile.fingerprint import ABSENT, lookup
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    LiveFile,
    LiveRun,
    RunPlan,
    VersionTTL,
)
from reconcile.planner import same  # the planner's notion of equal: 1 == 1.0, True != 1, NaN == NaN
from reconcile.trees import apply_changes, del_in, plain, set_in

_STRING_FIELDS = {
    ChangeKind.NAME: "name",
    ChangeKind.NOTES: "notes",
    ChangeKind.GROUP: "group",
    ChangeKind.JOB_TYPE: "job_type",
}
_UPDATE_FIELD = {"name": "display_name", "notes": "notes", "group": "group", "job_type": "job_type"}

METADATA_KINDS = frozenset(ChangeKind) - {ChangeKind.FILE, ChangeKind.ARTIFACT}


def _change_done(
        change: Change, run: LiveRun, file_ids: set[str] | None = None,
        file_sizes: Mapping[str, int] | None = None) -> bool:
    """Whether the live run already shows this change's after-state."""
    kind, op = change.kind, change.op
    if kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
        tree = run.config if kind is ChangeKind.CONFIG else run.summary
        if op is ChangeOp.UNSET:
            return lookup(tree, change.key) is ABSENT
        now = lookup(tree, change.key)
        if now is ABSENT or not same(now, change.after):
            return False
        old_gone = change.from_key is None or lookup(tree, change.from_key) is ABSENT
        return op is not ChangeOp.RENAME or old_gone
    if kind is ChangeKind.TAGS:
        tag = change.key[0]
        return (tag in run.tags) if op is ChangeOp.ADD else (tag not in run.tags)
    if kind in _STRING_FIELDS:
        return (getattr(run, _STRING_FIELDS[kind]) or "") == (change.after or "")
    if kind is ChangeKind.FILE:
        if op is ChangeOp.DELETE:
            file_id = change.file.id if change.file is not None else None
            return file_ids is not None and file_id not in file_ids
        return file_sizes is not None and file_sizes.get(change.key[0]) == change.after
    if kind is ChangeKind.ARTIFACT:
        wanted = change.artifact.id if change.artifact is not None else None
        if op is ChangeOp.SET:  # a TTL: the version is there and reads the desired TTL
            now = next((a for a in run.artifacts or () if a.id == wanted), None)
            return now is not None and VersionTTL.parse(str(change.after)).satisfied_by(now.ttl)
        return run.artifacts is not None and all(a.id != wanted for a in run.artifacts)
    raise ValueError(f"unknown change kind {kind!r}")


def pending_metadata(rp: RunPlan, run: LiveRun) -> tuple[Change, ...]:
    """The run's metadata changes whose after-state is not live yet."""
    return tuple(c for c in rp.changes if c.kind in METADATA_KINDS and not _change_done(c, run))


def build_update(rp: RunPlan, run: LiveRun) -> RunUpdate:
    """The smallest UpsertBucket for ``rp``'s metadata changes not yet live on ``run`` (fresh).

    Config on a MERGE target: only the changed subtrees, built from the planned leaves (the
    server deep-merges them, wandb/wandb#11055), never a config read earlier; an unset cannot
    be expressed and is left for read-back to report. On a REPLACE target: the fresh config
    with the changes made. Summary: the fresh summary with the changes made, sent whole
    because W&B replaces summaryMetrics.
    """
    pending = pending_metadata(rp, run)
    fields: dict[str, Any] = {}
    for kind, attr in _STRING_FIELDS.items():
        for change in pending:
            if change.kind is kind:
                # "" clears the field on W&B; null would mean "leave unchanged".
                fields[_UPDATE_FIELD[attr]] = change.after if change.after is not None else ""
    tag_changes = [c for c in pending if c.kind is ChangeKind.TAGS]
    if tag_changes:
        removed = {c.key[0] for c in tag_changes if c.op is ChangeOp.REMOVE}
        tags = [t for t in run.tags if t not in removed]
        tags += [c.key[0] for c in tag_changes if c.op is ChangeOp.ADD and c.key[0] not in tags]
        fields["tags"] = tuple(tags)
    config_changes = [c for c in pending if c.kind is ChangeKind.CONFIG]
    if config_changes:
        if rp.config_writes is ConfigWrites.REPLACE:
            fields["config"] = apply_changes(run.config, config_changes)
        else:
            subtrees: dict[str, Any] = {}
            for change in config_changes:
                if change.op in (ChangeOp.SET, ChangeOp.RENAME):
                    set_in(subtrees, change.key, copy.deepcopy(change.after))
            if subtrees:
                fields["config"] = subtrees
    summary_changes = [c for c in pending if c.kind is ChangeKind.SUMMARY]
    if summary_changes:
        fields["summary"] = apply_changes(run.summary, summary_changes)
    return RunUpdate(storage_id=run.storage_id, **fields)


def pending_deletions(rp: RunPlan, live_files: Sequence[LiveFile], *,
                      resumed: bool = False) -> tuple[LiveFile, ...]:
    """The planned deletions whose file is still there, as the live listing has them.

    A saved plan is a promise about the live run: a planned file the listing has with another
    name or size, or does not have at all, means the plan was edited or is corrupt
    (``PlanMismatch``). Only a resumed run may miss a planned file: an earlier attempt deleted it.
    """
    live = {f.id: f for f in live_files}
    out: list[LiveFile] = []
    for change in rp.file_deletions:
        planned = change.file
        if planned is None or change.key != (planned.name,):
            raise PlanMismatch(f"the plan's deletion of {change.path} names no file or another one")
        now = live.get(planned.id)
        if now is None:
            if resumed:
                continue
            raise PlanMismatch(f"the plan deletes file id {planned.id} ({planned.name}), which is not among "
                               f"the files of {rp.path}; the plan was edited or is corrupt. Plan again")
        if now.name != planned.name or now.size != planned.size:
            raise PlanMismatch(f"the plan deletes file id {planned.id} as {planned.name} ({planned.size} "
                               f"bytes), but {rp.path} lists it as {now.name} ({now.size} bytes); the plan "
                               "was edited or is corrupt. Plan again")
        out.append(now)
    return tuple(out)


def pending_uploads(rp: RunPlan, live_files: Sequence[LiveFile]) -> tuple[Change, ...]:
    """The planned re-uploads (undo plans) whose file is not there with the planned size."""
    sizes = {f.name: f.size for f in live_files}
    return tuple(c for c in rp.changes if c.kind is ChangeKind.FILE and c.op is ChangeOp.ADD
                 and sizes.get(c.key[0]) != c.after)


def unconverged(rp: RunPlan, run: LiveRun, live_files: Sequence[LiveFile] | None) -> tuple[str, ...]:
    """Display paths of planned changes the read-back ``run`` does not show (empty: converged)."""
    ids = {f.id for f in live_files} if live_files is not None else None
    sizes = {f.name: f.size for f in live_files} if live_files is not None else None
    return tuple(c.path for c in rp.changes if not _change_done(c, run, ids, sizes))


def converged_indexes(rp: RunPlan, run: LiveRun, live_files: Sequence[LiveFile] | None) -> tuple[int, ...]:
    """Indexes of ``rp.changes`` whose after-state the read-back ``run`` shows."""
    ids = {f.id for f in live_files} if live_files is not None else None
    sizes = {f.name: f.size for f in live_files} if live_files is not None else None
    return tuple(i for i, c in enumerate(rp.changes) if _change_done(c, run, ids, sizes))


def revert(rp: RunPlan, run: LiveRun) -> LiveRun:  # noqa: PLR0912 - one branch per kind/op
    """``run`` with every planned change put back to its before-state, in memory.

    Only changes whose after-state is live are put back: a planned field now holding a
    third value was changed by someone else, and must keep the fingerprint from matching.
    If the fingerprint of the result equals the plan's, the run differs from what was
    planned only by (some of) our own changes: a resumed apply may finish the rest.
    """
    config, summary = plain(run.config), plain(run.summary)
    tags = list(run.tags)
    strings: dict[str, Any] = {}
    files = list(run.files) if run.files is not None else None
    ids = {f.id for f in files} if files is not None else None
    sizes = {f.name: f.size for f in files} if files is not None else None
    for change in reversed(rp.changes):
        if not _change_done(change, run, ids, sizes):
            continue
        kind, op = change.kind, change.op
        if kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
            tree = config if kind is ChangeKind.CONFIG else summary
            if op is ChangeOp.SET and change.created:
                del_in(tree, change.key)
            elif op in (ChangeOp.SET, ChangeOp.UNSET):
                set_in(tree, change.key, copy.deepcopy(change.before))
            elif op is ChangeOp.RENAME:
                del_in(tree, change.key)
                if change.from_key is not None:
                    set_in(tree, change.from_key, copy.deepcopy(change.before))
        elif kind is ChangeKind.TAGS:
            tag = change.key[0]
            if op is ChangeOp.ADD and tag in tags:
                tags.remove(tag)
            elif op is ChangeOp.REMOVE and tag not in tags:
                tags.append(tag)
        elif kind in _STRING_FIELDS:
            strings[_STRING_FIELDS[kind]] = change.before
        elif kind is ChangeKind.FILE and files is not None:
            present = {f.id for f in files}
            if op is ChangeOp.DELETE and change.file is not None and change.file.id not in present:
                files.append(change.file)
            elif op is ChangeOp.ADD:
                files = [f for f in files if f.name != change.key[0]]
    return dataclasses.replace(run, config=config, summary=summary, tags=tuple(tags),
                               files=tuple(files) if files is not None else None, **strings)
