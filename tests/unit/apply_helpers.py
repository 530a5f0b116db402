"""Builders shared by the apply unit tests: live runs, changes and plans with real fingerprints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from reconcile.fingerprint import fingerprint
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    Limits,
    LiveFile,
    LiveRun,
    Plan,
    RunPlan,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
BASE_URL = "memory://"


def live_run(run_id: str, *, files: Sequence[LiveFile] = (), **fields: Any) -> LiveRun:
    """A finished run of acme/vision with sensible defaults."""
    values: dict[str, Any] = {
        "entity": "acme", "project": "vision", "id": run_id, "storage_id": f"sid-{run_id}",
        "name": f"name-{run_id}", "state": "finished", "created_at": T0,
        "config": {"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}, "_wandb": {"v": 1}},
        "summary": {"acc": 0.5, "loss": 0.2}, "tags": ("wip",), "group": "g1", "job_type": "train",
        "notes": "", "project_internal_id": 7,
    }
    values.update(fields)
    return LiveRun(files=tuple(files), **values)


def live_file(file_id: str, name: str, size: int = 10) -> LiveFile:
    """A file of ``size`` bytes."""
    return LiveFile(id=file_id, name=name, size=size, updated_at=T0)


def config_set(key: str, before: Any, after: Any, *, created: bool = False) -> Change:
    """config.<key> = after."""
    return Change(ChangeKind.CONFIG, ChangeOp.SET, tuple(key.split(".")), before, after, ("r",),
                  created=created)


def summary_set(key: str, before: Any, after: Any, *, created: bool = False) -> Change:
    """summary.<key> = after."""
    return Change(ChangeKind.SUMMARY, ChangeOp.SET, tuple(key.split(".")), before, after, ("r",),
                  created=created)


def unset(kind: ChangeKind, key: str, before: Any) -> Change:
    """Remove config/summary <key>."""
    return Change(kind, ChangeOp.UNSET, tuple(key.split(".")), before, None, ("r",))


def tag(op: ChangeOp, name: str) -> Change:
    """Add or remove one tag."""
    return Change(ChangeKind.TAGS, op, (name,), None if op is ChangeOp.ADD else name,
                  name if op is ChangeOp.ADD else None, ("r",))


def string_set(kind: ChangeKind, before: str | None, after: str | None) -> Change:
    """name/notes/group/job_type = after."""
    return Change(kind, ChangeOp.SET, (), before, after, ("r",))


def file_delete(file: LiveFile) -> Change:
    """Delete one file."""
    return Change(ChangeKind.FILE, ChangeOp.DELETE, (file.name,), file, None, ("r",), file=file)


def fields_for(changes: Iterable[Change]) -> tuple[tuple[str, ...], ...]:
    """The live fields a planner would fingerprint for these changes."""
    out: set[tuple[str, ...]] = set()
    for c in changes:
        if c.kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
            out.add((c.kind.value, *c.key))
            if c.from_key:
                out.add((c.kind.value, *c.from_key))
        elif c.kind is ChangeKind.FILE:
            out.add(("files",))
        else:
            out.add((c.kind.value,))
    return tuple(sorted(out))


def run_plan(run: LiveRun, changes: Sequence[Change], *,
             config_writes: ConfigWrites = ConfigWrites.MERGE) -> RunPlan:
    """A RunPlan for ``run`` whose fingerprint matches ``run`` as given."""
    fields = fields_for(changes)
    return RunPlan(entity=run.entity, project=run.project, run_id=run.id, storage_id=run.storage_id,
                   name=run.name, fingerprint=fingerprint(run, fields), fingerprint_fields=fields,
                   changes=tuple(changes), config_writes=config_writes,
                   project_internal_id=run.project_internal_id)


def make_plan(*runs: RunPlan, limits: Limits | None = None, **kw: Any) -> Plan:
    """A plan over these run plans against the memory backend."""
    values: dict[str, Any] = {"spec_digest": "sha256:spec", "created_at": T0, "base_url": BASE_URL,
                              "runs": tuple(runs), "limits": limits or Limits()}
    values.update(kw)
    return Plan(**values)
