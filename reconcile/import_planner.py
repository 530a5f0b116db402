"""Planning an import, purely: ``(import, source run, destination run or None) -> RunPlan``.

A source run absent from the destination is *created*: every mapped field, the whole
history and every file. One imported before is *updated in-place* with only what differs:
config and summary keys the source has (other keys are not managed), the source's tags
(added; a tag the destination has beyond them is left alone), name, notes, group, job type
and state where the source has them, the history rows after the destination's last step
(its summary's ``_step``), and files the destination lacks or holds at another size.
Keys starting with ``_`` (W&B's own ``_wandb``, ``_step``, ``_runtime``, ...) are never compared.

The plan's fingerprint covers exactly the destination fields compared (for a creation: that
the run does not exist), and ``source_fingerprint`` the source run, so apply refuses a run
whose source or destination changed since the plan. Where the reader read the history rows with
the run (MLflow), the plan carries the rows to write and the source's ``revision``: apply then
checks the revision (one read without the histories) instead of reading every history again.
"""

from __future__ import annotations

from typing import Any

from reconcile.fingerprint import ABSENT, FieldRef, fingerprint
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    Import,
    LiveRun,
    RunAction,
    RunPlan,
)
from reconcile.planner import same
from reconcile.sources import SourceRun

ABSENT_FINGERPRINT = "absent"
"""The fingerprint of a run to create: apply refuses it as stale if the run exists by then."""


def history_change(source: SourceRun, after_step: int | None, rule: str) -> Change | None:
    """The history rows to append: every row after ``after_step`` (all rows when None); a creation
    also carries the source's system-metric rows (W&B sources)."""
    steps = [s for s in source.steps if after_step is None or s > after_step]
    if not steps:
        return None
    summary: dict[str, Any] = {"rows": len(steps), "first_step": steps[0], "last_step": steps[-1],
                               "metrics": list(source.history_keys)}
    if after_step is None and source.event_rows:
        summary["system_metrics"] = source.event_rows
    return Change(ChangeKind.HISTORY, ChangeOp.ADD, (), after_step, summary, (rule,),
                  detail=history_text(summary))


def history_text(summary: dict[str, Any]) -> str:
    """``500 rows, steps 0..499: auc, loss`` (display only)."""
    rows = summary["rows"]
    steps = (f"step {summary['first_step']}" if summary["first_step"] == summary["last_step"]
             else f"steps {summary['first_step']}..{summary['last_step']}")
    metrics = ", ".join(summary["metrics"]) or "no metrics"
    events = summary.get("system_metrics")
    extra = f"; {events} system metrics row{'s' if events != 1 else ''}" if events else ""
    return f"{rows} row{'s' if rows != 1 else ''}, {steps}: {metrics}{extra}"


def _creation(source: SourceRun, rule: str) -> list[Change]:
    changes = [Change(ChangeKind.CONFIG, ChangeOp.SET, (k,), None, v, (rule,), created=True)
               for k, v in sorted(source.config.items())]
    changes += [Change(ChangeKind.SUMMARY, ChangeOp.SET, (k,), None, v, (rule,), created=True)
                for k, v in sorted(source.summary.items()) if not k.startswith("_")]
    changes += [Change(ChangeKind.TAGS, ChangeOp.ADD, (t,), None, t, (rule,)) for t in sorted(source.tags)]
    for kind, value in _fields(source):
        # W&B sets a run's created time itself when the run is created: no field of the client's
        # UpsertBucket sets it (README, "Imports"), so the plan does not promise it.
        if value is not None and kind is not ChangeKind.CREATED_AT:
            changes.append(Change(kind, ChangeOp.SET, (), None, value, (rule,)))
    history = history_change(source, None, rule)
    if history is not None:
        changes.append(history)
    changes += [Change(ChangeKind.FILE, ChangeOp.ADD, (f.name,), None, f.size, (rule,))
                for f in sorted(source.files, key=lambda f: f.name)]
    return changes


def _fields(source: SourceRun) -> list[tuple[ChangeKind, Any]]:
    return [
        (ChangeKind.NAME, source.name),
        (ChangeKind.NOTES, source.notes),
        (ChangeKind.GROUP, source.group),
        (ChangeKind.JOB_TYPE, source.job_type),
        (ChangeKind.STATE, source.state),
        (ChangeKind.CREATED_AT, source.created_at.isoformat()),
    ]


def _live_field(live: LiveRun, kind: ChangeKind) -> Any:
    if kind is ChangeKind.CREATED_AT:
        return live.created_at.isoformat()
    return getattr(live, kind.value)


def _update(source: SourceRun, live: LiveRun, rule: str, fields: set[FieldRef]) -> list[Change]:
    changes: list[Change] = []
    for kind, section, wanted, have in ((ChangeKind.CONFIG, "config", source.config, live.config),
                                        (ChangeKind.SUMMARY, "summary", source.summary, live.summary)):
        for key, value in sorted(wanted.items()):
            if key.startswith("_"):
                continue
            fields.add((section, key))
            before = have.get(key, ABSENT)
            if not same(before, value):
                changes.append(Change(kind, ChangeOp.SET, (key,), None if before is ABSENT else before, value,
                                      (rule,), created=before is ABSENT))
    fields.add(("tags",))
    changes += [Change(ChangeKind.TAGS, ChangeOp.ADD, (t,), None, t, (rule,))
                for t in sorted(set(source.tags) - set(live.tags))]
    for kind, value in _fields(source):
        if value is None or kind is ChangeKind.CREATED_AT:  # W&B sets a run's created time once
            continue
        fields.add((kind.value,))
        before = _live_field(live, kind)
        if (before or "") != value:
            changes.append(Change(kind, ChangeOp.SET, (), before, value, (rule,)))
    fields.add(("summary", "_step"))
    history = history_change(source, _last_step(live), rule)
    if history is not None:
        changes.append(history)
    fields.add(("files",))
    have_files = {f.name: f.size for f in live.files or ()}
    changes += [Change(ChangeKind.FILE, ChangeOp.ADD, (f.name,), None, f.size, (rule,))
                for f in sorted(source.files, key=lambda f: f.name) if have_files.get(f.name) != f.size]
    return changes


def plan_import(entry: Import, entity: str, project: str, source: SourceRun, live: LiveRun | None, *,
                config_writes: ConfigWrites = ConfigWrites.MERGE) -> RunPlan | None:
    """The creation or update that brings ``live`` (None: absent) to ``source``; None when in sync."""
    if live is None:
        return RunPlan(
            entity=entity, project=project, run_id=source.id, storage_id="", name=source.name,
            fingerprint=ABSENT_FINGERPRINT, fingerprint_fields=(),
            changes=tuple(_creation(source, entry.name)),
            config_writes=config_writes, action=RunAction.CREATE, source=entry.name,
            source_fingerprint=source.fingerprint(), **_carried(source, None),
        )
    fields: set[FieldRef] = {("state",)}
    changes = _update(source, live, entry.name, fields)
    if not changes:
        return None
    refs = tuple(sorted(fields))
    last = _last_step(live)
    return RunPlan(
        entity=entity, project=project, run_id=live.id, storage_id=live.storage_id, name=live.name,
        fingerprint=fingerprint(live, refs), fingerprint_fields=refs, changes=tuple(changes),
        config_writes=config_writes, project_internal_id=live.project_internal_id,
        action=RunAction.UPDATE, source=entry.name, source_fingerprint=source.fingerprint(),
        **_carried(source, last),
    )


def _last_step(live: LiveRun) -> int | None:
    """The destination's last history step (its summary's ``_step``), None if it has none."""
    last = live.summary.get("_step")
    return last if isinstance(last, int) and not isinstance(last, bool) else None


def _carried(source: SourceRun, after_step: int | None) -> dict[str, Any]:
    """The history rows the plan carries to apply (those after ``after_step``) and the source's
    ``revision``, where the reader read the rows with the run; nothing otherwise (apply reads them)."""
    if source.rows is None:
        return {}
    rows = tuple(r for r in source.rows if after_step is None or r["_step"] > after_step)
    return {"source_rows": rows, "source_revision": source.revision()}
