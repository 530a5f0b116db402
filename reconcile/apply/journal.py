"""The apply journal: JSON lines beside the plan recording each run's progress as it happens.

Every record is flushed and fsynced before apply goes on, so after a crash, a SIGKILL or ^C
the journal says for each run how far it got. Applying the same plan again reads it to skip
what is finished and to re-check what was in flight. A journal written for another plan is
refused (``plan_digest`` differs), so a resume never mixes two plans. ``JournalLock``
(``JOURNAL.lock``, an ``flock``) makes sure only one apply writes a journal at a time.

Records (one JSON object a line)::

    {"type": "plan", "plan_digest": "sha256:..", "base_url": .., "plan_created_at": .., "time": ..}
    {"type": "run", "run": "acme/vision/abc123", "phase": "started", "time": ..}
    {"type": "run", "run": .., "phase": "metadata_written" | "files_deleted" | "artifacts_deleted" |
     "artifact_ttls_set" | "files_uploaded" | "imported", ..}
    {"type": "run", "run": .., "phase": "done" | "stale" | "failed" | "unconverged", ..}
    {"type": "complete", "time": .., "summary": ..}
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

from humanfriendly.text import pluralize

from reconcile.apply import events as ev
from reconcile.errors import PlanError, PlanLocked
from reconcile.models import Plan, PlanLike
from reconcile.planfile import content_digest_of

FINAL_PHASES = frozenset({"done", "stale", "unconverged"})
"""Phases after which a run is not touched again by this plan (``failed`` is retried)."""


def plan_digest(plan: PlanLike) -> str:
    """The plan's ``content_digest``: the identity a journal belongs to (the same for a plan in memory
    and for the file it was saved to, which is read run by run and never held whole)."""
    saved = getattr(plan, "digest", None)
    if isinstance(saved, str):
        return saved
    assert isinstance(plan, Plan)
    return content_digest_of(plan)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class RunRecord:
    """What the journal knows about one run: every phase seen and the last outcome's data."""

    phases: set[str] = field(default_factory=set)
    last: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> str | None:
        """The finishing phase recorded last, if any (``failed`` included)."""
        return self.last.get("phase") if self.last.get("phase") in (*FINAL_PHASES, "failed") else None


_L = TypeVar("_L", bound="HeldLock")


class HeldLock:
    """A lock file held (``flock``) by one apply, like Terraform's state lock. It records who holds it;
    the kernel drops the lock when its process dies, so a lock file left by a killed apply is simply
    taken over (and its holder named in ``previous``)."""

    def __init__(self, path: Path, fd: int, previous: dict[str, Any] | None, *, owned: bool = True) -> None:
        self.path = path
        self._fd: int | None = fd
        self.previous = previous
        self._owned = owned  # a lock file of ours (removed on release), not the plan file itself

    @classmethod
    def _take(cls: type[_L], path: Path, refusal: Callable[[dict[str, Any]], str],
              about: dict[str, Any]) -> _L:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise PlanLocked(refusal(holder)) from None
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)  # the holder released (and removed) it as we opened it: take the new one
        previous = _holder(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "user": _user(), "since": _now(), **about}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        return cls(path, fd, previous or None)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        if self._owned:
            self.path.unlink(missing_ok=True)  # first: a waiter that opened it re-checks the inode
        os.close(self._fd)
        self._fd = None


class JournalLock(HeldLock):
    """``JOURNAL.lock``: held by the one apply that may write the journal."""

    @staticmethod
    def path_for(journal: Path) -> Path:
        """The lock file of ``journal``."""
        return journal.with_name(journal.name + ".lock")

    @classmethod
    def acquire(cls, journal: Path) -> JournalLock:
        """Take the lock of ``journal`` or raise ``PlanLocked`` naming the holder; never waits."""
        path = cls.path_for(journal)
        path.parent.mkdir(parents=True, exist_ok=True)  # the CLI refuses a missing one before this
        return cls._take(path, lambda holder: (
            f"the plan is locked: another apply is running it ({_describe(holder)}; lock file {path}). Two "
            "applies of one plan never run at once: wait for it to finish, then apply again (the journal "
            "skips what it did)."), {"journal": str(journal)})


class PlanLock(HeldLock):
    """The lock of a saved plan, whatever ``--journal`` says: ``.reconcile-apply.<digest>.lock`` beside
    the plan file, keyed to the plan's digest (so a copy of the plan in that directory shares it too).
    In a directory that cannot be written, the plan file itself is locked (the holder then unknown)."""

    @staticmethod
    def path_for(plan_file: Path, digest: str) -> Path:
        """The lock file of the plan ``digest`` saved at ``plan_file``."""
        return plan_file.with_name(f".reconcile-apply.{digest.removeprefix('sha256:')[:16]}.lock")

    @classmethod
    def acquire(cls, plan_file: Path, digest: str, journal: Path) -> PlanLock:
        """Take the lock of the plan ``digest`` at ``plan_file`` or raise ``PlanLocked`` naming the holder
        and its journal; never waits."""
        path = cls.path_for(plan_file, digest)

        def refusal(holder: dict[str, Any]) -> str:
            where = f", journal {holder['journal']}" if holder.get("journal") else ""
            return (f"the plan is locked: another apply is running it ({_describe(holder)}{where}; lock "
                    f"file {path}). Two applies of one plan ({digest}) never run at once, whatever "
                    "--journal says: wait for it to finish, then apply again with its journal (the journal "
                    "skips what it did). Nothing was written.")

        try:
            return cls._take(path, refusal, {"journal": str(journal), "plan": digest})
        except PermissionError:  # a read-only directory: lock the plan file itself
            fd = os.open(plan_file, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PlanLocked(refusal({})) from None
            return cls(plan_file, fd, None, owned=False)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, user {holder.get('user')}, since "
            f"{holder.get('since')}")


class Journal:
    """An open journal for one plan; also an ``Observer`` that records apply events.

    It holds the journal's ``JournalLock`` from ``open`` to ``close``.
    """

    def __init__(self, path: Path, digest: str, runs: dict[str, RunRecord], handle: IO[str],
                 lock: JournalLock | None = None) -> None:
        self.path = path
        self.digest = digest
        self.runs = runs
        self._handle = handle
        self._lock = threading.Lock()  # appending a line
        self._appended = 0  # lines appended (and flushed) by this process
        self._synced = 0  # of those, how many an fsync has made durable
        self._sync_lock = threading.Lock()  # one fsync at a time; the others wait for it, then need none
        self.file_lock = lock
        self.replaced: str | None = None
        """The digest of another plan whose finished apply's journal this one replaced, if any."""

    @classmethod
    def open(cls, path: Path, plan: PlanLike, *, lock: JournalLock | None = None) -> Journal:
        """Lock, then open (or create) the journal for ``plan``.

        The journal of another plan whose apply completed is replaced by a fresh one (re-planning into
        the same file is the ordinary loop, and the new plan was made from what that apply left);
        ``replaced`` then holds that plan's digest. The journal of another plan whose apply did not
        finish is refused: it is the only record of what that apply changed and of its undo data.
        ``lock`` is the journal's lock if the caller took it already (the caller releases it);
        otherwise ``open`` takes it and ``close`` releases it.
        """
        own = JournalLock.acquire(path) if lock is None else None
        try:
            return cls._open(path, plan, lock=own)
        except BaseException:
            if own is not None:
                own.release()
            raise

    @classmethod
    def _open(cls, path: Path, plan: PlanLike, *, lock: JournalLock | None) -> Journal:
        digest = plan_digest(plan)
        runs: dict[str, RunRecord] = {}
        replaced: str | None = None
        if path.exists():
            _drop_torn_line(path)
            found, runs, complete = _read(path)
            if found is not None and found != digest:
                if not complete:
                    raise PlanError(_unfinished_message(path, found, len(runs)))
                path.unlink()
                runs, replaced = {}, found
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0  # e.g. `--journal "$(mktemp)"`
        handle = path.open("a", encoding="utf-8")
        journal = cls(path, digest, runs, handle, lock)
        journal.replaced = replaced
        if fresh:
            journal.sync(journal._write({"type": "plan", "plan_digest": digest, "base_url": plan.base_url,
                                         "plan_created_at": plan.created_at.isoformat()}))
        return journal

    def record_for(self, run: str) -> RunRecord:
        """What an earlier apply of this plan recorded for ``run`` (empty if nothing)."""
        return self.runs.get(run, RunRecord())

    def record(self, run: str, phase: str, **extra: Any) -> None:
        """Append one run record, durably (flush + fsync) before returning."""
        self.sync(self._record(run, phase, **extra))

    def _record(self, run: str, phase: str, **extra: Any) -> int:
        line = {"type": "run", "run": run, "phase": phase, **extra}
        if phase in (*FINAL_PHASES, "failed"):
            # This apply is done with the run: it is on disk for the next apply, not kept in memory
            # (memory stays flat however big the plan).
            self.runs.pop(run, None)
        else:
            self.runs.setdefault(run, RunRecord()).phases.add(phase)
        return self._write(line)

    def _write(self, record: dict[str, Any]) -> int:
        """Append ``record`` as one line, flushed to the OS; its number, for ``sync``."""
        record = {**record, "time": _now()}
        text = json.dumps(record, sort_keys=True, allow_nan=True, default=str) + "\n"
        with self._lock:
            self._handle.write(text)
            self._handle.flush()
            self._appended += 1
            return self._appended

    def sync(self, upto: int) -> None:
        """Return once line ``upto`` (and every line before it) is on disk (fsynced).

        Group commit: one fsync makes durable every line appended before it started, so threads that
        appended while another one's fsync ran share the next fsync instead of queueing one each.
        """
        with self._sync_lock:
            if self._synced >= upto:
                return
            with self._lock:
                appended = self._appended
            os.fsync(self._handle.fileno())
            self._synced = appended

    def __call__(self, event: ev.ApplyEvent) -> None:
        """Observer: turn apply events into journal records, each durable before this returns."""
        self.sync(self.append(event))

    def append(self, event: ev.ApplyEvent) -> int:
        """The event's record appended (flushed, not yet fsynced: ``sync`` it); its line number, or 0 if
        the event has no record (nothing to wait for)."""
        if isinstance(event, ev.RunStarted):
            return self._record(event.run, "started")
        if isinstance(event, ev.RunMetadataWritten):
            return self._record(event.run, "metadata_written", already=event.already)
        if isinstance(event, ev.RunFilesDeleted):
            return self._record(event.run, "files_deleted", files=event.files, bytes=event.bytes)
        if isinstance(event, ev.RunArtifactsDeleted):
            return self._record(event.run, "artifacts_deleted", versions=event.versions, bytes=event.bytes)
        if isinstance(event, ev.RunArtifactTTLsSet):
            return self._record(event.run, "artifact_ttls_set", versions=event.versions)
        if isinstance(event, ev.RunFilesUploaded):
            return self._record(event.run, "files_uploaded", files=event.files)
        if isinstance(event, ev.RunImported):
            return self._record(event.run, "imported", created=event.created, rows=event.rows,
                                files=event.files, bytes=event.bytes)
        if isinstance(event, ev.RunApplied):
            return self._record(event.run, "done", files_deleted=event.files_deleted,
                                bytes_freed=event.bytes_freed,
                                undo=event.undo.to_json() if event.undo else None)
        if isinstance(event, ev.RunStale):
            return self._record(event.run, "stale", reason=event.reason)
        if isinstance(event, ev.RunFailed):
            return self._record(event.run, "failed", message=event.message)
        if isinstance(event, ev.RunUnconverged):
            return self._record(event.run, "unconverged", fields=list(event.fields),
                                files_deleted=event.files_deleted, bytes_freed=event.bytes_freed,
                                undo=event.undo.to_json() if event.undo else None)
        if isinstance(event, ev.ApplyComplete):
            return self._write({"type": "complete", "summary": getattr(event.result, "summary_line", "")})
        return 0

    def close(self) -> None:
        """Close the file and release the lock."""
        with self._lock:
            self._handle.close()
        if self.file_lock is not None:
            self.file_lock.release()


def _unfinished_message(path: Path, found: str, runs: int) -> str:
    """What to do about another plan's unfinished journal at ``path`` (its plan file may be gone)."""
    return (f"the journal {path} belongs to another plan ({found}) whose apply did not finish "
            f"({pluralize(runs, 'run')} recorded, no completion). It is the only record of what that "
            "apply changed and how to undo it. If you still have that plan file, finish it first: "
            f"`reconcile apply THAT_PLAN.json --journal {path}` (the journal skips what is done, then "
            f"writes the undo plan). Otherwise move {path} aside to keep that record, or pass --journal "
            "with a new file for this plan. Nothing was written.")


def unfinished(path: Path) -> bool:
    """Whether ``path`` holds the journal of an apply that has not completed."""
    if not path.exists():
        return False
    _drop_torn_line(path)
    digest, _runs, complete = _read(path)
    return digest is not None and not complete


def _drop_torn_line(path: Path) -> None:
    """Cut a last line the process died writing, so the next record starts on a line of its own."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())


def _read(path: Path) -> tuple[str | None, dict[str, RunRecord], bool]:
    """The plan digest, per-run records, and whether the apply completed, of an existing journal.

    A torn last line (the process died mid-write) is ignored: its record was never
    acknowledged, so the step it describes is re-checked against the live run anyway.
    """
    digest: str | None = None
    complete = False
    runs: dict[str, RunRecord] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise PlanError(f"{path}:{number}: the journal is damaged (not JSON); delete it to start "
                            "over (runs already applied will then be reported stale)") from None
        if record.get("type") == "plan":
            digest = record.get("plan_digest")
        elif record.get("type") == "complete":
            complete = True
        elif record.get("type") == "run":
            rec = runs.setdefault(record["run"], RunRecord())
            rec.phases.add(record["phase"])
            if record["phase"] in (*FINAL_PHASES, "failed"):
                rec.last = record
    return digest, runs, complete
