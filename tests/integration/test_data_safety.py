"""Issue 13, "deleting is forever": backups that cannot be lost, explicit consent, honest undo, and
saved plans that are checked. The real CLI and the real wandb client against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner, Result

from reconcile.apply.journal import JournalLock
from reconcile.cli import main
from reconcile.planfile import check_digest, content_digest, read_plan
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

Start = Callable[..., Any]


def cli(*args: str) -> Result:
    """The reconcile CLI in-process (no TTY)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def api(url: str) -> Any:
    """A fresh public-API client."""
    return wandb.Api(overrides={"base_url": url}, api_key=TEST_API_KEY)


def run_with(files: list[dict[str, Any]], run_id: str = "r1", project: str = "vision",
             **extra: Any) -> dict[str, Any]:
    """A finished fixture run holding ``files`` and `notes.txt` (so no rule deletes every file)."""
    return {"entity": "acme", "project": project, "id": run_id, "name": f"run-{run_id}", "state": "finished",
            "created_at": "2026-01-02T03:04:05Z", "config": {"lr": 0.1}, "summary": {"acc": 0.9},
            "tags": ["t"], "files": [*files, {"name": "notes.txt", "content": "kept"}], **extra}


def ok(*args: str) -> Result:
    """The CLI, which must succeed."""
    result = cli(*args)
    assert result.exit_code == 0, (args, result.output)
    return result


def spec(tmp_path: Path, rules: str, name: str = "spec.yaml") -> Path:
    """A spec for acme/vision with these rules (YAML text under ``rules:``)."""
    path = tmp_path / name
    path.write_text("version: 1\ntarget: {entity: acme, project: vision}\nrules:\n" + rules, encoding="utf-8")
    return path


def downloaded(url: str, run: str, name: str, where: Path) -> bytes:
    """The bytes W&B serves for run file ``name``."""
    for f in api(url).run(run).files():
        if f.name == name:
            f.download(root=str(where), replace=True)
            return (where / name).read_bytes()
    raise AssertionError(f"{run} has no file {name}")


def writes(emu: Any) -> list[str]:
    """The operations of every write the emulator applied."""
    return [m["operation"] for m in emu.mutations()]


# --------------------------------------------------------------------------- backups


def test_backup_of_a_file_named_like_another_files_staging_name(emulator: Start, wandb_env: Any,
                                                                  tmp_path: Path) -> None:
    """A run holding `.a.ckpt.partial` and `a.ckpt`: both are backed up intact (staging is outside the
    tree a run's names reach) and the undo plan restores both, byte for byte."""
    files = [{"name": ".a.ckpt.partial", "content": "the partial-named file\n"},
             {"name": "a.ckpt", "content": "the real checkpoint\n"}]
    emu = emulator(seed={"runs": [run_with(files)]})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n"
                       "    files: {delete: ['.a.ckpt.partial', 'a.ckpt']}\n")
    ok("plan", "-f", str(s), "-o", str(plan))
    applied = cli("apply", str(plan), "--backup-dir", str(tmp_path / "b"))
    assert applied.exit_code == 0, applied.output
    undone = cli("apply", str(tmp_path / "plan.undo.json"))
    assert undone.exit_code == 0, undone.output
    assert "2 files restored" in undone.stdout
    assert downloaded(emu.url, "acme/vision/r1", "a.ckpt", tmp_path / "d") == b"the real checkpoint\n"
    assert downloaded(emu.url, "acme/vision/r1", ".a.ckpt.partial", tmp_path / "d") == \
        b"the partial-named file\n"
    copies = {p.name: p.read_bytes() for p in (tmp_path / "b").glob("*/files/acme/vision/r1/*/*")}
    assert copies == {".a.ckpt.partial": b"the partial-named file\n", "a.ckpt": b"the real checkpoint\n"}


def test_file_names_that_map_to_one_path_get_backups_of_their_own(emulator: Start, wandb_env: Any,
                                                                   tmp_path: Path) -> None:
    """`x` and `x/y` of one run (review of issue 13, item 13: a raw '[Errno 17] File exists') are each
    backed up on their own, deleted, and the undo plan restores each byte for byte."""
    files = [{"name": "x", "content": "a file named x\n"}, {"name": "x/y", "content": "a file under x\n"}]
    emu = emulator(seed={"runs": [run_with(files)]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n    files: {delete: ['x', 'x/y']}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    applied = cli("apply", str(plan), "--backup-dir", str(tmp_path / "b"))
    assert applied.exit_code == 0, applied.output
    assert "2 files deleted" in applied.stdout, applied.output
    assert [f.name for f in api(emu.url).run("acme/vision/r1").files()] == ["notes.txt"]
    manifest = next((tmp_path / "b").glob("*/manifest.jsonl")).read_text().splitlines()
    assert {m["name"]: Path(m["path"]).read_bytes() for m in map(json.loads, manifest)} == {
        f["name"]: f["content"].encode() for f in files}
    undone = cli("apply", str(tmp_path / "plan.undo.json"))
    assert undone.exit_code == 0, undone.output
    assert "2 files restored" in undone.stdout
    assert downloaded(emu.url, "acme/vision/r1", "x", tmp_path / "d1") == b"a file named x\n"
    assert downloaded(emu.url, "acme/vision/r1", "x/y", tmp_path / "d2") == b"a file under x\n"


def test_a_name_the_client_cannot_reupload_is_refused_with_backup_dir(emulator: Start, wandb_env: Any,
                                                                      tmp_path: Path) -> None:
    """`ck//c` beside `ck/c` (review of issue 13, item 13: 'refusing to overwrite the backup ... Use another
    --backup-dir', which would not help): the wandb client would re-upload `ck//c` as `ck/c`, replacing
    that file, so with --backup-dir the run is refused before any write, naming both files and what to
    do; with --no-backup both are deleted."""
    files = [{"name": "ck//c", "content": "double slash\n"}, {"name": "ck/c", "content": "single slash\n"}]
    emu = emulator(seed={"runs": [run_with(files)]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n    set: {notes: x}\n"
                       "    files: {delete: ['ck//c', 'ck/c']}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    refused = cli("apply", str(plan), "--backup-dir", str(tmp_path / "b"))
    assert refused.exit_code == 1, refused.output
    message = " ".join(refused.stderr.split())
    assert "refusing to delete 'ck//c' with --backup-dir" in message, message
    assert "re-uploads it as 'ck/c' (another file of the run, which it would replace)" in message, message
    assert "Leave it out of files.delete (a keep glob), or delete it with --no-backup" in message, message
    assert "another --backup-dir" not in message and "Errno" not in message, message
    assert writes(emu) == []
    applied = cli("apply", str(plan), "--no-backup")
    assert applied.exit_code == 0, applied.output
    assert [f.name for f in api(emu.url).run("acme/vision/r1").files()] == ["notes.txt"]


def test_reused_backup_dir_keeps_each_applys_backups(emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """Apply 1 backs up latest.ckpt v1, a teammate uploads v2, apply 2 (same --backup-dir) backs up v2:
    apply 1's undo restores v1, not v2."""
    emu = emulator(seed={"runs": [run_with([{"name": "latest.ckpt", "content": "version one\n"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n    files: {delete: ['latest.ckpt']}\n")
    backups = str(tmp_path / "backups")
    ok("plan", "-f", str(s), "-o", str(tmp_path / "p1.json"))
    ok("apply", str(tmp_path / "p1.json"), "--backup-dir", backups)
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "latest.ckpt").write_bytes(b"version TWO\n")  # same size, other bytes
    api(emu.url).run("acme/vision/r1").upload_file(str(upload / "latest.ckpt"), root=str(upload))
    ok("plan", "-f", str(s), "-o", str(tmp_path / "p2.json"))
    second = cli("apply", str(tmp_path / "p2.json"), "--backup-dir", backups)
    assert second.exit_code == 0, second.output
    undone = cli("apply", str(tmp_path / "p1.undo.json"))
    assert undone.exit_code == 0, undone.output
    assert downloaded(emu.url, "acme/vision/r1", "latest.ckpt", tmp_path / "d") == b"version one\n"
    kept = sorted(p.read_bytes() for p in Path(backups).rglob("latest.ckpt"))
    assert kept == [b"version TWO\n", b"version one\n"]


def test_undo_refuses_a_backup_whose_bytes_changed(emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """The undo checks the checksum of what it re-uploads: a backup altered since (same size) is refused
    and nothing is uploaded."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "original bytes\n"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n    files: {delete: ['a.ckpt']}\n")
    ok("plan", "-f", str(s), "-o", str(tmp_path / "plan.json"))
    ok("apply", str(tmp_path / "plan.json"), "--backup-dir", str(tmp_path / "b"))
    [copy] = (tmp_path / "b").rglob("a.ckpt")
    copy.write_bytes(b"altered bytes!\n")
    before = len(emu.mutations())
    undone = cli("apply", str(tmp_path / "plan.undo.json"))
    assert undone.exit_code == 1
    assert "checksum" in undone.stderr and "not the file that was deleted" in undone.stderr
    assert emu.mutations()[before:] == []
    assert [f.name for f in api(emu.url).run("acme/vision/r1").files()] == ["notes.txt"]


def test_keep_last_after_an_undo_plans_the_same_files_again(emulator: Start, wandb_env: Any,
                                                            tmp_path: Path) -> None:
    """keep_last 2 deletes ckpt-001/002; undo re-uploads them (new upload times); planning again proposes
    ckpt-001/002 again, never the true newest ckpt-003/004."""
    files = [{"name": f"ckpt-00{i}.pt", "content": f"checkpoint {i}\n",
              "updated_at": f"2026-01-0{i}T00:00:00Z"} for i in range(1, 5)]
    emu = emulator(seed={"runs": [run_with(files)]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: keep-two\n    match: {ids: [r1]}\n"
                       "    files: {delete: ['ckpt-*'], keep_last: 2}\n")

    def planned_deletions(name: str) -> list[str]:
        result = cli("plan", "-f", str(s), "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        return sorted(c["key"][0] for r in read_json(tmp_path / name)["runs"] for c in r["changes"]
                      if c["op"] == "delete")

    assert planned_deletions("p1.json") == ["ckpt-001.pt", "ckpt-002.pt"]
    ok("apply", str(tmp_path / "p1.json"), "--backup-dir", str(tmp_path / "b"))
    undone = cli("apply", str(tmp_path / "p1.undo.json"))
    assert undone.exit_code == 0, undone.output
    assert planned_deletions("p2.json") == ["ckpt-001.pt", "ckpt-002.pt"]


def test_keep_last_plans_the_same_files_after_every_apply_undo_cycle(emulator: Start, wandb_env: Any,
                                                                     tmp_path: Path) -> None:
    """Two full plan -> apply -> undo cycles on two runs (review of issue 13, item 1): the second undo
    must record each file's original upload time, not the first undo's re-upload time, so the third
    plan still deletes ckpt-001/002 and never the true newest ckpt-003/004 (or r4's ckpt-003)."""
    def ckpts(count: int) -> list[dict[str, Any]]:
        return [{"name": f"ckpt-00{i}.pt", "content": f"checkpoint {i}\n",
                 "updated_at": f"2026-01-02T0{i}:00:00Z"} for i in range(1, count + 1)]

    emu = emulator(seed={"runs": [run_with(ckpts(4), "r3"), run_with(ckpts(3), "r4")]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: keep-two\n    match: {all: true}\n"
                       "    files: {delete: ['ckpt-*.pt'], keep_last: 2}\n")
    expected = {"acme/vision/r3": ["ckpt-001.pt", "ckpt-002.pt"], "acme/vision/r4": ["ckpt-001.pt"]}

    def planned_deletions(name: str) -> dict[str, list[str]]:
        result = cli("plan", "-f", str(s), "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        return {r["path"]: sorted(c["key"][0] for c in r["changes"] if c["op"] == "delete")
                for r in read_json(tmp_path / name)["runs"]}

    for cycle in ("p1", "p2", "p3"):
        assert planned_deletions(f"{cycle}.json") == expected, cycle
        if cycle == "p3":
            break
        ok("apply", str(tmp_path / f"{cycle}.json"), "--backup-dir", str(tmp_path / "b"))
        undone = cli("apply", str(tmp_path / f"{cycle}.undo.json"))
        assert undone.exit_code == 0, undone.output
        summary = api(emu.url).run("acme/vision/r3").summary["_reconcile"]["restored_files"]
        assert {name: record["updated_at"] for name, record in summary.items()} == {
            "ckpt-001.pt": "2026-01-02T01:00:00Z", "ckpt-002.pt": "2026-01-02T02:00:00Z"}, cycle


def test_plan_shows_a_restored_files_age_from_its_original_upload(emulator: Start, wandb_env: Any,
                                                                   tmp_path: Path) -> None:
    """After an undo, the plan shows a restored file's age from the original upload time retention ranks
    it by, and says so, for a deletion and for a survivor alike, in text, markdown and JSON (review of
    issue 13, item 16; it showed '0 days old', the re-upload's age)."""
    files = [{"name": f"ckpt-00{i}.pt", "content": f"checkpoint {i}\n",
              "updated_at": f"2026-01-02T0{i}:00:00Z"} for i in range(1, 5)]
    emu = emulator(seed={"runs": [run_with(files)]})
    wandb_env(emu.url)
    prune = spec(tmp_path, "  - name: keep-two\n    match: {ids: [r1]}\n"
                           "    files: {delete: ['ckpt-*'], keep_last: 2}\n")
    ok("plan", "-f", str(prune), "-o", str(tmp_path / "p1.json"))
    ok("apply", str(tmp_path / "p1.json"), "--backup-dir", str(tmp_path / "b"))
    ok("apply", str(tmp_path / "p1.undo.json"))
    s = spec(tmp_path, "  - name: keep-three\n    match: {ids: [r1]}\n"
                       "    files: {delete: ['ckpt-*'], keep_last: 3}\n", "three.yaml")
    plan = tmp_path / "p2.json"
    text = ok("plan", "-f", str(s), "-o", str(plan), "--show-kept").stdout
    days = (read_plan(plan).created_at - datetime(2026, 1, 2, 1, tzinfo=timezone.utc)).days
    restored = "by its original upload (2026-01-02 0{} UTC; an undo re-uploaded it since)"
    assert f'- file "ckpt-001.pt" (13 bytes, {days} days old {restored.format("1:00")})' in text, text
    assert f'= file "ckpt-002.pt" (13 bytes, {days} days old {restored.format("2:00")})' in text, text
    assert f'= file "ckpt-003.pt" (13 bytes, {days} days old)' in text, text  # never restored
    markdown = ok("show", str(plan), "--format", "markdown", "--show-kept").stdout
    assert markdown.count("an undo re-uploaded it since") == 2, markdown
    assert restored.format("1:00") in markdown and restored.format("2:00") in markdown, markdown
    [run] = read_json(plan)["runs"]
    [deletion] = [c for c in run["changes"] if c["op"] == "delete"]
    assert deletion["original_updated_at"] == "2026-01-02T01:00:00Z" != deletion["file"]["updated_at"]
    assert {k["name"]: k.get("original_updated_at") for k in run["kept"]} == {
        "ckpt-002.pt": "2026-01-02T02:00:00Z", "ckpt-003.pt": None, "ckpt-004.pt": None}


def read_json(path: Path) -> Any:
    """A JSON file (NaN allowed, as plans do)."""
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- lock


def test_second_apply_of_a_locked_plan_exits_1_naming_the_holder(emulator: Start, wandb_env: Any,
                                                                 tmp_path: Path) -> None:
    """While the journal is locked, apply exits 1 before any write, saying who holds it; once the lock is
    released (or its holder died: flock) it runs."""
    emu = emulator(seed={"runs": [run_with([])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: reviewed}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    lock = JournalLock.acquire(tmp_path / "plan.journal.jsonl")
    try:
        refused = cli("apply", str(plan))
    finally:
        lock.release()
    assert refused.exit_code == 1
    assert "locked" in refused.stderr and f"pid {os.getpid()}" in refused.stderr
    assert writes(emu) == [] and not (tmp_path / "plan.journal.jsonl").exists()
    ok("apply", str(plan))
    assert writes(emu) == ["UpsertBucket"]


# --------------------------------------------------------------------------- consent and honesty


def test_apply_of_a_deleting_plan_needs_backup_dir_or_no_backup(emulator: Start, wandb_env: Any,
                                                                tmp_path: Path) -> None:
    """The plan says what will be permanently deleted; apply without a choice exits 1 before any write,
    naming both flags; both together are refused too."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "12345"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n    set: {notes: x}\n"
                       "    files: {delete: ['a.ckpt']}\n")
    plan = tmp_path / "plan.json"
    planned = cli("plan", "-f", str(s), "-o", str(plan))
    assert "1 file (5 bytes) will be permanently deleted" in planned.stdout
    for flags in ((), ("--backup-dir", str(tmp_path / "b"), "--no-backup")):
        refused = cli("apply", str(plan), *flags)
        assert refused.exit_code == 1
        assert "--backup-dir" in refused.stderr and "--no-backup" in refused.stderr
    refused_f = cli("apply", "-f", str(s), "--auto-approve", "--journal", str(tmp_path / "j.jsonl"))
    assert refused_f.exit_code == 1 and "--no-backup" in refused_f.stderr
    assert writes(emu) == [] and not list(tmp_path.glob("*.jsonl"))
    applied = cli("apply", str(plan), "--no-backup")
    assert applied.exit_code == 0, applied.output
    assert "cannot restore the 1 file (5 bytes) deleted without a backup: acme/vision/r1/a.ckpt" \
        in applied.stderr


def test_undo_restores_metadata_of_a_run_whose_deletion_then_failed(emulator: Start, wandb_env: Any,
                                                                     tmp_path: Path) -> None:
    """The notes write lands, then the deletion is refused (the backup was altered while the write was
    held at the emulator's barrier): the undo plan still restores the notes, the undo message counts
    them, and applying it puts them back (review of issue 13, item 4)."""
    emu = emulator(seed={"runs": [run_with([{"name": "latest.ckpt", "content": "checkpoint\n"}],
                                            notes="original")]})
    env = wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: x}\n"
                       "    files: {delete: ['latest.ckpt']}\n")
    plan = tmp_path / "p2.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    emu.set_faults(hold="UpsertBucket")
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "apply", str(plan), "--backup-dir",
                             str(tmp_path / "bk")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert emu.wait_held(timeout=90) == 1, "apply never reached the barrier"
        [copy] = (tmp_path / "bk").rglob("latest.ckpt")
        copy.write_bytes(b"CHECKPOINT\n")  # same size, other bytes
    finally:
        emu.set_faults(hold=None)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (stdout, stderr)
    assert "the file was not deleted" in stderr, stderr
    assert api(emu.url).run("acme/vision/r1").notes == "x"
    assert "It restores 1 metadata change on 1 run" in stderr, stderr
    undo = read_json(tmp_path / "p2.undo.json")
    assert [c["kind"] for r in undo["runs"] for c in r["changes"]] == ["notes"]
    undone = cli("apply", str(tmp_path / "p2.undo.json"))
    assert undone.exit_code == 0, undone.output
    assert api(emu.url).run("acme/vision/r1").notes == "original"
    assert [f.name for f in api(emu.url).run("acme/vision/r1").files()] == ["latest.ckpt", "notes.txt"]


def test_undo_on_a_merging_server_sets_added_config_keys_to_null(emulator: Start, wandb_env: Any,
                                                                 tmp_path: Path) -> None:
    """An undo cannot remove a config key the apply added on a merging server: it sets it to null, says
    so up front, and converges (exit 0)."""
    emu = emulator(seed={"runs": [run_with([])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: add\n    match: {ids: [r1]}\n"
                       "    set: {config: {dataset: cifar10, lr: 0.2}}\n")
    ok("plan", "-f", str(s), "-o", str(tmp_path / "plan.json"))
    applied = cli("apply", str(tmp_path / "plan.json"))
    assert applied.exit_code == 0, applied.output
    assert ("the 1 config key the apply added (a merging W&B server keeps config keys, wandb/wandb#11055): "
            "it sets it to null instead: acme/vision/r1: config.dataset") in applied.stderr
    undone = cli("apply", str(tmp_path / "plan.undo.json"))
    assert undone.exit_code == 0, undone.output
    config = api(emu.url).run("acme/vision/r1").config
    assert config["lr"] == 0.1 and config["dataset"] is None


def test_deletion_only_apply_f_leaves_no_older_undo_plan(emulator: Start, wandb_env: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """apply -f writes its undo plan every time: after a deletion-only apply -f with --no-backup the
    undo plan restores nothing, instead of being the previous apply's (which would revert a wrong change)."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "x"}])]})
    wandb_env(emu.url)
    monkeypatch.chdir(tmp_path)
    notes = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: reviewed}\n", "notes.yaml")
    ok("apply", "-f", str(notes), "--auto-approve")
    assert read_plan(tmp_path / "reconcile.plan.undo.json").runs
    prune = spec(tmp_path, "  - name: p\n    match: {ids: [r1]}\n    files: {delete: ['*.ckpt']}\n",
                 "prune.yaml")
    pruned = cli("apply", "-f", str(prune), "--auto-approve", "--no-backup")
    assert pruned.exit_code == 0, pruned.output
    assert read_plan(tmp_path / "reconcile.plan.undo.json").runs == ()
    assert "It restores nothing" in pruned.stderr
    assert emu.mutations()[-1]["operation"] == "deleteFiles"


def test_output_paths_are_checked_before_anything_is_written(emulator: Start, wandb_env: Any,
                                                             tmp_path: Path) -> None:
    """plan -o into a missing directory, and apply with a bad --undo-out, --journal or --backup-dir,
    exit 1 with a clear message before any write to W&B (never exit 3, never after the writes)."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "x"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: reviewed}\n"
                       "    files: {delete: ['a.ckpt']}\n")
    bad = cli("plan", "-f", str(s), "-o", "/nonexistent/dir/p.json")
    assert bad.exit_code == 1 and "/nonexistent/dir does not exist" in bad.stderr
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    a_file = tmp_path / "file"
    a_file.write_text("")
    for flags in (("--undo-out", "/nonexistent/x/u.json", "--no-backup"),
                  ("--journal", str(a_file / "j.jsonl"), "--no-backup"),
                  ("--backup-dir", str(a_file))):
        refused = cli("apply", str(plan), *flags)
        assert refused.exit_code == 1, (flags, refused.output)
        assert "Nothing was written" in refused.stderr or "is a file" in refused.stderr, refused.stderr
    assert writes(emu) == []


# --------------------------------------------------------------------------- tampered plans


def retamper(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a saved plan and give it a matching content digest (a hostile editor can)."""
    data = read_json(path)
    edit(data)
    data["content_digest"] = content_digest(data)
    check_digest(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


TWO_PROJECTS = [run_with([], "b0", "vision"), run_with([], "s0", "secret")]


@pytest.mark.parametrize("tamper", ["listed twice", "counts", "digest", "another project"])
def test_a_tampered_plan_is_refused(emulator: Start, wandb_env: Any, tmp_path: Path, tamper: str) -> None:
    """A plan that contradicts itself, or whose fingerprint was taken from another run (here: a run of a
    project the spec never planned, with the same fields), writes nothing to W&B."""
    emu = emulator(seed={"runs": TWO_PROJECTS})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [b0]}\n    set: {notes: reviewed}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    data = read_json(plan)
    if tamper == "listed twice":
        data["runs"].append(data["runs"][0])
        data["summary"].update(runs_to_change=2, attribute_changes=2)
        plan.write_text(json.dumps(data), encoding="utf-8")
    elif tamper == "counts":
        data["summary"]["runs_to_change"] = 0
        plan.write_text(json.dumps(data), encoding="utf-8")
    elif tamper == "digest":
        data["runs"][0]["changes"][0]["after"] = "something else"
        plan.write_text(json.dumps(data), encoding="utf-8")
    else:
        secret = api(emu.url).run("acme/secret/s0")
        retamper(plan, lambda d: d["runs"][0].update(path="acme/secret/s0", storage_id=secret.id))
    refused = cli("apply", str(plan))
    assert refused.exit_code == 1, refused.output
    assert writes(emu) == []
    assert api(emu.url).run("acme/secret/s0").notes in ("", None)


def test_backups_download_from_the_live_listing_not_the_plans_url(emulator: Start, wandb_env: Any,
                                                                  tmp_path: Path) -> None:
    """A plan whose file URL points at another host (here another emulator on loopback serving other
    bytes of the same size) is backed up from W&B's live listing."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "the real bytes\n"}])]})
    other = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "foreign bytes!\n"}])]})
    wandb_env(other.url)
    foreign_url = next(f for f in api(other.url).run("acme/vision/r1").files()).url
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: prune\n    match: {ids: [r1]}\n    files: {delete: ['a.ckpt']}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))

    def swap(d: dict[str, Any]) -> None:
        change = d["runs"][0]["changes"][0]
        change["file"]["url"] = change["before"]["url"] = foreign_url

    retamper(plan, swap)
    applied = cli("apply", str(plan), "--backup-dir", str(tmp_path / "b"))
    assert applied.exit_code == 0, applied.output
    [copy] = (tmp_path / "b").rglob("a.ckpt")
    assert copy.read_bytes() == b"the real bytes\n"


# --------------------------------------------------------------------------- artifact versions


def _artifact_run() -> dict[str, Any]:
    """r1 logged model-r1 v0 (two files, one named like the other's staging file), v1 and v2 (latest):
    keep_last 1 deletes v0."""
    v0 = [{"name": ".model.ckpt.partial", "content": "the partial-named member\n"},
          {"name": "model.ckpt", "content": "checkpoint of epoch 0\n"}]
    return run_with([], artifacts=[
        {"name": "model-r1", "type": "model", "created_at": "2026-01-02T04:00:00Z", "files": v0},
        *({"name": "model-r1", "type": "model", "created_at": f"2026-01-02T0{5 + n}:00:00Z",
           "files": [{"name": "model.ckpt", "content": f"checkpoint of epoch {n}\n"}]} for n in (1, 2))])


ARTIFACT_RULE = ("  - name: prune-models\n    match: {ids: [r1]}\n"
                 "    artifacts: {type: model, name: 'model-*', keep_last: 1}\n")


def test_artifact_only_deletions_need_backup_dir_or_no_backup(emulator: Start, wandb_env: Any,
                                                               tmp_path: Path) -> None:
    """A plan that deletes only artifact versions says so, and apply without a choice exits 1 before
    any write, naming both flags (saved plan and apply -f alike)."""
    emu = emulator(seed={"runs": [_artifact_run()]})
    wandb_env(emu.url)
    s = spec(tmp_path, ARTIFACT_RULE)
    plan = tmp_path / "plan.json"
    planned = cli("plan", "-f", str(s), "-o", str(plan))
    assert "1 artifact version (47 bytes) will be permanently deleted" in planned.stdout, planned.output
    refused = cli("apply", str(plan))
    assert refused.exit_code == 1
    assert "1 artifact version (47 bytes)" in refused.stderr
    assert "--backup-dir" in refused.stderr and "--no-backup" in refused.stderr
    refused_f = cli("apply", "-f", str(s), "--auto-approve", "--journal", str(tmp_path / "j.jsonl"))
    assert refused_f.exit_code == 1 and "--no-backup" in refused_f.stderr
    assert writes(emu) == [] and not list(tmp_path.glob("*.jsonl"))
    applied = cli("apply", str(plan), "--no-backup")
    assert applied.exit_code == 0, applied.output
    assert "cannot re-create the 1 artifact version deleted" in applied.stderr
    assert "deleted without a backup" in applied.stderr
    assert writes(emu) == ["DeleteArtifact"]


def test_artifact_backups_are_this_applys_own_and_complete(emulator: Start, wandb_env: Any,
                                                           tmp_path: Path) -> None:
    """With --backup-dir the deleted version's files, one named like the other's staging file, are in
    this apply's own folder byte for byte, recorded with their checksums, and the undo message says
    where they are."""
    emu = emulator(seed={"runs": [_artifact_run()]})
    wandb_env(emu.url)
    s = spec(tmp_path, ARTIFACT_RULE)
    ok("plan", "-f", str(s), "-o", str(tmp_path / "p1.json"))
    backups = tmp_path / "backups"
    applied = ok("apply", str(tmp_path / "p1.json"), "--backup-dir", str(backups))
    [version] = backups.glob("*/artifacts/acme/vision/r1/model-r1/v0")
    assert {p.name: p.read_bytes() for p in version.iterdir()} == {
        ".model.ckpt.partial": b"the partial-named member\n", "model.ckpt": b"checkpoint of epoch 0\n"}
    assert f"their files are in {version.parents[4]}" in applied.stderr
    manifest = [json.loads(line) for line in (version.parents[5] / "manifest.jsonl").read_text().splitlines()]
    assert [(m["kind"], m["name"], m["size"]) for m in manifest] == [("artifact", "model-r1:v0", 47)]
    assert writes(emu) == ["DeleteArtifact"]
