"""Unit tests of backups, the undo plan and its round trip through the memory backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from reconcile.apply.backup import Backup, backup_path
from reconcile.apply.events import UndoRecord
from reconcile.apply.executor import ApplyResult, apply_plan
from reconcile.apply.journal import Journal
from reconcile.apply.undo import LostFiles, UndoSummary, describe, invert, undo_fields, undo_run
from reconcile.backend import RunUpdate
from reconcile.backend.memory import MemoryBackend
from reconcile.errors import ApplyError, PlanError
from reconcile.models import Change, ChangeKind, ChangeOp, ConfigWrites, LiveArtifact, Plan, RunPlan
from reconcile.planfile import read_plan, write_plan
from reconcile.retention import RESTORED_KEY
from tests.unit.apply_helpers import (
    config_set,
    file_delete,
    live_file,
    live_run,
    make_plan,
    run_plan,
    string_set,
    summary_set,
    tag,
    unset,
)


def _apply(plan: Plan, backend: MemoryBackend, journal: Path, **kw: Any) -> ApplyResult:
    handle = Journal.open(journal, plan)
    try:
        if "backup_dir" not in kw:
            kw.setdefault("no_backup", True)  # the consent itself is tested on its own
        return apply_plan(plan, backend, journal=handle, parallelism=2, sleep=lambda _s: None, **kw)
    finally:
        handle.close()


@pytest.mark.parametrize("name", ["../escape.pt", "a/../../b", "/etc/passwd", "nul\x00.pt", "a\\..\\b", ""])
def test_backup_path_refuses_names_escaping_the_backup_dir(tmp_path: Path, name: str) -> None:
    """Absolute names, .. segments, NUL and backslashes never become a path outside DIR."""
    with pytest.raises(ApplyError, match="refusing to back up"):
        backup_path(tmp_path, "acme", "vision", "a", name)


def test_backup_path_places_file_under_entity_project_run(tmp_path: Path) -> None:
    """DIR/<entity>/<project>/<run id>/<path in run>."""
    assert backup_path(tmp_path, "acme", "vision", "a", "media/x.png") == \
        tmp_path.resolve() / "acme" / "vision" / "a" / "media" / "x.png"


def test_apply_plan_escaping_file_name_fails_run_and_keeps_file(tmp_path: Path) -> None:
    """With --backup-dir, a file whose name would escape DIR is neither backed up nor deleted."""
    evil = live_file("f1", "../../evil.pt", 3)
    run = live_run("a", files=[evil])
    backend = MemoryBackend([run])
    backend.add_run(run, {"../../evil.pt": b"abc"})
    result = _apply(make_plan(run_plan(run, [file_delete(evil)])), backend, tmp_path / "j.jsonl",
                    backup_dir=tmp_path / "backup")
    assert [r for r, _ in result.failed] == ["acme/vision/a"]
    assert "refusing to back up" in result.failed[0][1]
    assert backend.run("acme", "vision", "a").files == (evil,)
    assert not (tmp_path / "evil.pt").exists()


@pytest.mark.parametrize(("change", "expected"), [
    (config_set("lr", 0.1, 0.2), (ChangeOp.SET, 0.2, 0.1)),
    (config_set("new", None, 1, created=True), (ChangeOp.UNSET, 1, None)),
    (unset(ChangeKind.SUMMARY, "loss", 0.2), (ChangeOp.SET, None, 0.2)),
    (tag(ChangeOp.ADD, "x"), (ChangeOp.REMOVE, "x", None)),
    (tag(ChangeOp.REMOVE, "x"), (ChangeOp.ADD, None, "x")),
    (string_set(ChangeKind.NOTES, None, "hello"), (ChangeOp.SET, "hello", None)),
])
def test_invert_swaps_before_and_after(change: Change, expected: tuple[Any, ...]) -> None:
    """Each inverse sets the before-value back (created keys unset, tag add <-> remove)."""
    inverse = invert(change)
    assert inverse is not None
    assert (inverse.op, inverse.before, inverse.after) == expected
    assert inverse.kind is change.kind
    assert inverse.key == change.key


def test_invert_reverses_a_rename() -> None:
    """A rename a -> b is undone by the rename b -> a."""
    rename = Change(ChangeKind.SUMMARY, ChangeOp.RENAME, ("b",), 1, 1, ("r",), from_key=("a",))
    inverse = invert(rename)
    assert inverse is not None
    assert (inverse.key, inverse.from_key) == (("a",), ("b",))


def test_backup_and_undo_round_trip_restores_files_and_metadata(tmp_path: Path) -> None:
    """Apply with backups, then apply the undo plan: bytes, config, summary, tags and name are back."""
    ckpt, keep = live_file("f1", "ckpt/1.pt", 5), live_file("f2", "best.pt", 4)
    run = live_run("a", files=[ckpt, keep])
    backend = MemoryBackend(config_writes=ConfigWrites.REPLACE)
    backend.add_run(run, {"ckpt/1.pt": b"12345", "best.pt": b"best"})
    original = backend.run("acme", "vision", "a")
    changes = [config_set("lr", 0.1, 0.2), config_set("added", None, "x", created=True),
               summary_set("acc", 0.5, 0.8), unset(ChangeKind.SUMMARY, "loss", 0.2), tag(ChangeOp.ADD, "t"),
               tag(ChangeOp.REMOVE, "wip"), string_set(ChangeKind.NAME, run.name, "renamed"),
               file_delete(ckpt)]
    plan = make_plan(run_plan(run, changes, config_writes=ConfigWrites.REPLACE))
    result = _apply(plan, backend, tmp_path / "j.jsonl", backup_dir=tmp_path / "backup")
    assert result.ok
    assert result.undo is not None
    [copy] = (tmp_path / "backup").glob("*/files/acme/vision/a/*/ckpt/1.pt")
    assert copy.read_bytes() == b"12345"
    write_plan(result.undo, tmp_path / "undo.json")
    undo = read_plan(tmp_path / "undo.json")
    [undo_rp] = undo.runs
    adds = [c for c in undo_rp.changes if c.kind is ChangeKind.FILE]
    assert [(c.op, c.key, c.after) for c in adds] == [(ChangeOp.ADD, ("ckpt/1.pt",), 5)]
    undone = _apply(undo, backend, tmp_path / "undo.journal.jsonl")
    assert undone.ok, undone
    restored = backend.run("acme", "vision", "a")
    summary = dict(restored.summary)
    remembered = summary.pop("_reconcile")["restored_files"]
    assert remembered == {"ckpt/1.pt": {"updated_at": "2026-01-02T03:04:05Z", "size": 5,
                                        "md5": "gnzLDuqKcGxMNKFokfhOew=="}}
    assert (restored.config, summary) == (original.config, original.summary)
    assert restored.name == original.name
    assert sorted(restored.tags) == sorted(original.tags)
    by_name = {f.name: f for f in restored.files or ()}
    assert backend.contents[by_name["ckpt/1.pt"].id] == b"12345"
    assert backend.contents[by_name["best.pt"].id] == b"best"


def test_undo_plan_refused_for_run_changed_since(tmp_path: Path) -> None:
    """The undo plan's fingerprint comes from the read-back state: a later edit makes it stale."""
    run = live_run("a")
    backend = MemoryBackend([run])
    result = _apply(make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)])), backend, tmp_path / "j.jsonl")
    assert result.undo is not None
    backend.update_run(RunUpdate(storage_id="sid-a", config={"lr": 0.3}))
    undone = _apply(result.undo, backend, tmp_path / "u.jsonl")
    assert [r for r, _ in undone.stale] == ["acme/vision/a"]
    assert backend.run("acme", "vision", "a").config["lr"] == 0.3


def test_undo_plan_includes_runs_finished_before_a_crash(tmp_path: Path) -> None:
    """After a resumed apply, the undo plan still covers runs the first attempt finished."""
    a, b = live_run("a"), live_run("b")
    backend = MemoryBackend([a, b])
    plan = make_plan(run_plan(a, [config_set("lr", 0.1, 0.2)]), run_plan(b, [config_set("lr", 0.1, 0.3)]))

    class Crash(BaseException):
        pass

    def crash(event: Any) -> None:
        if type(event).__name__ == "RunStarted" and event.run == "acme/vision/b":
            raise Crash

    journal = tmp_path / "j.jsonl"
    with pytest.raises(Crash):
        _apply(plan, backend, journal, observers=[crash])
    result = _apply(plan, backend, journal)
    assert result.undo is not None
    assert sorted(r.path for r in result.undo.runs) == ["acme/vision/a", "acme/vision/b"]


class _DiskTrouble(MemoryBackend):
    """Damages every backup under ``root`` when the run's metadata is written (between backup and delete)."""

    def __init__(self, root: Path, damage: Callable[[Path], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.root, self.damage = root, damage

    def update_run(self, update: RunUpdate) -> None:
        for path in self.root.glob("*/files/**/*.pt"):
            self.damage(path)
        super().update_run(update)


@pytest.mark.parametrize("damage", [
    lambda p: p.unlink(),                                     # gone
    lambda p: p.write_bytes(p.read_bytes()[:-1]),             # truncated
    lambda p: p.write_bytes(b"X" * p.stat().st_size),         # same size, other bytes
], ids=["missing", "truncated", "altered"])
def test_backup_is_verified_just_before_the_delete(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    """A backup that is missing, incomplete or has another checksum when deleteFiles is due stops the
    delete."""
    ckpt = live_file("f1", "ckpt/1.pt", 5)
    run = live_run("a", files=[ckpt])
    backend = _DiskTrouble(tmp_path / "backup", damage)
    backend.add_run(run, {"ckpt/1.pt": b"12345"})
    plan = make_plan(run_plan(run, [file_delete(ckpt), string_set(ChangeKind.NOTES, "", "n")]))
    result = _apply(plan, backend, tmp_path / "j.jsonl", backup_dir=tmp_path / "backup")
    assert [r for r, _ in result.failed] == ["acme/vision/a"]
    assert "the file was not deleted" in result.failed[0][1]
    assert backend.run("acme", "vision", "a").files == (ckpt,)
    assert not [c for c in backend.calls if c[0] == "delete_files"]


def test_backup_never_overwrites_another_backup(tmp_path: Path) -> None:
    """Two applies of two plans into one --backup-dir keep both backups (each apply's are its own)."""
    first = live_file("f1", "latest.pt", 2)
    run = live_run("a", files=[first])
    backend = MemoryBackend()
    backend.add_run(run, {"latest.pt": b"v1"})
    plan1 = make_plan(run_plan(run, [file_delete(first)]))
    assert _apply(plan1, backend, tmp_path / "j1.jsonl", backup_dir=tmp_path / "b").ok
    second = live_file("f2", "latest.pt", 2)
    run2 = live_run("a", files=[second])
    backend.add_run(run2, {"latest.pt": b"v2"})
    plan2 = make_plan(run_plan(run2, [file_delete(second)]), spec_digest="sha256:other")
    assert _apply(plan2, backend, tmp_path / "j2.jsonl", backup_dir=tmp_path / "b").ok
    assert sorted(p.read_bytes() for p in (tmp_path / "b").glob("*/files/acme/vision/a/*/latest.pt")) == \
        [b"v1", b"v2"]


def test_consent_is_required_for_a_plan_that_deletes_files(tmp_path: Path) -> None:
    """apply_plan of a deleting plan without backup_dir or no_backup raises before any call to W&B."""
    ckpt = live_file("f1", "ckpt/1.pt", 5)
    run = live_run("a", files=[ckpt])
    backend = MemoryBackend([run])
    plan = make_plan(run_plan(run, [file_delete(ckpt)]))
    handle = Journal.open(tmp_path / "j.jsonl", plan)
    try:
        with pytest.raises(PlanError, match=r"--backup-dir DIR .* or --no-backup"):
            apply_plan(plan, backend, journal=handle)
    finally:
        handle.close()
    assert backend.calls == []


def test_undo_on_merge_sets_created_config_keys_to_null(tmp_path: Path) -> None:
    """On a merging server the undo of a created config key is a set to null, which converges."""
    run = live_run("a")
    backend = MemoryBackend([run])
    result = _apply(make_plan(run_plan(run, [config_set("added", None, "x", created=True)])), backend,
                    tmp_path / "j.jsonl")
    assert result.undo is not None
    [change] = result.undo.runs[0].changes
    assert (change.op, change.after) == (ChangeOp.SET, None)
    undone = _apply(result.undo, backend, tmp_path / "u.jsonl")
    assert undone.ok, undone
    assert backend.run("acme", "vision", "a").config["added"] is None


def _summary(*runs: RunPlan) -> UndoSummary:
    summary = UndoSummary()
    for rp in runs:
        summary.count(rp)
    return summary


def _lost(files: list[tuple[str, str, int]]) -> LostFiles:
    lost = LostFiles()
    for run, name, size in files:
        lost.add(run, name, size)
    return lost


def test_describe_says_what_the_undo_restores_and_what_it_cannot(tmp_path: Path) -> None:
    """The sentences apply prints about its undo plan: metadata changes (not the restored-files record)
    and re-uploads with their size, config keys only set to null, files and versions lost for good."""
    nulled = Change(ChangeKind.CONFIG, ChangeOp.SET, ("new",), 1, None, ("undo",),
                    detail="set to null: a merging W&B server cannot remove config keys")
    record = Change(ChangeKind.SUMMARY, ChangeOp.SET, (*RESTORED_KEY, "a.pt"), None, {}, ("undo",))
    upload = Change(ChangeKind.FILE, ChangeOp.ADD, ("a.pt",), None, 1500, ("undo",))
    first = run_plan(live_run("r1"), [config_set("lr", 0.2, 0.1), nulled, record, upload])
    second = run_plan(live_run("r2"), [tag(ChangeOp.REMOVE, "x")])
    lost = [("acme/vision/r3", f"f{i}.pt", 100) for i in range(22)]
    lines = describe(_summary(first, second), _lost(lost), versions_deleted=2, artifact_backups=tmp_path)
    listed = ", ".join(f"acme/vision/r3/f{i}.pt" for i in range(20))
    assert lines == [
        "It restores 3 metadata changes on 2 runs and re-uploads 1 file (1.46 KiB) from their "
        "backups (each checked against its checksum first).",
        "It cannot remove the 1 config key the apply added (a merging W&B server keeps config keys, "
        "wandb/wandb#11055): it sets it to null instead: acme/vision/r1: config.new.",
        f"It cannot restore the 22 files (2.15 KiB) deleted without a backup: {listed} and 2 more.",
        "It cannot re-create the 2 artifact versions deleted (a version logged again gets a new id and "
        f"version number): their files are in {tmp_path}.",
    ]
    assert describe(UndoSummary(), LostFiles(), versions_deleted=1) == [
        "It restores nothing: nothing this apply did can be undone.",
        "It cannot re-create the 1 artifact version deleted (a version logged again gets a new id and "
        "version number): they were deleted without a backup.",
    ]
    assert describe(_summary(second), _lost(lost[:1])) == [
        "It restores 1 metadata change on 1 run and re-uploads 0 files (0 bytes) from their "
        "backups (each checked against its checksum first).",
        "It cannot restore the 1 file (100 bytes) deleted without a backup: acme/vision/r3/f0.pt.",
    ]
    twice = Change(ChangeKind.CONFIG, ChangeOp.SET, ("other",), 2, None, ("undo",), detail=nulled.detail)
    third = run_plan(live_run("r4"), [tag(ChangeOp.ADD, "y"), nulled, twice])
    assert describe(_summary(third), _lost(lost[:20])) == [
        "It restores 3 metadata changes on 1 run and re-uploads 0 files (0 bytes) from their "
        "backups (each checked against its checksum first).",
        "It cannot remove the 2 config keys the apply added (a merging W&B server keeps config keys, "
        "wandb/wandb#11055): it sets them to null instead: acme/vision/r4: config.new, "
        "acme/vision/r4: config.other.",
        f"It cannot restore the 20 files (1.95 KiB) deleted without a backup: {listed}.",
    ]


def test_describe_names_twenty_nulled_keys_and_counts_the_rest() -> None:
    """More config keys set to null than it names (20): the sentence names the first 20 and says how many
    more there are."""
    nulled = [Change(ChangeKind.CONFIG, ChangeOp.SET, (f"k{i:02}",), 1, None, ("undo",),
                     detail="set to null: a merging W&B server cannot remove config keys") for i in range(22)]
    [_restores, sentence] = describe(_summary(run_plan(live_run("r1"), nulled)), LostFiles())
    named = ", ".join(f"acme/vision/r1: config.k{i:02}" for i in range(20))
    assert sentence.endswith(f"it sets them to null instead: {named} and 2 more.")


def test_describe_counts_every_re_upload_of_every_run() -> None:
    """Re-uploads add up across changes and runs: their number and their bytes."""
    def upload(name: str, size: int) -> Change:
        return Change(ChangeKind.FILE, ChangeOp.ADD, (name,), None, size, ("undo",))

    summary = _summary(run_plan(live_run("r1"), [upload("a.pt", 1500), upload("b.pt", 500)]),
                       run_plan(live_run("r2"), [upload("c.pt", 48)]))
    assert describe(summary, LostFiles())[0] == (
        "It restores 0 metadata changes on 2 runs and re-uploads 3 files (2 KiB) from their backups (each "
        "checked against its checksum first).")


@pytest.mark.parametrize(("count", "more"), [(2, ""), (20, ""), (22, " and 2 more")])
def test_describe_names_twenty_runs_not_read_back_and_counts_the_rest(count: int, more: str) -> None:
    """Runs written to but not read back: the sentence names the first 20 and says how many more there
    are, and speaks of them in the plural."""
    runs = [f"acme/vision/r{i:02}" for i in range(count)]
    [_nothing, sentence] = describe(UndoSummary(), LostFiles(), unchecked=runs)
    assert sentence == (
        f"It does not cover the {count} runs written to but not read back (what took effect there is "
        f"unknown): {', '.join(runs[:20])}{more}. Apply the same plan again to finish them; the undo plan "
        "it writes covers them.")


def test_undo_fields_are_what_the_undo_writes_back_both_keys_of_a_rename_included() -> None:
    """An undo depends on every field it writes back: both keys of a renamed config key (it renames the
    new one back onto the old), the tags and text fields it resets, and for each re-uploaded file the
    files of that name and the summary key of its upload time; not the deleted files' listing."""
    gone = live_file("f1", "a.pt", 5)
    renamed = Change(ChangeKind.CONFIG, ChangeOp.RENAME, ("new",), 1, 1, ("r",), from_key=("old",))
    changes = [renamed, summary_set("acc", 0.5, 0.9), tag(ChangeOp.ADD, "x"),
               string_set(ChangeKind.NOTES, "", "n"), file_delete(gone)]
    assert undo_fields(run_plan(live_run("r1", files=[gone]), changes), ["a.pt"]) == (
        ("config", "new"), ("config", "old"), ("files", "a.pt"), ("notes",),
        ("summary", *RESTORED_KEY, "a.pt"), ("summary", "acc"), ("tags",))


def test_the_undo_of_a_run_keeps_its_name_and_project_and_the_digests_of_its_fields() -> None:
    """The undo ``RunPlan`` is the same run: its name (shown in the undo plan), the project's internal
    id (the write needs it), and the per-field digests of what it depends on (a stale undo names what
    drifted)."""
    rp = run_plan(live_run("r1"), [config_set("lr", 0.1, 0.2)])
    undo = undo_run(rp, UndoRecord("sha256:fp", (("config", "lr"),), (0,), field_digests=("0123456789ab",)))
    assert undo is not None
    assert (undo.name, undo.project_internal_id, undo.field_digests) == ("name-r1", 7, ("0123456789ab",))


def test_undo_run_re_uploads_each_backup_and_sets_merged_config_keys_to_null(tmp_path: Path) -> None:
    """The undo of one applied run, change by change: a created config key on a merging server set to
    null (not unset), the changed key set back, and per backup a re-upload of the original file (its id,
    size, upload time and md5, from the backup's path, checked by its sha256) plus the summary record
    of its original upload time."""
    run = live_run("r1")
    rp = run_plan(run, [config_set("new", None, 1, created=True), config_set("lr", 0.2, 0.1)],
                  config_writes=ConfigWrites.MERGE)
    backup = Backup(run="acme/vision/r1", file_id="f9", name="ckpt/a.pt", size=5,
                    updated_at="2026-01-02T03:04:05Z", sha256="sha256:abc", md5="bWQ1",
                    path=tmp_path / "a.pt")
    undo = undo_run(rp, UndoRecord("sha256:fp", (("config", "lr"),), (0, 1), (backup,)))
    assert undo is not None
    assert (undo.fingerprint, undo.fingerprint_fields, undo.config_writes) == (
        "sha256:fp", (("config", "lr"),), ConfigWrites.MERGE)
    null, back, upload, remember = undo.changes
    assert (null.kind, null.op, null.key, null.before, null.after, null.rules) == (
        ChangeKind.CONFIG, ChangeOp.SET, ("new",), 1, None, ("undo:r",))
    assert null.detail is not None and null.detail.startswith("set to null: a merging W&B server")
    assert (back.op, back.key, back.before, back.after) == (ChangeOp.SET, ("lr",), 0.1, 0.2)
    assert (upload.kind, upload.op, upload.key, upload.before, upload.after, upload.rules) == (
        ChangeKind.FILE, ChangeOp.ADD, ("ckpt/a.pt",), None, 5, ("undo",))
    assert upload.file is not None
    assert (upload.file.id, upload.file.name, upload.file.size, upload.file.updated_at, upload.file.md5) == (
        "f9", "ckpt/a.pt", 5, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "bWQ1")
    assert (upload.source, upload.checksum) == (str(tmp_path / "a.pt"), "sha256:abc")
    assert (remember.kind, remember.op, remember.key, remember.before, remember.created, remember.rules) == (
        ChangeKind.SUMMARY, ChangeOp.SET, (*RESTORED_KEY, "ckpt/a.pt"), None, True, ("undo",))
    assert remember.after == {"updated_at": "2026-01-02T03:04:05Z", "size": 5, "md5": "bWQ1"}
    replace = run_plan(run, [config_set("new", None, 1, created=True)], config_writes=ConfigWrites.REPLACE)
    unset_back = undo_run(replace, UndoRecord("sha256:fp", (), (0,)))
    assert unset_back is not None
    assert [(c.op, c.key) for c in unset_back.changes] == [(ChangeOp.UNSET, ("new",))]
    assert undo_run(rp, UndoRecord("sha256:fp", (), ())) is None


def test_invert_builds_the_whole_inverse_change() -> None:
    """Whole inverse changes (every field): rules named undo:<rule> (or undo), a removed key set back
    as created, a rename reversed, an artifact TTL set back on that version; a re-upload and a file
    deletion have none (an undo of an undo only restores metadata)."""
    version = LiveArtifact(id="a1", collection="m", type="model", version_index=2, size=3,
                           created_at=datetime(2026, 1, 1, tzinfo=timezone.utc), aliases=())
    cases = [
        (Change(ChangeKind.SUMMARY, ChangeOp.UNSET, ("tmp",), 5, None, ("clean",)),
         Change(ChangeKind.SUMMARY, ChangeOp.SET, ("tmp",), None, 5, ("undo:clean",), created=True)),
        (Change(ChangeKind.CONFIG, ChangeOp.RENAME, ("b",), 1, 1, ("mv", "x"), from_key=("a",)),
         Change(ChangeKind.CONFIG, ChangeOp.RENAME, ("a",), 1, 1, ("undo:mv", "undo:x"), from_key=("b",))),
        (Change(ChangeKind.NOTES, ChangeOp.SET, (), "old", "new", ()),
         Change(ChangeKind.NOTES, ChangeOp.SET, (), "new", "old", ("undo",))),
        (Change(ChangeKind.ARTIFACT, ChangeOp.SET, ("m:v2", "ttl"), "30d", "7d", ("ttl",), artifact=version),
         Change(ChangeKind.ARTIFACT, ChangeOp.SET, ("m:v2", "ttl"), "7d", "30d", ("undo:ttl",),
                artifact=version)),
    ]
    for change, inverse in cases:
        assert invert(change) == inverse
    assert invert(Change(ChangeKind.ARTIFACT, ChangeOp.SET, ("m:v2", "ttl"), None, "7d", ("ttl",),
                         artifact=version)) is None  # no TTL before: nothing to set back
    assert invert(Change(ChangeKind.FILE, ChangeOp.ADD, ("a.pt",), None, 5, ("undo",))) is None
    assert invert(Change(ChangeKind.ARTIFACT, ChangeOp.DELETE, ("m:v2",), version, None, ("r",))) is None
