"""``MemoryBackend``: a second, in-memory implementation of the Backend seam.

Not a mock of wandb: it stores runs and file bytes and applies writes with W&B's
semantics (config deep-merged or replaced, summary replaced, ``None`` fields left
unchanged, deleteFiles idempotent), so the apply executor can be unit-tested without
a server. ``calls`` records every operation; ``fail_next`` injects errors.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reconcile.backend import HistoryPosition, RunCreate, RunUpdate
from reconcile.errors import BackendError, NotFound
from reconcile.models import ConfigWrites, LiveArtifact, LiveFile, LiveRun, VersionTTL


def deep_merge(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """``sent`` merged into ``stored``: dicts recursively, anything else replaced (wandb/wandb#11055)."""
    merged = dict(stored)
    for key, value in sent.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


class MemoryBackend:
    """The Backend protocol over dicts; thread-unsafe, for tests."""

    def __init__(self, runs: Sequence[LiveRun] = (), *, base_url: str = "memory://",
                 config_writes: ConfigWrites = ConfigWrites.MERGE) -> None:
        """Start with ``runs`` (their ``files`` become the stored files, with empty bytes)."""
        self.base_url = base_url
        self.config_writes = config_writes
        self.runs: dict[str, LiveRun] = {}  # by storage id
        self.contents: dict[str, bytes] = {}  # by file id
        self.history: dict[str, dict[int, dict[str, Any]]] = {}  # by storage id: line offset -> row
        self.exitcodes: dict[str, int] = {}  # by storage id: the exit code of the last ``complete``
        self.events: dict[str, dict[int, dict[str, Any]]] = {}  # by storage id: line offset -> row
        self.calls: list[tuple[str, Any]] = []
        self.closed = False
        self._failures: list[BaseException] = []
        self._ids = itertools.count(1)
        for run in runs:
            self.add_run(run)

    # ------------------------------------------------------------------ test helpers

    def add_run(self, run: LiveRun, contents: Mapping[str, bytes] | None = None) -> None:
        """Store ``run``; ``contents`` maps file names to bytes (default: empty)."""
        self.runs[run.storage_id] = replace(run, files=tuple(run.files or ()))
        for file in run.files or ():
            self.contents[file.id] = (contents or {}).get(file.name, b"")

    def run(self, entity: str, project: str, run_id: str) -> LiveRun:
        """The stored run (with its files)."""
        for run in self.runs.values():
            if (run.entity, run.project, run.id) == (entity, project, run_id):
                return run
        raise NotFound(f"run {entity}/{project}/{run_id} not found")

    def fail_next(self, *errors: BaseException) -> None:
        """Make the next calls raise these errors, one per call, in order."""
        self._failures.extend(errors)

    def _record(self, name: str, argument: Any) -> None:
        self.calls.append((name, argument))
        if self._failures:
            raise self._failures.pop(0)

    def _by_id(self, storage_id: str) -> LiveRun:
        try:
            return self.runs[storage_id]
        except KeyError:
            raise NotFound(f"run {storage_id} not found") from None

    # ------------------------------------------------------------------ reads

    def iter_runs(self, entity: str, project: str, filters: Mapping[str, Any] | None = None, *,
                  per_page: int | None = None, with_files: bool = False) -> Iterator[LiveRun]:
        """The project's runs matching ``filters`` (a subset of W&B's filter language), oldest first."""
        self._record("iter_runs", (entity, project, dict(filters or {})))
        runs = sorted((r for r in self.runs.values() if (r.entity, r.project) == (entity, project)),
                      key=lambda r: r.created_at)
        for run in runs:
            if matches(run, filters or {}):
                yield _copy(run, with_files)

    def get_runs(self, entity: str, project: str, run_ids: Sequence[str], *,
                 with_files: bool = False) -> dict[str, LiveRun]:
        """Fresh copies of these runs; absent ids are missing."""
        self._record("get_runs", (entity, project, tuple(run_ids)))
        wanted = set(run_ids)
        return {r.id: _copy(r, with_files) for r in self.runs.values()
                if (r.entity, r.project) == (entity, project) and r.id in wanted}

    def list_files(self, run: LiveRun) -> tuple[LiveFile, ...]:
        """The stored files of the run."""
        self._record("list_files", run.path)
        return tuple(self._by_id(run.storage_id).files or ())

    # ------------------------------------------------------------------ writes

    def update_run(self, update: RunUpdate) -> None:
        """Apply one UpsertBucket: unset fields unchanged, config merged or replaced, summary replaced."""
        self._record("update_run", update)
        self._apply(update)

    def _apply(self, update: RunUpdate) -> None:
        run = self._by_id(update.storage_id)
        changes: dict[str, Any] = {}
        for attr, field in (("display_name", "name"), ("notes", "notes"), ("group", "group"),
                            ("job_type", "job_type"), ("tags", "tags")):
            value = getattr(update, attr)
            if value is not None:
                changes[field] = tuple(value) if attr == "tags" else value
        if update.state is not None:
            changes["state"] = update.state
        if update.config is not None:
            sent = copy.deepcopy(dict(update.config))
            changes["config"] = (deep_merge(run.config, sent)
                                 if self.config_writes is ConfigWrites.MERGE else sent)
        if update.summary is not None:
            changes["summary"] = copy.deepcopy(dict(update.summary))
        self.runs[run.storage_id] = replace(run, **changes)

    def create_run(self, create: RunCreate) -> str:
        """Create the run (running, as W&B does) if absent, then apply the fields given; its storage id."""
        self._record("create_run", create)
        path = (create.entity, create.project, create.run_id)
        existing = next((r for r in self.runs.values() if (r.entity, r.project, r.id) == path), None)
        if existing is None:
            storage_id = f"Run:{create.entity}/{create.project}/{create.run_id}"
            existing = LiveRun(entity=create.entity, project=create.project, id=create.run_id,
                               storage_id=storage_id, name=None, state="running",
                               created_at=datetime.now(timezone.utc), config={}, summary={}, tags=(),
                               project_internal_id=1, files=())
            self.runs[storage_id] = existing
        self._apply(RunUpdate(storage_id=existing.storage_id, display_name=create.display_name,
                              notes=create.notes, tags=create.tags, group=create.group,
                              job_type=create.job_type, config=create.config))
        return existing.storage_id

    def history_position(self, run: LiveRun) -> HistoryPosition:
        """The stored history's line count and last ``_step``."""
        self._record("history_position", run.path)
        storage_id = self._by_id(run.storage_id).storage_id
        lines = self.history.get(storage_id, {})
        events = self.events.get(storage_id, {})
        events_lines = max(events) + 1 if events else 0
        if not lines:
            return HistoryPosition(0, None, events_lines)
        step = lines[max(lines)].get("_step")
        return HistoryPosition(max(lines) + 1, step if isinstance(step, int) else None, events_lines)

    def history_rows(self, run: LiveRun, *, events: bool = False,
                     position: HistoryPosition | None = None) -> Iterator[dict[str, Any]]:
        """The stored rows in line order (``position`` is not needed: nothing is read to find the end)."""
        self._record("history_rows", (run.path, events))
        lines = (self.events if events else self.history).get(self._by_id(run.storage_id).storage_id, {})
        for offset in sorted(lines):
            yield copy.deepcopy(lines[offset])

    def append_history(self, run: LiveRun, offset: int, rows: Sequence[Mapping[str, Any]], *,
                       exitcode: int | None = None, events: bool = False) -> None:
        """Store ``rows`` at their line offsets (a line written again is replaced, as file_stream does)."""
        self._record("append_history", (run.path, offset, len(rows), exitcode))
        stored = self._by_id(run.storage_id)
        lines = (self.events if events else self.history).setdefault(stored.storage_id, {})
        for index, row in enumerate(rows):
            lines[offset + index] = copy.deepcopy(dict(row))
        if exitcode is not None:
            self.exitcodes[stored.storage_id] = exitcode
            self.runs[stored.storage_id] = replace(stored, state="finished" if exitcode == 0 else "failed")
        elif rows:
            self.runs[stored.storage_id] = replace(stored, state="running")

    def delete_files(self, run: LiveRun, file_ids: Sequence[str]) -> None:
        """Remove these files; unknown or already deleted ids are ignored."""
        self._record("delete_files", (run.path, tuple(file_ids)))
        stored = self._by_id(run.storage_id)
        gone = set(file_ids)
        files = tuple(f for f in stored.files or () if f.id not in gone)
        self.runs[stored.storage_id] = replace(stored, files=files)
        for file_id in gone:
            self.contents.pop(file_id, None)

    def download_file(self, run: LiveRun, file: LiveFile, dest: Path) -> None:
        """Write the stored bytes of ``file`` to ``dest``."""
        self._record("download_file", (run.path, file.name))
        if file.id not in self.contents:
            raise NotFound(f"file {file.name} of {run.path} not found")
        dest.write_bytes(self.contents[file.id])

    def upload_file(self, run: LiveRun, source: Path, name: str) -> None:
        """Store ``source`` as run file ``name`` (replacing a file of that name)."""
        self._record("upload_file", (run.path, name))
        self._store_file(run, source, name)

    def upload_files(self, run: LiveRun, files: Sequence[tuple[Path, str]]) -> None:
        """Store each ``(source, name)`` as ``upload_file`` does (recorded once, as one request)."""
        self._record("upload_files", (run.path, tuple(name for _, name in files)))
        for source, name in files:
            self._store_file(run, source, name)

    def _store_file(self, run: LiveRun, source: Path, name: str) -> None:
        stored = self._by_id(run.storage_id)
        data = source.read_bytes()
        new = LiveFile(id=f"file-{next(self._ids)}", name=name, size=len(data),
                       updated_at=datetime.now(timezone.utc))
        files = (*(f for f in stored.files or () if f.name != name), new)
        self.runs[stored.storage_id] = replace(stored, files=files)
        self.contents[new.id] = data

    # ------------------------------------------------------------------ artifacts

    def list_artifacts(self, run: LiveRun) -> tuple[LiveArtifact, ...]:
        """The versions the run logged (``LiveRun.artifacts`` of the stored run)."""
        self._record("list_artifacts", run.path)
        return tuple(self._by_id(run.storage_id).artifacts or ())

    def get_artifact(self, run: LiveRun, artifact_id: str) -> LiveArtifact | None:
        """One version of the run, or None once deleted."""
        self._record("get_artifact", (run.path, artifact_id))
        return next((a for a in self._by_id(run.storage_id).artifacts or () if a.id == artifact_id), None)

    def delete_artifact(self, run: LiveRun, artifact: LiveArtifact, *, delete_aliases: bool) -> None:
        """Remove the version; one with aliases is refused unless ``delete_aliases`` (as W&B does)."""
        self._record("delete_artifact", (run.path, artifact.name, delete_aliases))
        stored = self._by_id(run.storage_id)
        current = next((a for a in stored.artifacts or () if a.id == artifact.id), None)
        if current is not None and current.aliases and not delete_aliases:
            raise BackendError(f"cannot delete artifact {artifact.name}: it has aliases "
                               f"{list(current.aliases)}")
        remaining = tuple(a for a in stored.artifacts or () if a.id != artifact.id)
        self.runs[stored.storage_id] = replace(stored, artifacts=remaining)

    def set_artifact_ttl(self, run: LiveRun, artifact: LiveArtifact, ttl: VersionTTL) -> None:
        """Store the version's TTL (an inherited one without seconds: this backend has no team default)."""
        self._record("set_artifact_ttl", (run.path, artifact.name, str(ttl)))
        stored = self._by_id(run.storage_id)
        if not any(a.id == artifact.id for a in stored.artifacts or ()):
            raise NotFound(f"artifact {artifact.name} not found")
        updated = tuple(replace(a, ttl=ttl) if a.id == artifact.id else a for a in stored.artifacts or ())
        self.runs[stored.storage_id] = replace(stored, artifacts=updated)

    def download_artifact(self, run: LiveRun, artifact: LiveArtifact, dest: Path) -> list[tuple[str, int]]:
        """One file ``<collection>.bin`` of the version's size, zero bytes."""
        self._record("download_artifact", (run.path, artifact.name))
        name = f"{artifact.collection}.bin"
        (dest / name).write_bytes(bytes(artifact.size))
        return [(name, artifact.size)]

    def close(self) -> None:
        """Mark the backend closed (nothing to release)."""
        self.closed = True


def _copy(run: LiveRun, with_files: bool) -> LiveRun:
    """A deep copy of ``run`` as a listing returns it (files only when asked)."""
    files = tuple(run.files or ()) if with_files else None
    return replace(run, config=copy.deepcopy(dict(run.config)), summary=copy.deepcopy(dict(run.summary)),
                   files=files, artifacts=None)


_FIELDS = {"name": "id", "displayName": "name", "display_name": "name", "state": "state",
           "group": "group", "jobType": "job_type", "tags": "tags", "createdAt": "created_at"}


def _value(run: LiveRun, key: str) -> tuple[bool, Any]:
    """(present, value) of a filter key on ``run``."""
    if key in _FIELDS:
        value = getattr(run, _FIELDS[key])
        if isinstance(value, datetime):
            value = value.replace(tzinfo=None).isoformat()
        return True, list(value) if isinstance(value, tuple) else value
    head, _, path = key.partition(".")
    source: Any = {"config": run.config, "summary_metrics": run.summary}.get(head)
    if source is None:
        raise BackendError(f"MemoryBackend cannot filter on {key!r}")
    parts = path.split(".")
    if head == "config" and parts[-1] == "value":
        parts = parts[:-1]
    for part in parts:
        if not isinstance(source, Mapping) or part not in source:
            return False, None
        source = source[part]
    return True, source


def _ordered(op: str, value: Any, operand: Any) -> bool:
    try:
        return bool({"$gt": value > operand, "$gte": value >= operand,
                "$lt": value < operand, "$lte": value <= operand}[op])
    except TypeError:
        return False


def _compare(op: str, present: bool, value: Any, operand: Any) -> bool:
    """One field operator; a list value (tags) matches when any element does."""
    values = value if isinstance(value, list) else [value]
    checks: dict[str, Callable[[], bool]] = {
        "$exists": lambda: present == bool(operand),
        "$eq": lambda: present and (value == operand or operand in values),
        "$ne": lambda: not _compare("$eq", present, value, operand),
        "$in": lambda: present and any(v in operand for v in values),
        "$nin": lambda: not _compare("$in", present, value, operand),
        "$regex": lambda: present and isinstance(value, str) and re.search(operand, value) is not None,
    }
    if op in checks:
        return bool(checks[op]())
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return present and value is not None and _ordered(op, value, operand)
    raise BackendError(f"MemoryBackend does not know the filter operator {op}")


def matches(run: LiveRun, filters: Mapping[str, Any]) -> bool:
    """Whether ``run`` satisfies a W&B MongoDB-style filter ($and/$or/$nor and field operators)."""
    for key, condition in filters.items():
        if key == "$and":
            ok = all(matches(run, f) for f in condition)
        elif key == "$or":
            ok = any(matches(run, f) for f in condition)
        elif key == "$nor":
            ok = not any(matches(run, f) for f in condition)
        else:
            present, value = _value(run, key)
            if isinstance(condition, Mapping) and condition and all(k.startswith("$") for k in condition):
                ok = all(_compare(op, present, value, operand) for op, operand in condition.items())
            else:
                ok = _compare("$eq", present, value, condition)
        if not ok:
            return False
    return True
