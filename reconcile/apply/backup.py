"""``--backup-dir``: download each file before it is deleted, and prove it is there before the delete.

Each apply keeps its backups to itself, under ``DIR/<apply id>/`` (the plan's creation time and
digest, so a resumed apply of the same plan finds its own backups and another plan never touches
them)::

    DIR/<apply id>/files/<entity>/<project>/<run id>/<path in run>   the backups
    DIR/<apply id>/staging/<n>.download                               downloads in flight
    DIR/<apply id>/manifest.jsonl                                     one line per backup

A download is staged under ``staging/`` with a name of our own, never one derived from a run's
file names, so no file name can reach (and overwrite) a staging file or another backup. It is
hashed (sha256, and W&B's base64 md5 checked when the listing gives one), fsynced, then linked
into ``files/`` *without* overwriting: an existing backup with other bytes is an error, never
replaced. Just before the deleteFiles that needs them, ``verify`` re-reads every backup and checks
it exists, is complete and has the checksum recorded at download.

A run file's name comes from the server, so it is treated as untrusted: a name that is
absolute, holds ``..`` segments, a NUL or a backslash, or resolves outside DIR is refused
(and the file is then not deleted).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import itertools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from reconcile.backend import Backend
from reconcile.errors import ApplyError, RetryableError
from reconcile.models import LiveArtifact, LiveFile, LiveRun
from reconcile.planfile import fsync_directory

_CHUNK = 1 << 20


def backup_path(backup_dir: Path, entity: str, project: str, run_id: str, name: str) -> Path:
    """Where ``name`` of that run is backed up under ``backup_dir``; ``ApplyError`` if it would escape."""
    parts: list[str] = []
    for label, value in (("entity", entity), ("project", project), ("run id", run_id), ("file name", name)):
        if not value or "\x00" in value or "\\" in value:
            raise ApplyError(f"refusing to back up {name!r}: the {label} {value!r} is empty or holds a "
                             "NUL or backslash")
        pure = PurePosixPath(value)
        if pure.is_absolute() or any(p in ("..", ".") for p in value.split("/")) or \
                (label != "file name" and len(pure.parts) != 1):
            raise ApplyError(f"refusing to back up {name!r}: the {label} {value!r} would escape the backup "
                             "directory")
        parts.extend(pure.parts)
    root = backup_dir.resolve()
    dest = root.joinpath(*parts)
    if not dest.resolve().is_relative_to(root):  # a symlink inside DIR pointing out of it
        raise ApplyError(f"refusing to back up {name!r}: {dest} resolves outside {root}")
    return dest


@dataclass(frozen=True, slots=True)
class Backup:
    """One backed-up file: where it is and what its bytes hash to."""

    run: str  # entity/project/run id
    file_id: str
    name: str
    size: int
    updated_at: str  # the original upload time (ISO 8601), for retention after an undo
    sha256: str  # "sha256:<hex>" of the backup's bytes
    md5: str  # W&B's form: base64 of the md5 digest
    path: Path

    def to_json(self) -> dict[str, Any]:
        """The manifest line."""
        return {"run": self.run, "file_id": self.file_id, "name": self.name, "size": self.size,
                "updated_at": self.updated_at, "sha256": self.sha256, "md5": self.md5, "path": str(self.path)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backup:
        """Inverse of ``to_json`` (``KeyError``/``TypeError``/``ValueError`` on a malformed one)."""
        return cls(run=str(data["run"]), file_id=str(data["file_id"]), name=str(data["name"]),
                   size=int(data["size"]), updated_at=str(data["updated_at"]), sha256=str(data["sha256"]),
                   md5=str(data["md5"]), path=Path(data["path"]))


def file_digests(path: Path) -> tuple[int, str, str]:
    """Size, ``sha256:<hex>`` and W&B's base64 md5 of the file at ``path``, in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 - W&B's md5 field, not security
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            sha.update(chunk)
            md5.update(chunk)
    return size, "sha256:" + sha.hexdigest(), base64.b64encode(md5.digest()).decode()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_artifact(backend: Backend, run: LiveRun, artifact: LiveArtifact, backup_dir: Path) -> Path:
    """Download every file of an artifact version to ``DIR/<entity>/<project>/<run id>/artifacts/<name>/vN``
    and check that the files add up to the version's size; the directory, or ``ApplyError``."""
    dest = backup_path(backup_dir, run.entity, run.project, run.id,
                       f"artifacts/{artifact.collection}/v{artifact.version_index}")
    dest.mkdir(parents=True, exist_ok=True)
    files = backend.download_artifact(run, artifact, dest)
    total = 0
    for name, size in files:
        path = dest / name  # the backend refused names that leave dest
        got = path.stat().st_size if path.is_file() else -1
        if got != size:
            raise ApplyError(f"backup of {artifact.name} ({name}) has {got} bytes, expected {size}; the "
                             "version was not deleted. Check the disk and run apply again.")
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        total += got
    if total != artifact.size:
        raise ApplyError(f"backup of {artifact.name} holds {total} bytes in {len(files)} files, W&B lists "
                         f"{artifact.size}; the version was not deleted.")
    return dest


def apply_id(plan_digest: str, created_at: str) -> str:
    """The directory name of one plan's backups: ``<created>-<12 hex of the plan digest>``."""
    stamp = "".join(ch for ch in created_at if ch.isalnum())[:15]
    return f"{stamp}-{plan_digest.rsplit(':', maxsplit=1)[-1][:12]}"


class BackupStore:
    """The backups of one apply (one plan) under ``DIR/<apply id>``; thread-safe."""

    def __init__(self, backup_dir: Path, apply_dir_name: str) -> None:
        self.backup_dir = backup_dir
        # Resolved first: `a/../b` must not create `a` (and a symlinked DIR is followed once, here).
        self.root = backup_dir.resolve() / apply_dir_name
        self.files_root = self.root / "files"
        self.staging = self.root / "staging"
        self.manifest = self.root / "manifest.jsonl"
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._known: dict[tuple[str, str], Backup] = {}  # (run, file id) -> backup
        for directory in (self.files_root, self.staging):
            directory.mkdir(parents=True, exist_ok=True)
        if self.manifest.exists():
            for line in self.manifest.read_text(encoding="utf-8").splitlines():
                try:
                    backup = Backup.from_json(json.loads(line))
                except (ValueError, TypeError, KeyError):
                    continue  # a torn last line: that backup is checked again (or redone)
                self._known[(backup.run, backup.file_id)] = backup

    def path_for(self, run: LiveRun, name: str) -> Path:
        """Where ``name`` of ``run`` is backed up (``ApplyError`` for a name that would escape)."""
        return backup_path(self.files_root, run.entity, run.project, run.id, name)

    def back_up(self, backend: Backend, run: LiveRun, file: LiveFile) -> Backup:
        """Download ``file`` (of the live listing) and place it, never over another backup."""
        dest = self.path_for(run, file.name)
        known = self.existing(run.path, file)
        if known is not None and known.path == dest:
            try:
                self.verify(known)
            except ApplyError:
                pass  # gone or damaged since: download again (a damaged one is never overwritten)
            else:
                return known  # an earlier attempt of this apply made it, and it is intact
        with self._lock:
            staged = self.staging / f"{os.getpid()}-{next(self._counter)}.download"
        try:
            backend.download_file(run, file, staged)
            size, sha, md5 = file_digests(staged) if staged.exists() else (-1, "", "")
            if size != file.size:
                raise RetryableError(f"backup of {run.path}/{file.name} has {size} bytes, W&B lists "
                                     f"{file.size}; the file was not deleted")
            if file.md5 and md5 != file.md5:
                raise RetryableError(f"backup of {run.path}/{file.name} has md5 {md5}, W&B lists {file.md5}; "
                                     "the file was not deleted")
            _fsync(staged)  # the backup must be on disk before the only other copy is deleted
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._place(staged, dest, sha, run, file)
        finally:
            staged.unlink(missing_ok=True)
        backup = Backup(run=run.path, file_id=file.id, name=file.name, size=size,
                        updated_at=file.updated_at.isoformat().replace("+00:00", "Z"), sha256=sha,
                        md5=file.md5 or md5, path=dest)
        self._remember(backup)
        return backup

    def _place(self, staged: Path, dest: Path, sha: str, run: LiveRun, file: LiveFile) -> None:
        """Link ``staged`` to ``dest``; an existing ``dest`` is kept (same bytes) or refused."""
        try:
            os.link(staged, dest)
        except FileExistsError:
            _size, other, _md5 = file_digests(dest)
            if other != sha:
                raise ApplyError(
                    f"refusing to overwrite the backup {dest}: it holds other bytes than {run.path}/"
                    f"{file.name} now has; the file was not deleted. Use another --backup-dir.") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here (some network or FUSE file systems): copy, still never over a file.
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, staged.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        fsync_directory(dest.parent)

    def _remember(self, backup: Backup) -> None:
        line = json.dumps(backup.to_json(), sort_keys=True) + "\n"
        with self._lock:
            with self.manifest.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._known[(backup.run, backup.file_id)] = backup

    def existing(self, run_path: str, file: LiveFile) -> Backup | None:
        """The recorded backup of ``file`` of that run, if this apply made one (not re-checked)."""
        with self._lock:
            backup = self._known.get((run_path, file.id))
        if backup is None or backup.size != file.size or backup.name != file.name:
            return None
        return backup

    def tidy(self) -> None:
        """Remove the staging directory if nothing is left in it (a killed apply may leave a partial)."""
        with contextlib.suppress(OSError):
            self.staging.rmdir()

    def verify(self, backup: Backup) -> None:
        """Re-read ``backup`` from disk: it must exist, be complete and hash as recorded."""
        where = f"{backup.run}/{backup.name}"
        if not backup.path.is_file():
            raise ApplyError(f"the backup of {where} ({backup.path}) is missing; the file was not deleted")
        size, sha, _md5 = file_digests(backup.path)
        if size != backup.size or sha != backup.sha256:
            raise ApplyError(f"the backup of {where} ({backup.path}) has {size} bytes and checksum {sha}, "
                             f"expected {backup.size} bytes and {backup.sha256}; the file was not deleted")

