"""Backups: where a file goes under --backup-dir, and when an earlier attempt's copy counts."""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from reconcile.apply.backup import BackupStore, apply_id, backup_path, file_digests
from reconcile.backend import RunUpdate
from reconcile.backend.memory import MemoryBackend
from reconcile.errors import ApplyError, RetryableError
from reconcile.models import LiveArtifact, LiveFile, LiveRun
from tests.unit.apply_helpers import config_set, file_delete, live_file, live_run, make_plan, run_plan
from tests.unit.test_apply_executor import _apply, _calls

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


@pytest.mark.parametrize(("run", "name", "why"), [
    (("", "vision", "r1"), "a", "the entity '' is empty or holds a NUL or backslash"),
    (("acme", "vi\x00on", "r1"), "a", "the project 'vi\\x00on' is empty or holds a NUL or backslash"),
    (("acme", "vision", "r\\1"), "a", "the run id 'r\\\\1' is empty or holds a NUL or backslash"),
    (("acme", "vision", "r1"), "a\\b", "the file name 'a\\\\b' is empty or holds a NUL or backslash"),
    (("ac/me", "vision", "r1"), "a", "the entity 'ac/me' would escape the backup directory"),
    (("acme", "..", "r1"), "a", "the project '..' would escape the backup directory"),
    (("acme", "vision", "/r1"), "a", "the run id '/r1' would escape the backup directory"),
    (("acme", "vision", "r1"), "a/../b", "the file name 'a/../b' would escape the backup directory"),
])
def test_an_unsafe_part_is_refused_naming_which_part(run: tuple[str, str, str], name: str, why: str,
                                                     tmp_path: Path) -> None:
    """The refusal names the file and which part of its path is unsafe (entity, project, run id or the
    name itself) and why."""
    with pytest.raises(ApplyError) as refused:
        backup_path(tmp_path, *run, name)
    assert str(refused.value) == f"refusing to back up {name!r}: {why}"


@pytest.mark.parametrize(("name", "uploaded_as"), [("ck//c", "ck/c"), ("ck/", "ck"), ("a//b//c", "a/b/c")])
def test_a_name_the_client_would_upload_as_another_is_refused(name: str, uploaded_as: str,
                                                                tmp_path: Path) -> None:
    """A name with an empty segment: the wandb client uploads by a normalised path, so an undo would
    re-upload it as another name. It has no backup path, and the refusal names both names and what to
    do instead."""
    with pytest.raises(ApplyError) as refused:
        backup_path(tmp_path, *RUN, name)
    assert str(refused.value) == (
        f"refusing to delete {name!r} with --backup-dir: its name has an empty path segment, and the wandb "
        f"client re-uploads it as {uploaded_as!r} (another file of the run, which it would replace), so the "
        "undo plan could not restore it; the file was not deleted, nor any other of the run. Leave it out "
        "of files.delete (a keep glob), or delete it with --no-backup.")
    assert backup_path(tmp_path, *RUN, uploaded_as).parts[-len(uploaded_as.split("/")):] == \
        tuple(uploaded_as.split("/"))


def test_a_symlink_inside_the_backup_dir_pointing_out_is_refused(tmp_path: Path) -> None:
    """A folder of the backup directory that is a symlink to elsewhere: the backup would land outside the
    directory, so it is refused, naming where it would have gone."""
    root = tmp_path / "backups"
    (root / "acme").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "acme" / "vision").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ApplyError) as refused:
        backup_path(root, *RUN, "a.ckpt")
    dest = root / "acme" / "vision" / "r1" / "a.ckpt"
    assert str(refused.value) == f"refusing to back up 'a.ckpt': {dest} resolves outside {root}"


def test_each_name_gets_the_folder_of_16_hex_digits_of_its_sha256(tmp_path: Path) -> None:
    """The name key is the first 16 hex digits of the sha256 of the exact name, surrogates included (a
    name W&B returns need not be valid UTF-8), so x and x/y, or two names differing in one character,
    never share a folder."""
    store = _store(tmp_path)
    run = live_run("r1")
    for name in ("x", "x/y", "caf\u00e9", "bad\udc80byte"):
        key = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        assert store.path_for(run, name) == store.files_root.resolve() / "acme" / "vision" / "r1" / key / name


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


class _WritesOneByte:
    """A backend whose download writes one byte."""

    def download_file(self, run: object, file: object, dest: Path) -> None:
        dest.write_bytes(b"1")


def test_a_short_download_counts_its_bytes_in_the_singular(tmp_path: Path) -> None:
    """The error for a download of another size names both sizes, one byte as '1 byte'."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    listed = LiveFile("f1", "a.pt", 2, FILE.updated_at)
    with pytest.raises(RetryableError, match="has 1 byte, W&B lists 2 bytes; the file was not deleted"):
        _store(tmp_path).back_up(_WritesOneByte(), run, listed)  # type: ignore[arg-type]


VERSION = LiveArtifact(id="a3", collection="ckpt", type="model", version_index=3, size=7,
                       created_at=FILE.updated_at, aliases=())


class _Writes:
    """A backend whose artifact download writes these members."""

    def __init__(self, members: dict[str, bytes]) -> None:
        self.members = members

    def download_artifact(self, run: object, artifact: object, dest: Path) -> list[tuple[str, int]]:
        for name, data in self.members.items():
            (dest / name).write_bytes(data)
        return [(name, len(data)) for name, data in self.members.items()]


def test_an_artifact_version_backup_is_this_applys_own_and_never_overwritten(tmp_path: Path) -> None:
    """The version's files go under DIR/<apply id>/artifacts/<entity>/<project>/<run>/<collection>/vN
    with their checksums recorded; an existing backup holding other bytes is refused, never replaced;
    verify notices a member that is missing, shorter or altered."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    backup = _store(tmp_path).back_up_artifact(_Writes({"m.ckpt": b"1234", ".m.ckpt.partial": b"567"}),  # type: ignore[arg-type]
                                               run, VERSION)
    assert backup.path == tmp_path.resolve() / "apply-1/artifacts/acme/vision/r1/ckpt/v3"
    assert {p.name: p.read_bytes() for p in backup.path.iterdir()} == {"m.ckpt": b"1234",
                                                                       ".m.ckpt.partial": b"567"}
    assert not any((tmp_path / "apply-1" / "staging").iterdir())
    (tmp_path / "apply-1" / "manifest.jsonl").unlink()  # a store that does not know it (as another apply)
    with pytest.raises(ApplyError, match="refusing to overwrite the backup"):
        _store(tmp_path).back_up_artifact(_Writes({"m.ckpt": b"abcd", ".m.ckpt.partial": b"efg"}),  # type: ignore[arg-type]
                                          run, VERSION)
    assert (backup.path / "m.ckpt").read_bytes() == b"1234"
    store = _store(tmp_path)
    store.verify_artifact(backup)
    for damage in (lambda p: p.write_bytes(b"123"), lambda p: p.write_bytes(b"4321"), lambda p: p.unlink()):
        damage(backup.path / "m.ckpt")
        with pytest.raises(ApplyError, match="the version was not deleted"):
            store.verify_artifact(backup)
        (backup.path / "m.ckpt").write_bytes(b"1234")


def test_an_artifact_backup_that_does_not_add_up_is_an_error(tmp_path: Path) -> None:
    """Members whose sizes do not add up to the version's size stop the delete."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    with pytest.raises(ApplyError, match="the version was not deleted"):
        _store(tmp_path).back_up_artifact(_Writes({"m.ckpt": b"12"}), run, VERSION)  # type: ignore[arg-type]
    with pytest.raises(ApplyError, match="holds 1 byte in 1 file, W&B lists 7 bytes"):
        _store(tmp_path).back_up_artifact(_Writes({"m.ckpt": b"1"}), run, VERSION)  # type: ignore[arg-type]
    assert not (tmp_path / "apply-1/artifacts/acme/vision/r1/ckpt/v3").exists()


class _DamagesBackupsOnWrite(MemoryBackend):
    """The metadata write (between a run's backups and its deleteFiles) also damages every file under
    ``backups``: same size, other bytes (a disk going bad, another process)."""

    backups: Path

    def update_run(self, update: RunUpdate) -> None:
        super().update_run(update)
        for copy in self.backups.glob("*/files/**/*.pt"):
            copy.write_bytes(b"x" * copy.stat().st_size)


def test_file_backups_are_verified_just_before_the_delete(tmp_path: Path) -> None:
    """Every backup is re-read just before the deleteFiles that needs it: one damaged since its
    download stops the delete (the run fails naming the backup; the file stays on W&B)."""
    files = [live_file("f0", "ckpt/0.pt", 10), live_file("f1", "ckpt/1.pt", 10)]
    run = live_run("a", files=files)
    backend = _DamagesBackupsOnWrite()
    backend.add_run(run, {"ckpt/0.pt": b"0" * 10, "ckpt/1.pt": b"1" * 10})
    backend.backups = tmp_path / "b"
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2), *map(file_delete, files)]))
    result, _ = _apply(plan, backend, tmp_path, backup_dir=tmp_path / "b")
    [(path, reason)] = result.failed
    assert path == "acme/vision/a" and "the file was not deleted" in reason and "checksum" in reason
    assert _calls(backend, "delete_files") == []
    assert [f.name for f in backend.run("acme", "vision", "a").files or ()] == ["ckpt/0.pt", "ckpt/1.pt"]


class _Refuses:
    """A backend that fails the test if anything is downloaded."""

    def download_file(self, run: object, file: object, dest: Path) -> None:
        raise AssertionError("downloaded again")

    def download_artifact(self, run: object, artifact: object, dest: Path) -> list[tuple[str, int]]:
        raise AssertionError("downloaded again")


def test_a_resumed_apply_knows_every_backup_of_the_first_attempt(tmp_path: Path) -> None:
    """A new store on the same apply directory (a resumed apply) reads the manifest back: the same file
    and version backups, every field equal, none downloaded again; a torn last line is skipped."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())

    class Writes(_Writes):
        def download_file(self, run: object, file: object, dest: Path) -> None:
            dest.write_bytes(b"12345")

    first = _store(tmp_path)
    writes = Writes({"m.ckpt": b"1234", "n.ckpt": b"567"})
    file_backup = first.back_up(writes, run, FILE)  # type: ignore[arg-type]
    version_backup = first.back_up_artifact(writes, run, VERSION)  # type: ignore[arg-type]
    with (tmp_path / "apply-1" / "manifest.jsonl").open("a", encoding="utf-8") as manifest:
        manifest.write('{"run": "acme/vision/r1", "file_id": "f2", "na')  # killed mid-line
    again = _store(tmp_path)
    assert again.existing("acme/vision/r1", FILE) == file_backup
    assert again.existing("acme/vision/r2", FILE) is None
    assert again.back_up(_Refuses(), run, FILE) == file_backup  # type: ignore[arg-type]
    assert again.back_up_artifact(_Refuses(), run, VERSION) == version_backup  # type: ignore[arg-type]


class _Bytes:
    """A backend whose file download writes these bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def download_file(self, run: object, file: object, dest: Path) -> None:
        dest.write_bytes(self.data)


def test_an_existing_file_backup_is_kept_if_equal_and_never_overwritten(tmp_path: Path) -> None:
    """A backup already at the file's place (another apply's store that did not record it): the same
    bytes are taken as they are; other bytes are refused and left untouched."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    first = _store(tmp_path).back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    (tmp_path / "apply-1" / "manifest.jsonl").unlink()
    same = _store(tmp_path).back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert same == first
    (tmp_path / "apply-1" / "manifest.jsonl").unlink()
    with pytest.raises(ApplyError, match=r"refusing to overwrite the backup .*the file was not deleted"):
        _store(tmp_path).back_up(_Bytes(b"54321"), run, FILE)  # type: ignore[arg-type]
    assert first.path.read_bytes() == b"12345"


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK])
def test_without_hard_links_the_backup_is_copied(code: int, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without hard links (some network or FUSE ones): the staged download is copied into
    place, complete, and verifies."""
    def no_link(src: object, dst: object) -> None:
        raise OSError(code, "no hard links here")

    monkeypatch.setattr(os, "link", no_link)
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    store = _store(tmp_path)
    backup = store.back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert backup.path.read_bytes() == b"12345"
    assert oct(backup.path.stat().st_mode & 0o777) == oct(0o600)
    store.verify(backup)


def test_another_link_error_is_a_clear_error_and_no_copy(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Only "no hard links here" errors fall back to a copy; another (a full disk) is an ApplyError
    naming the backup (no raw OSError), and nothing is placed."""
    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    with pytest.raises(ApplyError, match=r"epoch-1\.pt: No space left on device; the file was not deleted"):
        _store(tmp_path).back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert not list((tmp_path / "apply-1" / "files").rglob("*.pt"))


class _FullAfter:
    """A file object that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.real.write(data[:self.room])
            self.real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> _FullAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()


def test_a_copy_that_fails_part_way_leaves_no_backup_and_a_retry_places_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without hard links, a copy cut short (disk full) is an ApplyError and the partial file is removed:
    once there is room, the same apply's next attempt places the backup (it is not refused as a
    backup "with other bytes")."""
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "fdopen", lambda *a, **kw: _FullAfter(real_fdopen(*a, **kw), 2))
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    store = _store(tmp_path)
    with pytest.raises(ApplyError, match="No space left on device; the file was not deleted"):
        store.back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert not list((tmp_path / "apply-1" / "files").rglob("*.pt"))
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    backup = store.back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert backup.path.read_bytes() == b"12345"
    store.verify(backup)


def test_without_hard_links_an_existing_backup_is_kept_if_equal_and_never_overwritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy never goes over a file either: the same bytes already there are taken, other bytes (or a
    directory by that name) are refused and left as they are."""
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    first = _store(tmp_path).back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    (tmp_path / "apply-1" / "manifest.jsonl").unlink()  # a store that does not know it
    assert _store(tmp_path).back_up(_Bytes(b"12345"), run, FILE) == first  # type: ignore[arg-type]
    (tmp_path / "apply-1" / "manifest.jsonl").unlink()
    with pytest.raises(ApplyError, match="refusing to overwrite the backup"):
        _store(tmp_path).back_up(_Bytes(b"54321"), run, FILE)  # type: ignore[arg-type]
    assert first.path.read_bytes() == b"12345"
    first.path.unlink()
    first.path.mkdir()
    with pytest.raises(ApplyError, match="refusing to overwrite the backup"):
        _store(tmp_path).back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert first.path.is_dir()


def test_a_backup_the_disk_cannot_take_fails_the_run_with_nothing_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apply with --backup-dir on a full disk: the run fails with the backup's error (not a crash), the
    file stays on W&B and nothing of the run is written."""
    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    f0 = live_file("f0", "ckpt/0.pt", 10)
    run = live_run("a", files=[f0])
    backend = MemoryBackend()
    backend.add_run(run, {"ckpt/0.pt": b"0" * 10})
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2), file_delete(f0)]))
    result, _ = _apply(plan, backend, tmp_path, backup_dir=tmp_path / "b")
    [(path, reason)] = result.failed
    assert path == "acme/vision/a"
    assert "No space left on device" in reason and "the file was not deleted" in reason
    assert _calls(backend, "delete_files") == [] and _calls(backend, "update_run") == []
    assert [f.name for f in backend.run("acme", "vision", "a").files or ()] == ["ckpt/0.pt"]


def test_an_artifact_backup_gone_as_a_whole_is_an_error_naming_it(tmp_path: Path) -> None:
    """verify_artifact on a version backup whose directory is gone, or a member replaced by a directory:
    an ApplyError naming the run, the version and the path; nothing is deleted."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    store = _store(tmp_path)
    backup = store.back_up_artifact(_Writes({"m.ckpt": b"1234", "n.ckpt": b"567"}), run, VERSION)  # type: ignore[arg-type]
    (backup.path / "n.ckpt").unlink()
    (backup.path / "n.ckpt").mkdir()
    with pytest.raises(ApplyError, match=r"the backup of acme/vision/r1's ckpt:v3 \(.*n\.ckpt\) has -1 bytes "
                                         r"and checksum none, expected 3 bytes and sha256:"):
        store.verify_artifact(backup)
    shutil.rmtree(backup.path)
    with pytest.raises(ApplyError, match=r"the backup of acme/vision/r1's ckpt:v3 \(.*\) is missing; the "
                                         "version was not deleted"):
        store.verify_artifact(backup)


def test_a_download_whose_md5_is_not_w_and_b_s_is_not_a_backup(tmp_path: Path) -> None:
    """W&B lists the file's md5 (base64): a download hashing otherwise is refused (retried), nothing
    placed; one that matches is the backup, with that md5 recorded."""
    good = base64.b64encode(hashlib.md5(b"12345").digest()).decode()  # noqa: S324 - W&B's md5 field
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    listed = dataclasses.replace(FILE, md5=good)
    refused = f"has md5 .* W&B lists {re.escape(good)}; the file was not deleted"
    with pytest.raises(RetryableError, match=refused):
        _store(tmp_path).back_up(_Bytes(b"54321"), run, listed)  # type: ignore[arg-type]
    assert not list((tmp_path / "apply-1" / "files").rglob("*.pt"))
    backup = _store(tmp_path).back_up(_Bytes(b"12345"), run, listed)  # type: ignore[arg-type]
    assert backup.md5 == good and backup.path.read_bytes() == b"12345"


def test_each_apply_s_backups_are_named_by_its_time_and_plan() -> None:
    """The per-apply directory: the plan's creation time (letters and digits, to the second) and 12 hex
    characters of its digest."""
    assert apply_id("sha256:0123456789abcdef0123", "2026-12-01T10:11:12.345678+00:00") == \
        "20261201T101112-0123456789ab"


def test_an_earlier_backup_is_not_this_file_s_if_its_size_or_name_differs(tmp_path: Path) -> None:
    """existing(): the recorded backup of a file id counts only for the same name and the same size."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    store = _store(tmp_path)
    backup = store.back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    assert store.existing("acme/vision/r1", FILE) == backup
    assert store.existing("acme/vision/r1", dataclasses.replace(FILE, size=6)) is None
    assert store.existing("acme/vision/r1", dataclasses.replace(FILE, name="ckpt/other.pt")) is None


def test_a_manifest_line_that_is_not_a_backup_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    """A resumed apply's store skips manifest lines it cannot read (a torn line that a later record was
    appended to, JSON that is not an object, a record missing a field) and still knows every backup
    recorded after them (a file's after a version's too)."""
    run = LiveRun(*RUN, "S1", "n", "finished", FILE.updated_at, {}, {}, ())
    first = _store(tmp_path)
    first.back_up_artifact(_Writes({"m.ckpt": b"1234", "n.ckpt": b"567"}), run, VERSION)  # type: ignore[arg-type]
    first.back_up(_Bytes(b"12345"), run, FILE)  # type: ignore[arg-type]
    manifest = tmp_path / "apply-1" / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8")
    manifest.write_text('{"run": "acme/vision/r1", "fi' + lines.replace("\n", "") + "\n[1, 2]\n\"text\"\n"
                        '{"run": "acme/vision/r1"}\n{"kind": "artifact", "run": "x"}\n' + lines,
                        encoding="utf-8")
    again = _store(tmp_path)
    assert again.back_up(_Refuses(), run, FILE).path.read_bytes() == b"12345"  # type: ignore[arg-type]


def test_tidy_removes_an_empty_staging_directory_and_keeps_one_holding_a_partial(tmp_path: Path) -> None:
    """At the end of an apply the empty staging directory goes; one still holding a killed apply's partial
    download stays, without an error."""
    store = _store(tmp_path)
    store.tidy()
    assert not store.staging.exists()
    store = _store(tmp_path)
    (store.staging / "1-0.download").write_bytes(b"12")
    store.tidy()
    assert (store.staging / "1-0.download").read_bytes() == b"12"


def test_file_digests_count_and_hash_a_file_of_several_chunks(tmp_path: Path) -> None:
    """A file larger than one read (1 MiB): its size, sha256 and W&B's base64 md5 are the whole file's."""
    data = bytes(range(256)) * (5 * 4096 + 3)  # 5 MiB and 768 bytes
    (tmp_path / "big").write_bytes(data)
    assert file_digests(tmp_path / "big") == (
        len(data), "sha256:" + hashlib.sha256(data).hexdigest(),
        base64.b64encode(hashlib.md5(data).digest()).decode())  # noqa: S324 - W&B's md5 field
