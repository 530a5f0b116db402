"""``--backup-dir``: download each file before it is deleted, to
``DIR/<entity>/<project>/<run id>/<path in run>``, and verify its size.

A run file's name comes from the server, so it is treated as untrusted: a name that is
absolute, holds ``..`` segments, a NUL or a backslash, or resolves outside DIR is refused
(and the file is then not deleted).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from reconcile.backend import Backend
from reconcile.errors import ApplyError
from reconcile.models import LiveArtifact, LiveFile, LiveRun


def backup_path(backup_dir: Path, entity: str, project: str, run_id: str, name: str) -> Path:
    """Where ``name`` of that run is backed up; ``ApplyError`` if it would escape ``backup_dir``."""
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


def backup_file(backend: Backend, run: LiveRun, file: LiveFile, backup_dir: Path) -> Path:
    """Download ``file`` under ``backup_dir`` and check its size; the path, or ``ApplyError``."""
    dest = backup_path(backup_dir, run.entity, run.project, run.id, file.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    backend.download_file(run, file, dest)
    size = dest.stat().st_size if dest.exists() else -1
    if size != file.size:
        raise ApplyError(f"backup of {run.path}/{file.name} has {size} bytes, W&B lists {file.size}; "
                         "the file was not deleted. Check the disk and run apply again.")
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)  # the backup must be on disk before the only other copy is deleted
    finally:
        os.close(fd)
    return dest


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


def existing_backup(backup_dir: Path, run_path: tuple[str, str, str], file: LiveFile) -> Path | None:
    """The backup of ``file`` from an earlier attempt, if it is there with the right size."""
    try:
        dest = backup_path(backup_dir, *run_path, file.name)
    except ApplyError:
        return None
    return dest if dest.is_file() and dest.stat().st_size == file.size else None
