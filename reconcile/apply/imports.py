"""Applying an import's runs (``imports:``): create the run, stream its history, upload its files,
then set its state and summary; the executor reads it back like any other run.

Each step is idempotent and resumes from what the destination holds, not from memory, so a killed
apply finishes without writing anything twice:

1. The source run is read again; if it changed since the plan (``source_fingerprint``), the run is
   stale and nothing is written. A plan that carries the history rows (MLflow) has the run read
   without its histories and compared by ``revision`` (each metric's last logged point, not every
   point): a point logged since the plan after a metric's last step makes it stale, one added below
   it does not (README, "Imports"). A run to create that exists by now (and that this plan's journal
   did not start) is stale too; an update checks the destination's fingerprint as rules do.
2. UpsertBucket's create form (``wandb.init``'s) creates the run with its name, notes, group, job
   type, tags and config (an upsert by run id: sending it again changes nothing).
3. History: the destination's history position is read first (``historyLineCount`` and the last
   row's ``_step``, as the SDK reads them to resume a run); only source rows after that step are
   sent, through the file_stream endpoint, at the line offsets that follow. A row is never sent
   twice. The last request carries ``complete`` with the run's exit code (0 unless it failed). A run
   created by this attempt (not resumed: it was absent at the staleness check) holds no rows, so
   nothing is read before sending them.
4. Files: every source file the destination lacks at the planned size (its files are listed; a run
   created by this attempt has none) is downloaded from the source and uploaded with the client's
   CreateRunFiles flow, one CreateRunFiles for up to ``FILES_PER_UPLOAD`` files.
5. One UpsertBucket sets the state and the whole summary (the source's values, and ``_step``: the
   last history step, which the next plan compares) last, so a run whose summary shows its last
   step has all of its history.

The created time cannot be written: W&B sets it when the run is created, and no field of the
client's UpsertBucket carries one (README, "Imports").
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog
from humanfriendly.text import pluralize

from reconcile.apply import events as ev
from reconcile.apply.journal import RunRecord
from reconcile.apply.mutations import unconverged
from reconcile.backend import Backend, HistoryPosition, RunCreate, RunUpdate
from reconcile.errors import ApplyError, NotFound
from reconcile.fingerprint import drifted, fingerprint
from reconcile.models import (
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    LiveFile,
    LiveRun,
    MlflowSource,
    PlanLike,
    RunAction,
    RunPlan,
    WandbSource,
)
from reconcile.planner import same
from reconcile.sources import SourceRead, SourceReader, open_reader

T = TypeVar("T")
log = structlog.get_logger(__name__)

HISTORY_ROWS_PER_REQUEST = 1000
"""History rows per file_stream request (the SDK batches by time; a few hundred KB per request)."""

FILES_PER_UPLOAD = 20
"""Files uploaded with one CreateRunFiles (each downloaded from the source first, so this bounds the
local disk an upload holds)."""

_OWN_KINDS = frozenset({ChangeKind.STATE, ChangeKind.CREATED_AT, ChangeKind.HISTORY})
"""Import-only change kinds, checked here rather than by ``mutations.unconverged``."""

SourceOpener = Callable[[str, MlflowSource | WandbSource], SourceReader]


class Retry(Protocol):
    """The executor's bounded backoff: ``retry(fn, run)`` calls ``fn`` until it succeeds."""

    def __call__(self, fn: Callable[[], T], run: str) -> T:
        """``fn()``, retried on RetryableError."""
        ...


def open_source_reader(name: str, source: MlflowSource | WandbSource) -> SourceReader:
    """The reader of an import's source, as planning opens it."""
    return open_reader(name, source)


class SourceReaders:
    """Each import's reader, opened once on first use (from any worker thread), closed together."""

    def __init__(self, plan: PlanLike, opener: SourceOpener = open_source_reader) -> None:
        self.sources = dict(plan.sources)
        self.opener = opener
        self._readers: dict[str, SourceReader] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> SourceReader:
        """The reader of import ``name``; an ApplyError if the plan does not say where it reads."""
        with self._lock:
            reader = self._readers.get(name)
            if reader is None:
                source = self.sources.get(name)
                if source is None:
                    raise ApplyError(f"the plan does not say where import {name!r} reads its runs; make a "
                                     "new plan with `reconcile plan -o`")
                reader = self._readers[name] = self.opener(name, source)
            return reader

    def close(self) -> None:
        """Close every reader opened."""
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()


def _chunks(rows: Sequence[Mapping[str, Any]], size: int) -> Iterator[Sequence[Mapping[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _exitcode(state: str) -> int:
    """The exit code ``complete`` carries: 0 for a run that did not fail (the state is set after)."""
    return 1 if state in ("failed", "crashed") else 0


class ImportWriter:
    """Writes the runs of imports for the executor; emits the same events as rule changes."""

    def __init__(self, backend: Backend, readers: SourceReaders, *,
                 retry: Retry, emit: Callable[[ev.ApplyEvent], None]) -> None:
        self.backend = backend
        self.readers = readers
        self.retry = retry
        self.emit = emit

    # ------------------------------------------------------------------ write

    def write(self, rp: RunPlan, live: LiveRun | BaseException, record: RunRecord) -> bool:
        """Check staleness and write one imported run; False if it was reported stale (never raises
        for the run's own failures: the caller reports ``ReconcileError``/``OSError`` as failed)."""
        assert rp.source is not None
        resumed = "started" in record.phases
        # Absent: the run (ApplyError from the batched read) or its whole project (NotFound) is not there yet.
        absent = isinstance(live, ApplyError | NotFound)
        if absent and rp.action is RunAction.UPDATE:
            self.emit(ev.RunStale(rp.path, "the run no longer exists in the destination; nothing was written "
                                           "(plan again)"))
            return False
        if not isinstance(live, LiveRun) and not absent:
            raise live if isinstance(live, BaseException) else ApplyError("the run could not be read")
        reader = self.readers.get(rp.source)
        fresh, current = self._source(rp, reader)
        if fresh is None:
            self.emit(ev.RunStale(rp.path, f"the source run no longer exists in import {rp.source!r}; "
                                           "nothing was written (plan again)"))
            return False
        if not current and fresh.run.fingerprint() != rp.source_fingerprint:
            self.emit(ev.RunStale(rp.path, "the source run changed since the plan; nothing was written "
                                           "(plan again)", ("source",)))
            return False
        if not resumed and isinstance(live, LiveRun):
            if rp.action is RunAction.CREATE:
                self.emit(ev.RunStale(rp.path, "a run with this id was created in the destination since the "
                                               "plan; nothing was written (plan again)"))
                return False
            if fingerprint(live, rp.fingerprint_fields) != rp.fingerprint:
                fields = drifted(live, rp.fingerprint_fields, rp.field_digests)
                what = ", ".join(fields) if fields else "the run"
                self.emit(ev.RunStale(rp.path, f"{what} changed since the plan; nothing was written (plan "
                                               "again)", fields))
                return False
        # A resumed run differs from the plan by this plan's own writes; the source is unchanged (checked
        # above) and every step below resumes from what the destination holds.
        if not resumed:
            self.emit(ev.RunStarted(rp.path))
        # A run this apply creates now (not resumed: it was absent at the staleness check) has no history
        # and no files yet, so neither is read before writing; a resumed one reads what it holds.
        empty = rp.action is RunAction.CREATE and not resumed
        target = self._create(rp, fresh, resumed=resumed) if rp.action is RunAction.CREATE else live
        assert isinstance(target, LiveRun)
        rows, last_step = self._history(rp, target, fresh, empty=empty)
        files, size = self._files(rp, target, reader, empty=empty)
        self._finish(rp, target, fresh, last_step)
        self.emit(ev.RunImported(rp.path, created=rp.action is RunAction.CREATE, rows=rows, files=files,
                                 bytes=size))
        return True

    def _source(self, rp: RunPlan, reader: SourceReader) -> tuple[SourceRead | None, bool]:
        """The source run read fresh (None: it is gone), and whether it is known to be as planned.

        A plan that carries the history rows has the run read without its histories (``peek``): if its
        ``revision`` is the planned one, the rows to write are the carried ones, not read again. Otherwise
        (no rows carried, or another revision) the run is read whole, histories too, for the caller to
        compare with ``source_fingerprint``."""
        if rp.source_rows is not None and rp.source_revision is not None:
            peeked = self.retry(lambda: reader.peek(rp.run_id), rp.path)
            if peeked is None:
                return None, False
            if peeked.revision() == rp.source_revision:
                return SourceRead(peeked, rp.source_rows), True
        return self.retry(lambda: reader.read(rp.run_id), rp.path), False

    def _create(self, rp: RunPlan, fresh: SourceRead, *, resumed: bool) -> LiveRun:
        """Send the create form (an upsert: harmless if an earlier attempt created the run). A new run is
        what the form set (its storage id from the answer); a resumed one is read back, since an earlier
        attempt may have written more."""
        source = fresh.run
        create = RunCreate(entity=rp.entity, project=rp.project, run_id=rp.run_id, display_name=source.name,
                           notes=source.notes, tags=tuple(source.tags), group=source.group,
                           job_type=source.job_type, config=dict(source.config))
        storage_id = self.retry(lambda: self.backend.create_run(create), rp.path)
        if not resumed:
            return LiveRun(entity=rp.entity, project=rp.project, id=rp.run_id, storage_id=storage_id,
                           name=source.name, state="running", created_at=datetime.now(timezone.utc),
                           config=dict(source.config), summary={}, tags=tuple(source.tags),
                           group=source.group, job_type=source.job_type, notes=source.notes, files=())
        found = self.retry(lambda: self.backend.get_runs(rp.entity, rp.project, [rp.run_id]), rp.path)
        live = found.get(rp.run_id)
        if live is None:
            raise ApplyError("W&B confirmed the creation but the run cannot be read back; apply again")
        return live

    def _history(self, rp: RunPlan, live: LiveRun, fresh: SourceRead, *,
                 empty: bool) -> tuple[int, int | None]:
        """Stream the source rows after the destination's last step (``empty``: a run just created, with
        no rows); (rows sent, last step now). The last request carries ``complete``, as wandb-core's last
        file_stream request does."""
        position = (HistoryPosition(0, None, 0) if empty
                    else self.retry(lambda: self.backend.history_position(live), rp.path))
        # System metrics first: the request that carries ``complete`` finishes the run, so it goes last.
        self._events(rp, live, fresh, position.events_lines)
        after = position.last_step
        todo = [self._row(row, fresh) for row in fresh.rows if after is None or int(row["_step"]) > after]
        offset = position.lines
        exitcode = _exitcode(fresh.run.state) if todo or rp.action is RunAction.CREATE else None
        chunks = list(_chunks(todo, HISTORY_ROWS_PER_REQUEST)) or ([()] if exitcode is not None else [])
        for index, chunk in enumerate(chunks):
            final = index == len(chunks) - 1
            # A retried request goes to the same offsets: the lines are rewritten, never added twice.
            def send(c: Sequence[Mapping[str, Any]] = chunk, at: int = offset, done: bool = final) -> None:
                self.backend.append_history(live, at, c, exitcode=exitcode if done else None)

            self.retry(send, rp.path)
            offset += len(chunk)
        last = int(todo[-1]["_step"]) if todo else after
        return len(todo), last

    def _events(self, rp: RunPlan, live: LiveRun, fresh: SourceRead, have: int) -> None:
        """System-metric rows (W&B sources) after the ``have`` lines the destination holds."""
        offset = have
        for chunk in _chunks(fresh.events[have:], HISTORY_ROWS_PER_REQUEST):
            def send(c: Sequence[Mapping[str, Any]] = chunk, at: int = offset) -> None:
                self.backend.append_history(live, at, c, events=True)

            self.retry(send, rp.path)
            offset += len(chunk)

    @staticmethod
    def _row(row: Mapping[str, Any], fresh: SourceRead) -> dict[str, Any]:
        """A history row as the SDK logs it: ``_runtime`` (seconds since the run started) added if absent."""
        out = dict(row)
        stamp = out.get("_timestamp")
        if "_runtime" not in out and isinstance(stamp, int | float):
            out["_runtime"] = max(stamp - fresh.run.created_at.timestamp(), 0.0)
        return out

    def _files(self, rp: RunPlan, live: LiveRun, reader: SourceReader, *, empty: bool) -> tuple[int, int]:
        """Upload the planned files the destination lacks at their planned size (``empty``: a run just
        created, with none), in batches of ``FILES_PER_UPLOAD`` (one CreateRunFiles each); (files, bytes)."""
        uploads = [c for c in rp.changes if c.kind is ChangeKind.FILE and c.op is ChangeOp.ADD]
        if not uploads:
            return 0, 0
        have = {} if empty else {f.name: f.size for f in self.retry(lambda: self.backend.list_files(live),
                                                                     rp.path)}
        todo = [c for c in uploads if have.get(c.key[0]) != c.after]
        size = 0
        with tempfile.TemporaryDirectory(prefix="reconcile-import-") as tmp:
            for start in range(0, len(todo), FILES_PER_UPLOAD):
                batch: list[tuple[Path, str]] = []
                for index, change in enumerate(todo[start:start + FILES_PER_UPLOAD], start):
                    name = change.key[0]
                    local = Path(tmp, str(index))

                    def download(n: str = name, dest: Path = local) -> None:
                        reader.download(rp.run_id, n, dest)

                    self.retry(download, rp.path)
                    got = local.stat().st_size
                    if got != change.after:
                        raise ApplyError(f"the source file {name} has {pluralize(got, 'byte')}, the plan "
                                         f"expects {change.after}; plan again")
                    batch.append((local, name))
                    size += got

                def upload(files: Sequence[tuple[Path, str]] = tuple(batch)) -> None:
                    self.backend.upload_files(live, files)

                self.retry(upload, rp.path)
                for local, _ in batch:
                    local.unlink()
        return len(todo), size

    def _finish(self, rp: RunPlan, live: LiveRun, fresh: SourceRead, last_step: int | None) -> None:
        """State and the whole summary last (and, for an update, the changed fields)."""
        source = fresh.run
        summary = {**live.summary, **source.summary}
        if last_step is not None:
            summary["_step"] = last_step
        fields: dict[str, Any] = {"state": source.state, "summary": summary}
        if rp.action is RunAction.UPDATE:
            config = {k: v for k, v in source.config.items() if not same(live.config.get(k), v)}
            if config:
                fields["config"] = ({**live.config, **config} if rp.config_writes is ConfigWrites.REPLACE
                                    else config)
            missing = [t for t in source.tags if t not in live.tags]
            if missing:
                fields["tags"] = (*live.tags, *missing)
            for attr, value in (("display_name", source.name), ("notes", source.notes),
                                ("group", source.group), ("job_type", source.job_type)):
                if value is not None:
                    fields[attr] = value
        update = RunUpdate(storage_id=live.storage_id, **fields)
        self.retry(lambda: self.backend.update_run(update), rp.path)
        self.emit(ev.RunMetadataWritten(rp.path))

    # ------------------------------------------------------------------ read-back

    def unconverged(self, rp: RunPlan, live: LiveRun, files: Sequence[LiveFile]) -> tuple[str, ...]:
        """Display paths of planned changes the read-back run does not show (history: its last step,
        and for a created run exactly one line per source row, i.e. nothing written twice)."""
        common = dataclasses.replace(rp, changes=tuple(c for c in rp.changes if c.kind not in _OWN_KINDS))
        missing = list(unconverged(common, live, files))
        for change in rp.changes:
            if change.kind is ChangeKind.STATE and live.state != change.after:
                missing.append(change.path)
            elif change.kind is ChangeKind.HISTORY:
                position = self.retry(lambda: self.backend.history_position(live), rp.path)
                wanted = change.after or {}
                creation = rp.action is RunAction.CREATE
                rows_ok = not creation or (position.lines == wanted.get("rows")
                                           and position.events_lines == wanted.get("system_metrics", 0))
                if position.last_step != wanted.get("last_step") or not rows_ok \
                        or not same(live.summary.get("_step"), wanted.get("last_step")):
                    missing.append(change.path)
        return tuple(missing)
