"""The apply executor: writes a plan's changes run by run, safely, resumably and fast.

For each batch of runs: one batched fresh read (``Backend.get_runs``, carrying the runs'
file lists when the plan depends on them); a run whose fingerprint differs from the plan's
is *stale* and gets no write; the others are written by a thread pool (one UpsertBucket with
only the pending fields, then optional backups and one deleteFiles, or re-uploads for undo
plans); then one batched read-back (files included) compares every planned field. The
executor emits events and never prints; the journal is its first observer, so each step is
on disk before the next one starts.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TypeVar

import structlog
from humanfriendly.text import pluralize

from reconcile.apply import events as ev
from reconcile.apply.backup import ArtifactBackup, Backup, BackupStore, apply_id, file_digests
from reconcile.apply.imports import ImportWriter, SourceOpener, SourceReaders, open_source_reader
from reconcile.apply.journal import FINAL_PHASES, Journal, RunRecord
from reconcile.apply.mutations import (
    METADATA_KINDS,
    build_update,
    converged_indexes,
    pending_deletions,
    pending_uploads,
    revert,
    unconverged,
)
from reconcile.apply.undo import (
    LostFiles,
    UndoCollector,
    UndoSink,
    UndoSummary,
    is_undo,
    undo_fields,
    undo_run,
)
from reconcile.backend import Backend
from reconcile.backend.retry import with_retries
from reconcile.errors import (
    ApplyError,
    PlanError,
    PlanMismatch,
    ReconcileError,
    RetryableError,
    StalePlanError,
)
from reconcile.fingerprint import drifted, field_digests, fingerprint
from reconcile.models import (
    FORMAT_VERSION,
    Change,
    ChangeKind,
    ChangeOp,
    LiveArtifact,
    LiveFile,
    LiveRun,
    Plan,
    PlanLike,
    RunPlan,
    VersionTTL,
)
from reconcile.render.common import deleted_text, size_text, undo_promise

T = TypeVar("T")
log = structlog.get_logger(__name__)

BATCH_SIZE = 50
"""Runs re-read (and read back) per batched Runs query; also the unit of work between reads."""

MAX_VERIFYING = 2 * BATCH_SIZE
"""Read-backs in flight at most: the pipeline waits for older ones before reading back more."""


@dataclass(slots=True)
class ApplyResult:
    """What an apply did; ``ok`` only if nothing was stale, failed or unconverged."""

    runs_changed: int = 0
    files_deleted: int = 0
    files_restored: int = 0  # re-uploaded from backups (undo plans)
    bytes_freed: int = 0
    versions_deleted: int = 0  # artifact versions
    ttls_set: int = 0  # artifact version TTLs
    version_bytes_freed: int = 0
    stale: list[tuple[str, str]] = field(default_factory=list)  # (run, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run, message)
    unconverged: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (run, fields)
    skipped: int = 0  # finished by an earlier apply of this plan (journal)
    lost: LostFiles = field(default_factory=LostFiles)  # deleted without a backup
    artifact_backups: Path | None = None  # where this apply's artifact-version backups are
    undo: Plan | None = None  # the undo plan, when it was kept in memory (else it is on disk)
    undo_summary: UndoSummary = field(default_factory=UndoSummary)
    unchecked: list[str] = field(default_factory=list)  # runs written but not read back: not in the undo
    runs_created: int = 0  # imports: runs created by this apply
    history_rows: int = 0  # imports: history rows sent by this apply
    files_uploaded: int = 0  # imports: files uploaded by this apply
    bytes_uploaded: int = 0

    def count_import(self, event: ev.RunImported) -> None:
        """Add what one imported run's writes sent."""
        self.runs_created += event.created
        self.history_rows += event.rows
        self.files_uploaded += event.files
        self.bytes_uploaded += event.bytes

    @property
    def ok(self) -> bool:
        """Whether every run was applied."""
        return not (self.stale or self.failed or self.unconverged)

    @property
    def summary_line(self) -> str:
        """``Apply complete: R runs changed, F files deleted (S freed), X stale, Y failed.``"""
        freed = size_text(self.bytes_freed)  # as the plan's summary line
        line = (f"Apply complete: {pluralize(self.runs_changed, 'run')} changed, "
                f"{pluralize(self.files_deleted, 'file')} deleted ({freed} freed), {len(self.stale)} stale, "
                f"{len(self.failed)} failed")
        if self.unconverged:
            line += f", {len(self.unconverged)} did not converge"
        if self.files_restored:
            line += f", {pluralize(self.files_restored, 'file')} restored"
        if self.versions_deleted:
            line += (f", {pluralize(self.versions_deleted, 'artifact version')} deleted "
                     f"({size_text(self.version_bytes_freed)} freed)")
        if self.ttls_set:
            line += f", {pluralize(self.ttls_set, 'artifact version TTL')} set"
        if self.runs_created or self.history_rows or self.files_uploaded:
            line += (f", {pluralize(self.runs_created, 'run')} created, "
                     f"{pluralize(self.history_rows, 'history row')} and "
                     f"{pluralize(self.files_uploaded, 'file')} ({size_text(self.bytes_uploaded)}) uploaded")
        return line + "."


def check_run(rp: RunPlan) -> None:
    """Refuse a run whose changes its fingerprint does not cover (a saved plan checks each as it is read).
    An import writes what its source holds: its source is re-read and checked instead."""
    if rp.source is not None:
        return
    loose = [c.path for c in rp.changes if not _fingerprinted(c, rp.fingerprint_fields)]
    if loose:
        raise PlanError(f"the plan changes {', '.join(loose[:5])} of {rp.path} without fingerprinting "
                        "it, so a change made since the plan could not be seen; the plan was edited or "
                        "is corrupt. Make a new plan with `reconcile plan -o`.")


def check_plan(plan: PlanLike, backend: Backend) -> None:
    """Refuse a plan apply must not use: errors, another format or server, limits exceeded."""
    if plan.format_version != FORMAT_VERSION:
        raise StalePlanError(f"the plan has format_version {plan.format_version}; this reconcile applies "
                             f"version {FORMAT_VERSION} only. Make a new plan with `reconcile plan -o`.")
    if plan.base_url.rstrip("/") != backend.base_url.rstrip("/"):
        raise StalePlanError(f"the plan was made against {plan.base_url} but WANDB_BASE_URL points at "
                             f"{backend.base_url}; set WANDB_BASE_URL to the plan's server or plan again.")
    if check_run not in getattr(plan, "checked", ()):  # a SavedPlan checked every run when it was opened
        for rp in plan.iter_runs():
            check_run(rp)
    if plan.has_errors:
        raise PlanError(f"the plan has {pluralize(plan.error_count, 'error')} and cannot be applied; "
                        "`reconcile show` lists them. Fix the spec and plan again.")
    limits, changed = plan.limits, plan.changed_count
    for limit, value, noun, what in ((limits.max_changed_runs, changed, "run", "to change"),
                                     (limits.max_file_deletions, plan.file_deletions, "file", "to delete"),
                                     (limits.max_bytes, plan.bytes_to_free, "byte", "to delete")):
        if limit is not None and value > limit:
            raise PlanError(f"the plan has {pluralize(value, noun)} {what}, above the spec's limit of "
                            f"{limit}; narrow the rules or raise `limits` in the spec, then plan again.")


def _fingerprinted(change: Change, fields: Sequence[Sequence[str]]) -> bool:
    """Whether the run's fingerprint covers the live field ``change`` touches (a key or a parent).
    Artifact versions are checked live instead (a fresh alias check just before each delete)."""
    if change.kind is ChangeKind.ARTIFACT:
        return True
    if change.kind is ChangeKind.FILE:  # the whole list, or the files of its name (an undo's re-upload)
        return any(tuple(f) in (("files",), ("files", *change.key)) for f in fields)
    if change.kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
        keys = [change.key] + ([change.from_key] if change.from_key is not None else [])
        return all(any(len(f) >= 1 and f[0] == change.kind.value and tuple(f[1:]) == key[:len(f) - 1]
                       for f in fields) for key in keys)
    wanted = (change.kind.value,)
    return any(tuple(f) == wanted for f in fields)


def check_consent(plan: PlanLike, *, backup_dir: Path | None, no_backup: bool) -> None:
    """A plan that deletes files needs an explicit choice: ``--backup-dir DIR`` or ``--no-backup``."""
    if backup_dir is not None and no_backup:
        raise PlanError("--backup-dir and --no-backup contradict each other; give one of them.")
    if (plan.file_deletions or plan.artifact_deletions) and backup_dir is None and not no_backup:
        raise PlanError(
            f"the plan deletes {deleted_text(plan)} and W&B keeps no copy. Choose: --backup-dir DIR "
            f"downloads each one before deleting it ({undo_promise(plan)}), or --no-backup "
            "deletes them permanently. Nothing was written.")


def _needs_files(fields: Iterable[tuple[str, ...]]) -> bool:
    return any(f and f[0] == "files" for f in fields)


def _has_file_changes(rp: RunPlan) -> bool:
    return any(c.kind is ChangeKind.FILE for c in rp.changes)


@dataclass(slots=True)
class _Written:
    """A run whose writes went out and now awaits read-back."""

    rp: RunPlan
    failed: str | None = None  # a later step failed: the read-back says what did take, for the undo


class _Executor:
    """One apply: holds the shared state of the run workers."""

    def __init__(self, plan: PlanLike, backend: Backend, journal: Journal, parallelism: int, *,
                 backup_dir: Path | None, observers: Sequence[ev.Observer], undo: UndoSink,
                 sleep: Callable[[float], None], open_source: SourceOpener = open_source_reader) -> None:
        self.plan, self.backend, self.journal = plan, backend, journal
        self.parallelism, self.backup_dir, self.sleep = parallelism, backup_dir, sleep
        deletes = plan.file_deletions or plan.artifact_deletions
        self.backups = None if backup_dir is None or not deletes else BackupStore(
            backup_dir, apply_id(journal.digest, plan.created_at.isoformat()))
        self.observers: tuple[ev.Observer, ...] = tuple(observers)  # the journal is told first, apart
        self.result = ApplyResult()
        self.undo = undo
        self._in_flight: dict[str, RunPlan] = {}  # runs read from the plan and not yet finished, by path
        self._lock = threading.RLock()
        self.sources = SourceReaders(plan, open_source)
        self._ended = threading.Event()  # apply was interrupted: a re-read still running is abandoned
        self.imports = ImportWriter(backend, self.sources, retry=lambda fn, run: self.retry(fn, run=run),
                                    emit=self.emit)

    # ------------------------------------------------------------------ plumbing

    def emit(self, event: ev.ApplyEvent) -> None:
        """Tell the journal, then every observer, one event at a time; return once the journal has the
        event on disk (so a step is recorded before the next one starts).

        The fsync happens after the lock is released: the workers' records that were appended while one
        fsync ran are made durable together by the next one (the journal's group commit), instead of each
        worker waiting its turn under the lock for an fsync of its own (~1 ms each on a loaded disk).
        """
        with self._lock:
            self._account(event)
            if isinstance(event, ev.RunImported):
                self.result.count_import(event)
            line = self.journal.append(event)
            for observer in self.observers:
                observer(event)
        self.journal.sync(line)

    def _account(self, event: ev.ApplyEvent) -> None:
        res = self.result
        if isinstance(event, ev.RunApplied | ev.RunSkipped) and (
                not isinstance(event, ev.RunSkipped) or event.outcome == "done"):
            res.runs_changed += 1
        if isinstance(event, ev.RunApplied | ev.RunUnconverged | ev.RunSkipped | ev.RunFailed):
            # Files really deleted count even when another field (or step) of the run did not take.
            res.files_deleted += event.files_deleted
            res.bytes_freed += event.bytes_freed
        if isinstance(event, ev.RunFilesUploaded):
            res.files_restored += event.files
        if isinstance(event, ev.RunArtifactsDeleted):
            res.versions_deleted += event.versions
            res.version_bytes_freed += event.bytes
        res.ttls_set += event.versions if isinstance(event, ev.RunArtifactTTLsSet) else 0
        if isinstance(event, ev.RunStale):
            res.stale.append((event.run, event.reason))
        elif isinstance(event, ev.RunFailed):
            res.failed.append((event.run, event.message))
            if event.unchecked:
                res.unchecked.append(event.run)
        elif isinstance(event, ev.RunUnconverged):
            res.unconverged.append((event.run, event.fields))
        elif isinstance(event, ev.RunSkipped):
            res.skipped += 1
            if event.outcome == "stale":
                res.stale.append((event.run, event.detail))
            elif event.outcome == "unconverged":
                res.unconverged.append((event.run, tuple(event.detail.split(", "))))
        self._take_undo(event)

    def _take_undo(self, event: ev.ApplyEvent) -> None:
        """A finished run's undo goes to the undo sink; then nothing here refers to its plan any more."""
        undo = getattr(event, "undo", None)
        if isinstance(undo, ev.UndoRecord):
            for name, size in undo.lost_files:
                self.result.lost.add(event.run, name, size)  # type: ignore[union-attr]
            undo_rp = undo_run(self._in_flight[event.run], undo)  # type: ignore[union-attr]
            if undo_rp is not None:
                self.undo.add(undo_rp)
        if isinstance(event, ev.RunApplied | ev.RunUnconverged | ev.RunSkipped | ev.RunStale | ev.RunFailed):
            self._in_flight.pop(event.run, None)

    def retry(self, fn: Callable[[], T], run: str) -> T:
        """``fn`` with our bounded backoff on ``RetryableError`` (sleep injectable for tests)."""
        return with_retries(fn, sleep=self.sleep, run=run)

    def _list_files(self, run: LiveRun) -> tuple[LiveFile, ...]:
        """The run's files: as the batched read brought them, else listed now."""
        if run.files is not None:
            return run.files
        return self.retry(lambda: self.backend.list_files(run), run=run.path)

    # ------------------------------------------------------------------ the whole apply

    def run(self) -> ApplyResult:
        """Apply every changed run of the plan, reading it one run at a time; return what happened."""
        plan = self.plan
        self.emit(ev.ApplyStart(total_runs=plan.changed_count, total_files=plan.file_deletions,
                                total_bytes=plan.bytes_to_free, plan_digest=self.journal.digest))
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="apply") as pool:
            try:
                self._pipeline(self._todo(), pool)
            except BaseException:
                self._ended.set()
                # The writes in flight finish and are journaled (bounded); a re-read in flight is
                # abandoned (it only reads, on a daemon thread nothing joins), so Ctrl-C ends at once.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                self.sources.close()
        if self.backups is not None:
            self.backups.tidy()
            self.result.artifact_backups = self.backups.artifacts_root
        # Always a plan, empty if nothing can be undone: an undo plan left from an earlier apply
        # at the same path would revert the wrong change.
        self.result.undo = self.undo.finish()
        self.result.undo_summary = self.undo.summary
        self.emit(ev.ApplyComplete(result=self.result))
        return self.result

    def _todo(self) -> Iterator[RunPlan]:
        """The plan's changed runs still to do, read from the plan only as the pipeline asks for them;
        those an earlier apply finished are reported as skipped."""
        for rp in self.plan.iter_runs():
            if not rp.changes:
                continue
            with self._lock:
                self._in_flight[rp.path] = rp
            record = self.journal.record_for(rp.path)
            if record.final in FINAL_PHASES:
                self.emit(self._skipped(rp, record))
            else:
                yield rp

    def _skipped(self, rp: RunPlan, record: RunRecord) -> ev.RunSkipped:
        last = record.last
        undo = ev.UndoRecord.from_json(last["undo"]) if last.get("undo") else None
        detail = last.get("reason") or ", ".join(last.get("fields") or ())
        return ev.RunSkipped(run=rp.path, outcome=str(last["phase"]), detail=str(detail),
                             files_deleted=int(last.get("files_deleted") or 0),
                             bytes_freed=int(last.get("bytes_freed") or 0), undo=undo)

    def _read(self, rps: Sequence[RunPlan], what: str,
              wants_files: Callable[[RunPlan], bool]) -> dict[str, LiveRun | BaseException]:
        """Batched fresh reads of these runs, by path (an error stands in for a failed read).

        The files of every run come inside the same read when any of them ``wants_files``.
        """
        out: dict[str, LiveRun | BaseException] = {}
        by_project: dict[tuple[str, str], list[RunPlan]] = {}
        for rp in rps:
            by_project.setdefault((rp.entity, rp.project), []).append(rp)
        for (entity, project), group in by_project.items():
            ids = [rp.run_id for rp in group]
            files = any(wants_files(rp) for rp in group)

            def read(e: str = entity, p: str = project, i: list[str] = ids,
                     f: bool = files) -> dict[str, LiveRun]:
                try:
                    return self.backend.get_runs(e, p, i, with_files=f)
                except RetryableError:
                    if self._ended.is_set():  # an abandoned re-read: no retry, no "retrying" line
                        raise ApplyError("apply ended before this read") from None
                    raise

            try:
                found = self.retry(read, run=f"{entity}/{project} ({what})")
            except ReconcileError as exc:
                for rp in group:
                    out[rp.path] = exc
                continue
            for rp in group:
                live = found.get(rp.run_id)
                out[rp.path] = live if live is not None else ApplyError("the run no longer exists")
        return out

    def _pipeline(self, todo: Iterator[RunPlan], pool: ThreadPoolExecutor) -> None:
        """Re-read, write and verify in batches without a barrier between them.

        The staleness re-read is batched (one Runs query per group of ``parallelism`` runs, as the
        contract allows) and read *one group ahead*, on a daemon thread of its own (``_in_background``:
        nothing waits for it when apply is interrupted, so a Ctrl-C during a slow or retried re-read
        ends apply at once; the writes in flight are still finished): once group k is handed out, group
        k+1 is re-read while k is written, so the workers do not wait for a re-read. The read of k+2
        starts only when k+1 is handed out (at most one group re-read and not handed out), and a run
        is handed out only when fewer than ``parallelism`` writes are in flight (no queue of writes
        builds up), so the time between a run's re-read and its write grows by at most one group's
        writes over reading it just in time. An edit another client makes in that window is not
        seen: the summary and tags sent are built from that read, and W&B has no compare-and-set.
        Written runs are read back in batches of ``BATCH_SIZE`` by a worker (one task reads the
        batch, then verifies its runs) while later runs are still being re-read and written.

        ``todo`` is consumed lazily on this thread, one group at a time, and at most ``parallelism``
        writes, two re-read groups and ``MAX_VERIFYING`` runs being read back are in flight: what apply
        holds does not grow with the plan.
        """
        writes: set[Future[_Written | None]] = set()
        verifies: dict[Future[None], int] = {}  # read-back tasks and how many runs each reads back
        written: list[_Written] = []
        group_size = min(max(self.parallelism, 1), BATCH_SIZE)

        def harvest(*, block: bool) -> None:
            nonlocal writes
            if not writes:
                return
            done, pending = wait(writes, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            writes = set(pending)
            written.extend(w for w in (f.result() for f in done) if w is not None)

        def verify(*, drain: bool) -> None:
            while len(written) >= BATCH_SIZE or (drain and written):
                group = written[:BATCH_SIZE]
                del written[:BATCH_SIZE]
                settle(limit=MAX_VERIFYING - len(group))
                verifies[pool.submit(self._read_back, group)] = len(group)

        def settle(*, limit: int) -> None:
            """Wait until at most ``limit`` runs are being read back (a worker's bug surfaces here)."""
            while True:
                for future in [f for f in verifies if f.done()]:
                    del verifies[future]
                    future.result()
                if sum(verifies.values()) <= max(limit, 0):
                    return
                wait(verifies, return_when=FIRST_COMPLETED)

        def read_ahead() -> tuple[list[RunPlan], Future[dict[str, LiveRun | BaseException]]] | None:
            batch = list(islice(todo, group_size))  # here: taking runs from the plan emits events
            if not batch:
                return None
            return batch, _in_background(self._read, batch, "staleness check",
                                         lambda rp: _needs_files(rp.fingerprint_fields))

        ahead = read_ahead()
        while ahead is not None:
            batch, reread = ahead
            fresh = reread.result()
            for rp in batch:
                while len(writes) >= self.parallelism:
                    harvest(block=True)
                    verify(drain=False)
                # An import's run is written by reconcile.apply.imports; a rule's here.
                writes.add(pool.submit(self._write_import if rp.source else self._write_run, rp,
                                       fresh[rp.path]))
            ahead = read_ahead()  # the next group is re-read while this one is written
            harvest(block=False)
            verify(drain=False)
        while writes:
            harvest(block=True)
            verify(drain=False)
        verify(drain=True)
        settle(limit=0)

    def _read_back(self, group: Sequence[_Written]) -> None:
        """Read these written runs back in one batched read, then verify each (a worker's task)."""
        readback = self._read([w.rp for w in group], "read-back", self._verify_needs_files)
        for w in group:
            self._verify_run(w.rp, readback[w.rp.path], w.failed)

    # ------------------------------------------------------------------ one run

    def _write_run(self, rp: RunPlan, live: LiveRun | BaseException) -> _Written | None:  # noqa: PLR0912 - one step each
        """Check staleness and write one run; ``None`` if it was reported stale or failed."""
        log_run = log.bind(run=rp.path)
        if isinstance(live, ApplyError):
            self.emit(ev.RunStale(rp.path, str(live)))
            return None
        if isinstance(live, BaseException):
            self.emit(ev.RunFailed(rp.path, f"could not re-read the run: {live}"))
            return None
        record = self.journal.record_for(rp.path)
        resumed = "started" in record.phases
        wrote = resumed  # whether a write of this plan may have reached the run (an earlier attempt's)
        try:
            if _needs_files(rp.fingerprint_fields) and live.files is None:
                live = dataclasses.replace(live, files=self._list_files(live))
            now = fingerprint(live, rp.fingerprint_fields)
            if now != rp.fingerprint:
                # A resumed run differs from the plan by our own earlier writes; only if
                # putting those back gives the planned state is it safe to finish.
                planned = revert(rp, live) if resumed else live
                if not resumed or fingerprint(planned, rp.fingerprint_fields) != rp.fingerprint:
                    self.emit(_stale(rp, planned, undo=is_undo(self.plan)))
                    return None
                log_run.info("resuming partly applied run", phases=sorted(record.phases))
            if not resumed:
                self.emit(ev.RunStarted(rp.path))
            versions = self._prepare_versions(rp, live, record)
            if versions is None:
                return None
            uploads = any(c.kind is ChangeKind.FILE and c.op is ChangeOp.ADD for c in rp.changes) \
                and "files_uploaded" not in record.phases
            if uploads:
                self._check_sources(rp)  # a backup that is not the deleted file fails the run unwritten
            deletions = None
            if rp.file_deletions and "files_deleted" not in record.phases:
                # Backups come first: a download that fails leaves the run untouched, instead of
                # half-changed with nothing in the undo plan.
                deletions = self._backup_files(rp, live, resumed=resumed)
            wrote = True  # from here on a failure may leave writes behind (even a timed-out one lands)
            self._write_metadata(rp, live, record)
            if deletions is not None:
                self._delete_files(rp, live, *deletions)
            self._write_versions(rp, live, versions)
            if uploads:
                self._upload_files(rp, live)
        except PlanMismatch as exc:
            self.emit(ev.RunStale(rp.path, f"refused: {exc}"))
            return None
        except (ReconcileError, OSError) as exc:
            message = str(exc) or type(exc).__name__
            if wrote:
                # Read it back like an applied run, so the undo plan holds whatever did take effect.
                return _Written(rp, failed=message)
            self.emit(ev.RunFailed(rp.path, message))
            return None
        self.emit(ev.RunWritten(rp.path))
        return _Written(rp)

    def _write_import(self, rp: RunPlan, live: LiveRun | BaseException) -> _Written | None:
        """Write one imported run; ``None`` if it was reported stale or failed."""
        try:
            written = self.imports.write(rp, live, self.journal.record_for(rp.path))
        except (ReconcileError, OSError) as exc:
            self.emit(ev.RunFailed(rp.path, str(exc) or type(exc).__name__))
            return None
        if not written:
            return None
        self.emit(ev.RunWritten(rp.path))
        return _Written(rp)

    def _prepare_versions(self, rp: RunPlan, live: LiveRun, record: RunRecord) -> _Versions | None:
        """The artifact versions to delete (read fresh and backed up) and the TTLs to set; ``None``
        (reported stale) if a version gained an alias, or a TTL to set changed, since the plan."""
        deletes = bool(rp.artifact_deletions) and "artifacts_deleted" not in record.phases
        ttls = bool(rp.artifact_ttl_changes) and "artifact_ttls_set" not in record.phases
        if not deletes and not ttls:
            return _Versions()
        # One listing of the run's versions (RunOutputArtifacts) instead of a read per version.
        listed = {a.id: a for a in self.retry(lambda: self.backend.list_artifacts(live), run=rp.path)}
        todo = _Versions()
        stale = None
        if deletes:
            todo.delete, stale = _fresh_versions(rp, listed)
        if ttls and stale is None:
            todo.ttls, stale = _fresh_ttls(rp, listed)
        if stale is not None:
            self.emit(ev.RunStale(rp.path, stale))
            return None
        todo.backups = self._backup_versions(rp, live, todo.delete)
        return todo

    def _backup_versions(self, rp: RunPlan, live: LiveRun,
                         versions: Sequence[LiveArtifact]) -> Sequence[ArtifactBackup]:
        store = self.backups
        if store is None:
            return ()
        backups: list[ArtifactBackup] = []
        for version in versions:
            def backup(a: LiveArtifact = version, s: BackupStore = store) -> ArtifactBackup:
                return s.back_up_artifact(self.backend, live, a)

            backups.append(self.retry(backup, run=rp.path))
        return backups

    def _delete_versions(self, rp: RunPlan, live: LiveRun, versions: Sequence[LiveArtifact],
                         backups: Sequence[ArtifactBackup]) -> None:
        by_id = {b.artifact_id: b for b in backups}
        for version in versions:
            if self.backups is not None:  # just before the delete that needs it: there, complete, intact
                self.backups.verify_artifact(by_id[version.id])
            attempt = [0]

            def delete(a: LiveArtifact = version, attempt: list[int] = attempt) -> None:
                attempt[0] += 1
                if attempt[0] > 1 and self.backend.get_artifact(live, a.id) is None:
                    return  # the timed-out attempt landed
                # Only aliases the rule allows are left (checked just now): they go with the version.
                self.backend.delete_artifact(live, a, delete_aliases=bool(a.aliases))

            self.retry(delete, run=rp.path)
        self.emit(ev.RunArtifactsDeleted(rp.path, versions=len(versions),
                                         bytes=sum(a.size for a in versions)))

    def _write_versions(self, rp: RunPlan, live: LiveRun, versions: _Versions) -> None:
        if versions.delete:
            self._delete_versions(rp, live, versions.delete, versions.backups)
        if versions.ttls:
            self._set_ttls(rp, live, versions.ttls)

    def _set_ttls(self, rp: RunPlan, live: LiveRun,
                  todo: Sequence[tuple[LiveArtifact, VersionTTL]]) -> None:
        for version, ttl in todo:
            def send(a: LiveArtifact = version, t: VersionTTL = ttl) -> None:
                self.backend.set_artifact_ttl(live, a, t)  # idempotent: a retry after a timeout is harmless

            self.retry(send, run=rp.path)
        self.emit(ev.RunArtifactTTLsSet(rp.path, versions=len(todo)))

    def _write_metadata(self, rp: RunPlan, live: LiveRun, record: RunRecord) -> None:
        if not any(c.kind in METADATA_KINDS for c in rp.changes):
            return
        if "metadata_written" in record.phases:
            return  # an earlier attempt wrote it; never send it twice
        update = build_update(rp, live)
        if update.is_empty:
            self.emit(ev.RunMetadataWritten(rp.path, already=True))
            return
        attempt = [0]

        def send() -> None:
            attempt[0] += 1
            todo = update
            if attempt[0] > 1:
                # The failed attempt may have landed (a timeout): rebuild from a fresh read
                # so nothing already in place is sent again.
                again = self.backend.get_runs(rp.entity, rp.project, [rp.run_id]).get(rp.run_id)
                if again is None:
                    raise ApplyError("the run no longer exists")
                todo = build_update(rp, again)
                if todo.is_empty:
                    return
            self.backend.update_run(todo)

        self.retry(send, run=rp.path)
        self.emit(ev.RunMetadataWritten(rp.path))

    def _backup_files(self, rp: RunPlan, live: LiveRun, *,
                      resumed: bool) -> tuple[Sequence[LiveFile], Sequence[Backup]]:
        """The planned files still present, as the live listing has them (its download URL, never
        the plan's), each downloaded first with --backup-dir; ``PlanMismatch`` for a planned file
        the listing does not have as planned (one already gone is fine only when resuming)."""
        # The staleness check read the files moments ago; list again only if it did not.
        files = self._list_files(live)
        store = self.backups
        if store is not None and any(f.url is None for f in files):
            # The batched re-read carries no download URLs (the server pays for one on every file):
            # only a backup needs them, so only then list the run's files with them.
            files = self.retry(lambda: self.backend.list_files(live), run=rp.path)
        todo = pending_deletions(rp, files, resumed=resumed)
        backups: list[Backup] = []
        if store is not None:
            for file in todo:
                def backup(f: LiveFile = file, s: BackupStore = store) -> Backup:
                    return s.back_up(self.backend, live, f)

                backups.append(self.retry(backup, run=rp.path))
        return todo, backups

    def _delete_files(self, rp: RunPlan, live: LiveRun, todo: Sequence[LiveFile],
                      backups: Sequence[Backup]) -> None:
        if self.backups is not None:
            for backup in backups:  # just before the delete that needs them: there, complete, intact
                self.backups.verify(backup)
        attempt = [0]

        def delete() -> None:
            attempt[0] += 1
            ids = [f.id for f in todo]
            if attempt[0] > 1:
                still = {f.id for f in self.backend.list_files(live)}
                ids = [i for i in ids if i in still]
            if ids:
                self.backend.delete_files(live, ids)

        if todo:
            self.retry(delete, run=rp.path)
        self.emit(ev.RunFilesDeleted(rp.path, files=len(todo), bytes=sum(f.size for f in todo)))

    @staticmethod
    def _check_source(change: Change) -> Path:
        """The backup ``change`` re-uploads, if it has the size and checksum the undo plan recorded."""
        source = Path(change.source or "")
        if not change.source or not source.is_file():
            raise ApplyError(f"cannot re-upload {change.key[0]}: the backup {change.source!r} is missing")
        size, checksum, _md5 = file_digests(source)
        if size != change.after or checksum != change.checksum:
            raise ApplyError(f"cannot re-upload {change.key[0]}: the backup {source} has {size} bytes "
                             f"and checksum {checksum}, the undo plan expects {change.after} bytes and "
                             f"{change.checksum}; it is not the file that was deleted")
        return source

    def _check_sources(self, rp: RunPlan) -> None:
        for change in rp.changes:
            if change.kind is ChangeKind.FILE and change.op is ChangeOp.ADD:
                self._check_source(change)

    def _upload_files(self, rp: RunPlan, live: LiveRun) -> None:
        files = self._list_files(live)
        todo = pending_uploads(rp, files)
        for change in todo:
            source = self._check_source(change)  # again, just before: the file may have changed since
            def upload(s: Path = source, name: str = change.key[0]) -> None:
                self.backend.upload_file(live, s, name)

            self.retry(upload, run=rp.path)
        self.emit(ev.RunFilesUploaded(rp.path, files=len(todo)))

    def _verify_needs_files(self, rp: RunPlan) -> bool:
        """Whether reading ``rp`` back needs its files (file changes, or an undo that depends on them)."""
        restored = [c.key[0] for c in rp.file_deletions] if self.backups is not None else []
        return _has_file_changes(rp) or _needs_files(undo_fields(rp, restored)) or rp.source is not None

    def _existing_backup(self, rp: RunPlan, file: LiveFile) -> Backup | None:
        return None if self.backups is None else self.backups.existing(rp.path, file)

    def _verify_run(self, rp: RunPlan, live: LiveRun | BaseException, failed: str | None = None) -> None:
        """Read-back: compare every planned field; report applied or unconverged (or, for a run whose
        writes began and then ``failed``, failed with the undo of what did take effect)."""
        if isinstance(live, BaseException):
            if failed is not None:
                self.emit(ev.RunFailed(rp.path, f"{failed}; reading the run back to see which writes "
                                                f"took effect failed too ({live}), so the undo plan does not "
                                                "cover it: apply again to finish it", unchecked=True))
                return
            self.emit(ev.RunFailed(rp.path, f"written, but reading it back failed: {live}; apply again to "
                                            "check it", unchecked=True))
            return
        if rp.source is not None:
            self._verify_import(rp, live)
            return
        deleted_ok = [c.file for c in rp.file_deletions if c.file is not None]
        backups = [b for b in (self._existing_backup(rp, f) for f in deleted_ok) if b is not None]
        try:
            fields = undo_fields(rp, [b.name for b in backups])
            files: tuple[LiveFile, ...] | None = None
            if self._verify_needs_files(rp):
                files = self._list_files(live)
                live = dataclasses.replace(live, files=files)
            if rp.artifact_deletions or rp.artifact_ttl_changes:
                live = dataclasses.replace(live, artifacts=self.backend.list_artifacts(live))
        except ReconcileError as exc:
            self.emit(ev.RunFailed(rp.path, f"{failed}; reading it back failed too: {exc}" if failed
                                   else f"written, but reading it back failed: {exc}", unchecked=True))
            return
        missing = unconverged(rp, live, files)
        done = set(converged_indexes(rp, live, files))
        deleted = [c.file for i, c in enumerate(rp.changes)
                   if i in done and c.op is ChangeOp.DELETE and c.file is not None]
        restored = [b for b in (self._existing_backup(rp, f) for f in deleted) if b is not None]
        saved = {b.file_id for b in restored}
        undo = ev.UndoRecord(
            fingerprint=fingerprint(live, fields), fingerprint_fields=fields,
            field_digests=field_digests(live, fields),
            inverted=tuple(i for i in sorted(done) if rp.changes[i].kind is not ChangeKind.FILE),
            restored_files=tuple(restored),
            lost_files=tuple((f.name, f.size) for f in deleted if f.id not in saved))
        freed = sum(f.size for f in deleted)
        if failed is not None:
            self.emit(ev.RunFailed(rp.path, failed, undo=undo, files_deleted=len(deleted), bytes_freed=freed))
        elif missing:
            self.emit(ev.RunUnconverged(rp.path, missing, undo=undo, files_deleted=len(deleted),
                                        bytes_freed=freed))
        else:
            self.emit(ev.RunApplied(rp.path, changes=len(rp.changes), files_deleted=len(deleted),
                                    bytes_freed=freed, undo=undo))

    def _verify_import(self, rp: RunPlan, live: LiveRun) -> None:
        """Read-back of an imported run: every mapped field, its history and its files (no undo: a
        created run is not deleted by an undo plan)."""
        try:
            files = self._list_files(live)
            missing = self.imports.unconverged(rp, dataclasses.replace(live, files=files), files)
        except ReconcileError as exc:
            self.emit(ev.RunFailed(rp.path, f"written, but reading it back failed: {exc}"))
            return
        if missing:
            self.emit(ev.RunUnconverged(rp.path, missing))
        else:
            self.emit(ev.RunApplied(rp.path, changes=len(rp.changes), files_deleted=0, bytes_freed=0))


@dataclass(slots=True)
class _Versions:
    """A run's artifact work, read fresh just before writing."""

    delete: list[LiveArtifact] = field(default_factory=list)
    ttls: list[tuple[LiveArtifact, VersionTTL]] = field(default_factory=list)
    backups: Sequence[ArtifactBackup] = ()  # of ``delete``, with --backup-dir


def _in_background(fn: Callable[..., T], *args: object) -> Future[T]:
    """``fn(*args)`` on a daemon thread of its own; its result (or error) comes through the Future.

    Unlike a ThreadPoolExecutor's worker, the thread is joined by nothing (not by the interpreter at
    exit either): a KeyboardInterrupt while the caller waits on the Future ends the process at once,
    and an abandoned call (a re-read: it only reads) dies with it.
    """
    future: Future[T] = Future()

    def call() -> None:
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to whoever waits on the Future
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=call, name="apply-reread", daemon=True).start()
    return future


def _gained_alias(planned: LiveArtifact, now: LiveArtifact) -> str | None:
    """Why a version that gained an alias since the plan is left alone (someone promoted it), or None."""
    gained = sorted(set(now.aliases) - set(planned.aliases))
    if not gained:
        return None
    return f"artifact version {planned.name} gained the alias {', '.join(gained)} since the plan; plan again"


def _fresh_versions(rp: RunPlan,
                    listed: Mapping[str, LiveArtifact]) -> tuple[list[LiveArtifact], str | None]:
    """The planned artifact versions still there (as just listed); a reason if one gained an alias.

    A version that gained an alias since the plan is never deleted (someone promoted it): the
    run is stale, and none of its changes are written.
    """
    fresh: list[LiveArtifact] = []
    for change in rp.artifact_deletions:
        planned = change.artifact
        if planned is None:
            continue
        now = listed.get(planned.id)
        if now is None:
            continue  # already deleted (an earlier attempt, or someone else)
        promoted = _gained_alias(planned, now)
        if promoted:
            return [], promoted
        fresh.append(now)
    return fresh, None


def _fresh_ttls(
    rp: RunPlan, listed: Mapping[str, LiveArtifact]
) -> tuple[list[tuple[LiveArtifact, VersionTTL]], str | None]:
    """The TTLs still to set (as just listed); a reason if a version is gone, gained an alias, or its TTL
    is neither the planned before nor after (someone else set it since the plan)."""
    todo: list[tuple[LiveArtifact, VersionTTL]] = []
    for change in rp.artifact_ttl_changes:
        planned = change.artifact
        if planned is None:
            continue
        now = listed.get(planned.id)
        if now is None:
            return [], f"artifact version {planned.name} was deleted since the plan; plan again"
        promoted = _gained_alias(planned, now)
        if promoted:
            return [], promoted
        desired = VersionTTL.parse(str(change.after))
        if desired.satisfied_by(now.ttl):
            continue  # set already (an earlier attempt of this apply)
        current = None if now.ttl is None else str(now.ttl)
        if current != change.before:
            return [], (f"the TTL of artifact version {planned.name} changed since the plan "
                        f"({change.before} -> {current}); plan again")
        todo.append((now, desired))
    return todo, None


def _stale(rp: RunPlan, live: LiveRun, *, undo: bool = False) -> ev.RunStale:
    """The stale event for ``rp``, naming the fields that drifted since the plan. An undo plan cannot
    be planned again: its line says what to do instead."""
    fields = drifted(live, rp.fingerprint_fields, rp.field_digests)
    what = ", ".join(fields) if fields else "the run"
    if undo:
        return ev.RunStale(rp.path, f"{what} changed since the apply this undo plan reverts; nothing was "
                           "written. An undo plan cannot be made again: put those fields back as that apply "
                           "left them and apply the undo plan again, or restore the run by hand (`reconcile "
                           "show` of the undo plan lists its values; file backups stay in the backup "
                           "directory)", fields)
    return ev.RunStale(rp.path, f"{what} changed since the plan; nothing was written (plan again)", fields)


def apply_plan(plan: PlanLike, backend: Backend, *, journal: Journal, parallelism: int = 10,
               backup_dir: Path | None = None, no_backup: bool = False, observers: Sequence[ev.Observer] = (),
               undo: UndoSink | None = None, sleep: Callable[[float], None] = time.sleep,
               open_source: SourceOpener = open_source_reader) -> ApplyResult:
    """Apply ``plan`` through ``backend``, recording each step in ``journal``; never prints.

    ``plan`` is read one run at a time (``iter_runs``); the undo runs go to ``undo`` as the runs
    finish (default: kept in memory, ``ApplyResult.undo``).

    Raises ``PlanError``/``StalePlanError`` before writing anything if the plan has errors,
    another format version or server, breaks its limits, or deletes files without a choice of
    ``backup_dir`` or ``no_backup``. Stale, failed and unconverged runs are reported in the
    result (and by events), not raised.
    """
    check_plan(plan, backend)
    check_consent(plan, backup_dir=backup_dir, no_backup=no_backup)
    if parallelism < 1:
        raise PlanError("--parallelism must be at least 1")
    executor = _Executor(plan, backend, journal, parallelism, backup_dir=backup_dir, observers=observers,
                         undo=undo if undo is not None else UndoCollector(plan), sleep=sleep,
                         open_source=open_source)
    return executor.run()
