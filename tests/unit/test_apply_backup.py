"""Backups: where a file goes under --backup-dir, and when an earlier attempt's copy counts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.apply.backup import backup_path, existing_backup
from reconcile.errors import ApplyError
from reconcile.models import LiveFile

FILE = LiveFile("f1", "ckpt/epoch-1.pt", 5, datetime(2026, 1, 1, tzinfo=timezone.utc))
RUN = ("acme", "vision", "r1")


def test_an_earlier_backup_counts_only_if_it_is_there_with_the_listed_size(tmp_path: Path) -> None:
    """A resumed apply skips the download only for a complete copy: missing, shorter, longer or a
    directory in its place means download again (never delete without a verified backup)."""
    dest = tmp_path / "acme/vision/r1/ckpt/epoch-1.pt"
    assert existing_backup(tmp_path, RUN, FILE) is None
    dest.parent.mkdir(parents=True)
    for content in (b"1234", b"123456", b""):
        dest.write_bytes(content)
        assert existing_backup(tmp_path, RUN, FILE) is None, content
    dest.write_bytes(b"12345")
    assert existing_backup(tmp_path, RUN, FILE) == dest.resolve()
    dest.unlink()
    dest.mkdir()
    assert existing_backup(tmp_path, RUN, FILE) is None


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/./b", "a\\b", "a\x00b", ""])
def test_an_unsafe_name_has_no_backup_path_and_no_earlier_backup(name: str, tmp_path: Path) -> None:
    """Names that would escape the directory are refused, and never match an earlier backup."""
    with pytest.raises(ApplyError, match="refusing to back up"):
        backup_path(tmp_path, *RUN, name)
    assert existing_backup(tmp_path, RUN, LiveFile("f", name, 0, FILE.updated_at)) is None


class _DownloadsNothing:
    """A backend whose download leaves no file (a full disk, a vanished object)."""

    def download_file(self, run: object, file: object, dest: Path) -> None:
        """Write nothing."""


@pytest.mark.parametrize("size", [0, 1, 5])
def test_a_download_that_left_no_file_is_an_apply_error(size: int, tmp_path: Path) -> None:
    """Whatever the listed size (0 and 1 included), a backup that is not on disk stops the delete with
    an ApplyError that says the file was not deleted."""
    from reconcile.apply.backup import backup_file
    from reconcile.models import LiveRun

    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    listed = LiveFile("f1", "a.pt", size, FILE.updated_at)
    with pytest.raises(ApplyError, match="the file was not deleted"):
        backup_file(_DownloadsNothing(), run, listed, tmp_path)  # type: ignore[arg-type]
