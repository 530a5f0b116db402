"""``--backup-dir``: download each file before it is deleted, and prove it is there before the delete.

Each apply keeps its backups to itself, under ``DIR/<apply id>/`` (the plan's creation time and
digest, so a resumed apply of the same plan finds its own backups and another plan never touches
them)::

    DIR/<apply id>/files/<entity>/<project>/<run id>/<name key>/<path in run>
                                                                      the backups of run files
    DIR/<apply id>/artifacts/<entity>/<project>/<run id>/<collection>/v<N>/<member>
                                                                      the backups of artifact versions
    DIR/<apply id>/staging/<n>.download, <n>.artifact/                downloads in flight
    DIR/<apply id>/manifest.jsonl                                     one line per backup

A download is staged under ``staging/`` with a name of our own, never one derived from a run's
file names, so no file name can reach (and overwrite) a staging file or another backup. It is
hashed (sha256, and W&B's base64 md5 checked when the listing gives one), fsynced, then linked
into ``files/`` *without* overwriting: an existing backup with other bytes is an error, never
replaced. Just before the deleteFiles that needs them, ``verify`` re-reads every backup and checks
it exists, is complete and has the checksum recorded at download. An artifact version is staged as a
whole directory of our own naming, each member's size and sha256 recorded, its total checked against
the version's size, then moved into ``artifacts/`` (never over another backup) and re-checked the
same way just before its deleteArtifact.

A name with an empty segment (``ck//c``, ``ck/``) is refused: the wandb client uploads by a
normalised path, so an undo would re-upload it as ``ck/c`` and replace that file.
``<name key>`` is 16 hex digits of the sha256 of the file's exact name, so two names of one run
never share a path: ``x`` and ``x/y`` (a file where the other needs a directory) each get a folder
of their own. The manifest
and the undo plan record each backup's full path, so an undo reads backups of any layout.

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
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from humanfriendly.text import pluralize

from reconcile.backend import Backend
from reconcile.errors import ApplyError, RetryableError
from reconcile.models import LiveArtifact, LiveFile, LiveRun
from reconcile.planfile import fsync_directory
from reconcile.retention import upload_times

_CHUNK = 1 << 20


def _bytes(count: int) -> str:
    return str(pluralize(count, "byte"))


def name_key(name: str) -> str:
    """The folder that keeps one file name's backup apart from every other name of its run."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def backup_path(backup_dir: Path, entity: str, project: str, run_id: str, name: str, *,
                key: str | None = None) -> Path:
    """Where ``name`` of that run is backed up under ``backup_dir`` (in the folder ``key`` below the run's
    when given); ``ApplyError`` if it would escape."""
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
        if label == "file name" and "" in value.split("/"):
            # `ck//c` or `ck/`: the wandb client uploads by a normalised path, so an undo would write
            # `ck/c`, another file of the run (or nothing), never this one.
            other = str(pure)
            raise ApplyError(
                f"refusing to delete {name!r} with --backup-dir: its name has an empty path segment, and "
                f"the wandb client re-uploads it as {other!r}"
                + (" (another file of the run, which it would replace)" if other != name else "")
                + ", so the undo plan could not restore it; the file was not deleted, nor any other of "
                "the run. Leave it out of files.delete (a keep glob), or delete it with --no-backup.")
        parts.extend(pure.parts)
        if label == "run id" and key is not None:
            parts.append(key)
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
    updated_at: str  # the time retention ranks the file by (ISO 8601): W&B's, or the original one
    # recorded under summary._reconcile.restored_files when an earlier undo re-uploaded the file
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


@dataclass(frozen=True, slots=True)
class ArtifactBackup:
    """One backed-up artifact version: its directory and each member's size and checksum."""

    run: str  # entity/project/run id
    artifact_id: str
    name: str  # collection:vN
    size: int
    members: tuple[tuple[str, int, str], ...]  # (name in the version, size, "sha256:<hex>")
    path: Path

    def to_json(self) -> dict[str, Any]:
        """The manifest line."""
        return {"kind": "artifact", "run": self.run, "artifact_id": self.artifact_id, "name": self.name,
                "size": self.size, "members": [list(m) for m in self.members], "path": str(self.path)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactBackup:
        """Inverse of ``to_json`` (``KeyError``/``TypeError``/``ValueError`` on a malformed one)."""
        members = tuple((str(n), int(s), str(h)) for n, s, h in data["members"])
        return cls(run=str(data["run"]), artifact_id=str(data["artifact_id"]), name=str(data["name"]),
                   size=int(data["size"]), members=members, path=Path(data["path"]))


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


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK)
"""``link`` errors of a file system without hard links (some network or FUSE ones): copy instead."""


def _copy_new(staged: Path, dest: Path) -> None:
    """Copy ``staged`` to a new file ``dest`` (``FileExistsError`` if there is one), fsynced; a copy
    that fails part-way is removed."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, staged.open("rb") as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        self.artifacts_root = self.root / "artifacts"
        self.staging = self.root / "staging"
        self.manifest = self.root / "manifest.jsonl"
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._known: dict[tuple[str, str], Backup] = {}  # (run, file id) -> backup
        self._versions: dict[tuple[str, str], ArtifactBackup] = {}  # (run, artifact id) -> backup
        for directory in (self.files_root, self.staging):
            directory.mkdir(parents=True, exist_ok=True)
        if self.manifest.exists():
            for line in self.manifest.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                    if data.get("kind") == "artifact":
                        version = ArtifactBackup.from_json(data)
                        self._versions[(version.run, version.artifact_id)] = version
                        continue
                    backup = Backup.from_json(data)
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue  # a torn last line: that backup is checked again (or redone)
                self._known[(backup.run, backup.file_id)] = backup

    def path_for(self, run: LiveRun, name: str) -> Path:
        """Where ``name`` of ``run`` is backed up (``ApplyError`` for a name that would escape)."""
        return backup_path(self.files_root, run.entity, run.project, run.id, name, key=name_key(name))

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
                raise RetryableError(f"backup of {run.path}/{file.name} has {_bytes(size)}, W&B lists "
                                     f"{_bytes(file.size)}; the file was not deleted")
            if file.md5 and md5 != file.md5:
                raise RetryableError(f"backup of {run.path}/{file.name} has md5 {md5}, W&B lists {file.md5}; "
                                     "the file was not deleted")
            _fsync(staged)  # the backup must be on disk before the only other copy is deleted
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._place(staged, dest, sha, run, file)
        finally:
            staged.unlink(missing_ok=True)
        # The time retention ranks the file by: for a file an earlier undo re-uploaded, its original
        # upload time (from the run's summary), not the re-upload's, so any number of apply -> undo
        # cycles keeps it.
        uploaded = upload_times(run, [file])[file.id]
        backup = Backup(run=run.path, file_id=file.id, name=file.name, size=size,
                        updated_at=uploaded.isoformat().replace("+00:00", "Z"), sha256=sha,
                        md5=file.md5 or md5, path=dest)
        self._remember(backup)
        return backup

    def _place(self, staged: Path, dest: Path, sha: str, run: LiveRun, file: LiveFile) -> None:
        """Link ``staged`` to ``dest`` (a copy where the file system has no hard links); an existing
        ``dest`` is kept (same bytes) or refused. Any other file system error is an ``ApplyError``:
        the run fails with its file not deleted, and no partial copy is left to pass for a backup."""
        try:
            try:
                os.link(staged, dest)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise  # FileExistsError included: handled below
                _copy_new(staged, dest)  # still never over a file
        except FileExistsError:
            try:
                _size, other, _md5 = file_digests(dest)
            except OSError:  # e.g. a directory of another file's backups by that name
                other = ""
            if other != sha:
                raise ApplyError(
                    f"refusing to overwrite the backup {dest}: it holds other bytes than {run.path}/"
                    f"{file.name} now has; the file was not deleted. Use another --backup-dir.") from None
        except OSError as exc:
            raise ApplyError(f"cannot write the backup {dest}: {exc.strerror or exc}; the file was not "
                             "deleted") from exc
        fsync_directory(dest.parent)

    def _remember(self, backup: Backup | ArtifactBackup) -> None:
        line = json.dumps(backup.to_json(), sort_keys=True) + "\n"
        with self._lock:
            with self.manifest.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            if isinstance(backup, ArtifactBackup):
                self._versions[(backup.run, backup.artifact_id)] = backup
            else:
                self._known[(backup.run, backup.file_id)] = backup

    # ------------------------------------------------------------------ artifact versions

    def artifact_path_for(self, run: LiveRun, artifact: LiveArtifact) -> Path:
        """Where the version is backed up (``ApplyError`` for a collection name that would escape)."""
        return backup_path(self.artifacts_root, run.entity, run.project, run.id,
                           f"{artifact.collection}/v{artifact.version_index}")

    def back_up_artifact(self, backend: Backend, run: LiveRun, artifact: LiveArtifact) -> ArtifactBackup:
        """Download every file of the version into a staging directory of our own, check each file
        and the total against W&B's size, then move it into place, never over another backup."""
        dest = self.artifact_path_for(run, artifact)
        with self._lock:
            known = self._versions.get((run.path, artifact.id))
        if known is not None and known.path == dest and known.size == artifact.size:
            try:
                self.verify_artifact(known)
            except ApplyError:
                pass  # gone or damaged since: download again (a damaged one is never overwritten)
            else:
                return known
        with self._lock:
            staged = self.staging / f"{os.getpid()}-{next(self._counter)}.artifact"
        staged.mkdir()
        try:
            listed = backend.download_artifact(run, artifact, staged)
            members: list[tuple[str, int, str]] = []
            for name, size in listed:
                path = staged / name  # the backend refused names that leave ``staged``
                got, sha, _md5 = file_digests(path) if path.is_file() else (-1, "", "")
                if got != size:
                    raise RetryableError(f"backup of {artifact.name} ({name}) has {_bytes(got)}, expected "
                                         f"{_bytes(size)}; the version was not deleted")
                _fsync(path)
                members.append((name, got, sha))
            total = sum(size for _name, size, _sha in members)
            if total != artifact.size:
                raise ApplyError(f"backup of {artifact.name} holds {_bytes(total)} in "
                                 f"{pluralize(len(members), 'file')}, W&B lists {_bytes(artifact.size)}; "
                                 "the version was not deleted.")
            backup = ArtifactBackup(run=run.path, artifact_id=artifact.id, name=artifact.name,
                                    size=total, members=tuple(sorted(members)), path=dest)
            self._place_artifact(staged, backup)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self._remember(backup)
        return backup

    def _place_artifact(self, staged: Path, backup: ArtifactBackup) -> None:
        """Move ``staged`` to the backup's path; an existing one is kept (same files) or refused."""
        dest = backup.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            try:
                self.verify_artifact(backup)
            except ApplyError:
                raise ApplyError(f"refusing to overwrite the backup {dest}: it holds other files than "
                                 f"{backup.run}'s {backup.name} now has; the version was not deleted. Use "
                                 "another --backup-dir.") from None
            return
        os.rename(staged, dest)  # same directory tree: atomic, and never over an existing directory
        fsync_directory(dest.parent)

    def verify_artifact(self, backup: ArtifactBackup) -> None:
        """Re-read the version's backup from disk: every member there, complete, hashing as recorded."""
        where = f"{backup.run}'s {backup.name}"
        if not backup.path.is_dir():
            raise ApplyError(f"the backup of {where} ({backup.path}) is missing; the version was not deleted")
        for name, size, sha in backup.members:
            path = backup.path / name
            got, now, _md5 = file_digests(path) if path.is_file() else (-1, "", "")
            if got != size or now != sha:
                raise ApplyError(f"the backup of {where} ({path}) has {_bytes(got)} and checksum "
                                 f"{now or 'none'}, expected {_bytes(size)} and {sha}; the version was not "
                                 "deleted")

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
            raise ApplyError(f"the backup of {where} ({backup.path}) has {_bytes(size)} and checksum {sha}, "
                             f"expected {_bytes(backup.size)} and {backup.sha256}; the file was not deleted")

