"""Backups: where a file goes under --backup-dir, and when an earlier attempt's copy counts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.apply.backup import BackupStore, backup_path
from reconcile.errors import ApplyError, RetryableError
from reconcile.models import LiveFile, LiveRun

FILE = LiveFile("f1", "ckpt/epoch-1.pt", 5, datetime(2026, 1, 1, tzinfo=timezone.utc))
RUN = ("acme", "vision", "r1")


def _store(tmp_path: Path) -> BackupStore:
    return BackupStore(tmp_path, "apply-1")


def test_an_earlier_backup_counts_only_if_it_is_there_intact(tmp_path: Path) -> None:
    """A resumed apply reuses an earlier backup only if it is there, complete and with its recorded
    checksum: missing, shorter, longer or other bytes mean download again (never a delete without a
    verified backup)."""
    store = _store(tmp_path)

    class Writes:
        def download_file(self, run: object, file: object, dest: Path) -> None:
            dest.write_bytes(b"12345")

    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    backup = store.back_up(Writes(), run, FILE)  # type: ignore[arg-type]
    assert backup.path.read_bytes() == b"12345"
    assert store.existing("acme/vision/r1", FILE) == backup
    store.verify(backup)
    for content in (b"1234", b"123456", b"54321"):
        backup.path.write_bytes(content)
        with pytest.raises(ApplyError, match="the file was not deleted"):
            store.verify(backup)
    backup.path.unlink()
    with pytest.raises(ApplyError, match="is missing"):
        store.verify(backup)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/./b", "a\\b", "a\x00b", ""])
def test_an_unsafe_name_has_no_backup_path_and_no_earlier_backup(name: str, tmp_path: Path) -> None:
    """Names that would escape the directory are refused, and never match an earlier backup."""
    with pytest.raises(ApplyError, match="refusing to back up"):
        backup_path(tmp_path, *RUN, name)
    assert _store(tmp_path).existing("acme/vision/r1", LiveFile("f", name, 0, FILE.updated_at)) is None


class _DownloadsNothing:
    """A backend whose download leaves no file (a full disk, a vanished object)."""

    def download_file(self, run: object, file: object, dest: Path) -> None:
        """Write nothing."""


@pytest.mark.parametrize("size", [0, 1, 5])
def test_a_download_that_left_no_file_is_an_error(size: int, tmp_path: Path) -> None:
    """Whatever the listed size (0 and 1 included), a backup that is not on disk stops the delete with
    an error that says the file was not deleted."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    listed = LiveFile("f1", "a.pt", size, FILE.updated_at)
    with pytest.raises(RetryableError, match="the file was not deleted"):
        _store(tmp_path).back_up(_DownloadsNothing(), run, listed)  # type: ignore[arg-type]
