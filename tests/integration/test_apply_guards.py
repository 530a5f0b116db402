"""The hostile review of issue 13 (REVIEW-13-14-18 items 2, 3, 5, 7, 14, 15): re-planning into the same
file, two applies of one plan, output paths that collide with inputs, plans that contradict themselves,
deeply nested JSON, and globs that delete everything. The real CLI and the real wandb client against the
emulator."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from reconcile.apply import events as ev
from reconcile.apply.journal import Journal, PlanLock
from reconcile.planfile import open_plan, read_plan
from tests.integration.test_data_safety import (
    Start,
    api,
    cli,
    ok,
    read_json,
    retamper,
    run_with,
    spec,
    writes,
)

pytestmark = pytest.mark.integration

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def notes_spec(tmp_path: Path, notes: str) -> Path:
    """A spec setting r1's notes to ``notes`` (rewritten in place, as a user edits it)."""
    return spec(tmp_path, f"  - name: n\n    match: {{ids: [r1]}}\n    set: {{notes: {notes}}}\n", "s.yaml")


def applied(*args: str) -> Result:
    """apply, which must succeed."""
    result = cli("apply", *args)
    assert result.exit_code == 0, (args, result.output)
    return result


# --------------------------------------------------------------------------- item 3: plan -> apply loop


def test_replanning_into_the_same_file_after_a_finished_apply_applies(emulator: Start, wandb_env: Any,
                                                                      tmp_path: Path) -> None:
    """The README Quickstart loop twice in one directory: plan -o plan.json, apply plan.json, edit, plan -o
    plan.json, apply plan.json. The finished apply's journal does not block the new plan; its undo plan
    is kept beside (named by its plan's digest) and still undoes the first apply."""
    emu = emulator(seed={"runs": [run_with([])]})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(notes_spec(tmp_path, "first")), "-o", str(plan))
    first_digest = read_json(plan)["content_digest"]
    applied(str(plan))
    ok("plan", "-f", str(notes_spec(tmp_path, "second")), "-o", str(plan))
    second = applied(str(plan))
    assert api(emu.url).run("acme/vision/r1").notes == "second"
    kept = tmp_path / f"plan.undo.{first_digest.removeprefix('sha256:')[:12]}.json"
    assert str(kept) in second.stderr
    [first_undo] = read_plan(kept).runs
    assert [(c.before, c.after) for c in first_undo.changes] == [("first", None)]
    [second_undo] = read_plan(tmp_path / "plan.undo.json").runs
    assert [(c.before, c.after) for c in second_undo.changes] == [("second", "first")]
    journal = [json.loads(line) for line in (tmp_path / "plan.journal.jsonl").read_text().splitlines()]
    assert journal[0]["plan_digest"] == read_json(plan)["content_digest"]
    assert [r["type"] for r in journal].count("plan") == 1


def test_an_unfinished_journal_of_an_overwritten_plan_says_what_is_true(emulator: Start, wandb_env: Any,
                                                                        tmp_path: Path) -> None:
    """An apply of plan A that did not finish, then plan B saved over A at the same path: apply exits 1
    before any write, shows A's digest whole (a digest is not a secret), and says how to go on (finish A
    with --journal if its file still exists, or move the journal aside, or pass --journal)."""
    emu = emulator(seed={"runs": [run_with([])]})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(notes_spec(tmp_path, "first")), "-o", str(plan))
    first = open_plan(plan)
    digest_a = first.digest
    journal = Journal.open(tmp_path / "plan.journal.jsonl", first)  # as an apply killed at once
    journal(ev.RunStarted("acme/vision/r1"))
    journal.close()
    first.close()
    ok("plan", "-f", str(notes_spec(tmp_path, "second")), "-o", str(plan))
    refused = cli("apply", str(plan))
    assert refused.exit_code == 1
    message = " ".join(refused.stderr.split())
    assert digest_a in message and "[redacted]" not in message
    assert "did not finish" in message and "--journal" in message and "Nothing was written" in message
    assert "apply it again" not in message
    assert writes(emu) == []
    ok_after = cli("apply", str(plan), "--journal", str(tmp_path / "new.jsonl"))
    assert ok_after.exit_code == 0, ok_after.output


def test_apply_of_the_same_plan_after_it_finished_still_skips_what_is_done(emulator: Start, wandb_env: Any,
                                                                          tmp_path: Path) -> None:
    """Applying the same plan again after it finished writes nothing (the journal is its own)."""
    emu = emulator(seed={"runs": [run_with([])]})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(notes_spec(tmp_path, "first")), "-o", str(plan))
    applied(str(plan))
    before = len(emu.mutations())
    again = applied(str(plan))
    assert "finished by an earlier apply of this plan" in again.stderr
    assert len(emu.mutations()) == before
    assert not list(tmp_path.glob("plan.undo.*.json"))



# --------------------------------------------------------------------------- item 2: the plan's own lock


def test_a_second_apply_of_one_plan_with_another_journal_is_refused(emulator: Start, wandb_env: Any,
                                                                    tmp_path: Path) -> None:
    """While an apply holds the plan (journal jA), an apply of the same plan with --journal jB, or of a
    byte-for-byte copy in the same directory, exits 1 before any write, naming the holder and its
    journal; once released, the apply runs."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "x"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: reviewed}\n"
                       "    files: {delete: ['a.ckpt']}\n")
    plan = tmp_path / "p.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    copy = tmp_path / "copy.json"
    copy.write_bytes(plan.read_bytes())
    held = open_plan(plan)
    lock = PlanLock.acquire(plan, held.digest, tmp_path / "jA.jsonl")
    try:
        for target, journal in ((plan, "jB.jsonl"), (copy, "jC.jsonl")):
            refused = cli("apply", str(target), "--backup-dir", str(tmp_path / "bk"), "--journal",
                          str(tmp_path / journal), "--undo-out", str(tmp_path / f"u-{journal}.json"))
            assert refused.exit_code == 1, refused.output
            message = " ".join(refused.stderr.split())
            assert "the plan is locked" in message and f"pid {os.getpid()}" in message
            assert str(tmp_path / "jA.jsonl") in message and "whatever --journal says" in message
            assert not (tmp_path / journal).exists() and not (tmp_path / "bk").exists()
    finally:
        lock.release()
        held.close()
    assert writes(emu) == []
    applied(str(plan), "--backup-dir", str(tmp_path / "bk"), "--journal", str(tmp_path / "jB.jsonl"))
    assert writes(emu) == ["UpsertBucket", "deleteFiles"]
    assert not list(tmp_path.glob(".reconcile-apply.*.lock"))


# --------------------------------------------------------------------------- item 5: output paths


def test_outputs_that_are_inputs_or_each_other_are_refused_before_any_write(emulator: Start, wandb_env: Any,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch
                                                                            ) -> None:
    """plan -o onto a spec (named or in a spec directory); apply's --undo-out, --journal or --backup-dir
    onto the plan or onto each other; apply -f's outputs onto its spec: each exits 1 naming both, and
    neither the spec, the plan nor W&B is touched."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "x"}])]})
    wandb_env(emu.url)
    monkeypatch.chdir(tmp_path)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: reviewed}\n"
                       "    files: {delete: ['a.ckpt']}\n")
    spec_text = s.read_text()
    for target in (s, tmp_path / "." / s.name):
        refused = cli("plan", "-f", str(s), "-o", str(target))
        assert refused.exit_code == 1 and "is a spec file" in refused.stderr, refused.output
    refused = cli("plan", "-f", str(tmp_path), "-o", str(s))
    assert refused.exit_code == 1 and "is a spec file" in refused.stderr, refused.output
    assert s.read_text() == spec_text
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    plan_bytes = plan.read_bytes()
    j, bk = str(tmp_path / "j.jsonl"), str(tmp_path / "bk")
    cases = [
        (("--undo-out", str(plan), "--no-backup"), "--undo-out", "is the plan being applied"),
        (("--journal", str(plan), "--no-backup"), "--journal", "is the plan being applied"),
        (("--backup-dir", str(plan)), "--backup-dir", "is a file"),  # click says it first
        (("--journal", j, "--undo-out", j, "--no-backup"), "--undo-out", "is also --journal"),
        (("--journal", j, "--backup-dir", j), "--backup-dir", "is also --journal"),
        (("--undo-out", bk, "--backup-dir", bk), "--backup-dir", "is also --undo-out"),
    ]
    for flags, flag, says in cases:
        refused = cli("apply", str(plan), *flags)
        assert refused.exit_code == 1, (flags, refused.output)
        message = " ".join(refused.stderr.split())
        assert flag in message and says in message, (flags, message)
        assert "Nothing was written" in message or says == "is a file"
        assert "delete it" not in message
    for flags in (("--undo-out", str(s), "--no-backup"), ("--journal", str(s), "--no-backup")):
        refused = cli("apply", "-f", str(s), "--auto-approve", *flags)
        assert refused.exit_code == 1 and "is a spec file" in refused.stderr, (flags, refused.output)
    assert plan.read_bytes() == plan_bytes and s.read_text() == spec_text
    assert not (tmp_path / "j.jsonl").exists() and not (tmp_path / "bk").exists()
    assert writes(emu) == []


def test_a_journal_in_a_missing_directory_and_an_uncreatable_backup_dir_are_clear_errors(
        emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """--journal in a directory that does not exist is refused like --undo-out (the directory is not
    created); --backup-dir /proc/bk (creatable by no one, not even root) exits 1, not 3."""
    emu = emulator(seed={"runs": [run_with([{"name": "a.ckpt", "content": "x"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    files: {delete: ['a.ckpt']}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    missing = tmp_path / "missing"
    refused = cli("apply", str(plan), "--no-backup", "--journal", str(missing / "j.jsonl"))
    assert refused.exit_code == 1, refused.output
    assert f"the directory {missing} does not exist" in refused.stderr and not missing.exists()
    refused = cli("apply", str(plan), "--backup-dir", "/proc/bk")
    assert refused.exit_code == 1, refused.output
    assert "--backup-dir /proc/bk cannot be created" in refused.stderr
    assert not Path("/proc/bk").exists()
    assert writes(emu) == []


# --------------------------------------------------------------------------- item 7: self-contradicting plans


def _delete_kept(data: dict[str, Any]) -> None:
    run = data["runs"][0]
    [kept] = run["kept"]
    delete = next(c for c in run["changes"] if c["op"] == "delete")
    entry = {k: v for k, v in kept.items() if k != "reasons"}
    run["changes"].append({**delete, "key": [entry["name"]], "before": entry, "file": entry})
    data["summary"]["files_to_delete"] += 1
    data["summary"]["bytes_to_free"] += entry["size"]


def _delete_twice(data: dict[str, Any]) -> None:
    run = data["runs"][0]
    delete = next(c for c in run["changes"] if c["op"] == "delete")
    run["changes"].append(dict(delete))
    data["summary"]["files_to_delete"] += 1
    data["summary"]["bytes_to_free"] += delete["file"]["size"]


def _tag_added_and_removed(data: dict[str, Any]) -> None:
    run = data["runs"][0]
    add = next(c for c in run["changes"] if c["kind"] == "tags")
    run["changes"].append({**add, "op": "remove", "before": add["after"], "after": None})
    data["summary"]["attribute_changes"] += 1


@pytest.mark.parametrize("tamper", [_delete_kept, _delete_twice, _tag_added_and_removed],
                         ids=["deletes a kept file", "deletes a file twice", "adds and removes a tag"])
def test_a_plan_that_contradicts_itself_is_refused_even_with_its_digest_recomputed(
        emulator: Start, wandb_env: Any, tmp_path: Path, tamper: Any) -> None:
    """A plan edited so that it contradicts itself, with its counts and content digest recomputed: apply
    exits 1 naming the contradiction, and nothing is written (model-best.ckpt, kept by the spec, stays)."""
    emu = emulator(seed={"runs": [run_with([{"name": "x.ckpt", "content": "xx"},
                                            {"name": "model-best.ckpt", "content": "the best"}])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    add_tags: [pruned]\n"
                       "    files: {delete: ['*.ckpt'], keep: ['model-best.ckpt']}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    retamper(plan, tamper)
    refused = cli("apply", str(plan), "--no-backup")
    assert refused.exit_code == 1, refused.output
    assert "not a valid reconcile plan" in refused.stderr and "runs[0]" in refused.stderr, refused.stderr
    assert writes(emu) == []
    assert sorted(f.name for f in api(emu.url).run("acme/vision/r1").files()) == \
        ["model-best.ckpt", "notes.txt", "x.ckpt"]


# --------------------------------------------------------------------------- item 14: deeply nested JSON


@pytest.mark.parametrize("depth", [300, 900, 50_000])
def test_a_plan_nested_too_deeply_is_refused_naming_the_file(emulator: Start, wandb_env: Any, tmp_path: Path,
                                                             depth: int) -> None:
    """A plan whose change's `after` nests ``depth`` lists deep, and a file of 100,000 nested lists: show
    and apply exit 1 naming the file (never RecursionError, exit 3); nothing written. 300 parses but is
    refused before anything walks it (or checks the digest); 50,000 is beyond what the parser recurses to."""
    emu = emulator(seed={"runs": [run_with([])]})
    wandb_env(emu.url)
    s = spec(tmp_path, "  - name: n\n    match: {ids: [r1]}\n    set: {notes: reviewed}\n")
    plan = tmp_path / "plan.json"
    ok("plan", "-f", str(s), "-o", str(plan))
    data = read_json(plan)
    data["runs"][0]["changes"][0]["after"] = json.loads("[" * depth + "]" * depth) if depth < 900 else None
    plan.write_text(json.dumps(data), encoding="utf-8")
    if depth >= 900:  # past json.dumps: write the nesting as text
        text = plan.read_text(encoding="utf-8")
        plan.write_text(text.replace('"after": null', '"after": ' + "[" * depth + "]" * depth, 1),
                        encoding="utf-8")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000, encoding="utf-8")
    for args in (("show", str(plan)), ("apply", str(plan)), ("show", str(deep)), ("apply", str(deep))):
        refused = cli(*args)
        assert refused.exit_code == 1, (args, refused.output)
        target = args[1]
        message = " ".join(refused.stderr.split())
        assert f"plan file {target}" in message and "RecursionError" not in message, (args, message)
        assert "nested more than" in message or (target == str(deep) and "not valid JSON" in message), message
    assert writes(emu) == []


# --------------------------------------------------------------------------- item 15: delete everything


@pytest.mark.parametrize("globs", [["?*"], ["**/?*"], ["[!x]*"], ["*.ckpt", "*.log", "*.txt"]])
def test_wildcards_that_empty_a_named_run_need_allow_delete_all(emulator: Start, wandb_env: Any,
                                                                tmp_path: Path, globs: list[str]) -> None:
    """match {ids: [r1]} with delete globs that hold a wildcard and would delete every file of r1 is
    refused (plan exits 1, nothing saved) unless allow_delete_all; naming every file literally is
    explicit and plans."""
    files = [{"name": "a.ckpt", "content": "a"}, {"name": "b.log", "content": "b"}]
    emu = emulator(seed={"runs": [run_with(files)]})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    wild = spec(tmp_path, f"  - name: wipe\n    match: {{ids: [r1]}}\n"
                          f"    files: {{delete: {json.dumps(globs)}}}\n")
    refused = cli("plan", "-f", str(wild), "-o", str(plan))
    assert refused.exit_code == 1, refused.output
    assert "rule 'wipe' would delete every file (3)" in refused.stdout + refused.stderr
    assert not plan.exists()
    allowed = spec(tmp_path, f"  - name: wipe\n    match: {{ids: [r1]}}\n"
                             f"    files: {{delete: {json.dumps(globs)}, allow_delete_all: true}}\n")
    ok("plan", "-f", str(allowed), "-o", str(plan))
    literal = spec(tmp_path, "  - name: wipe\n    match: {ids: [r1]}\n"
                             "    files: {delete: [a.ckpt, b.log, notes.txt]}\n")
    ok("plan", "-f", str(literal), "-o", str(plan))
    deleted = sorted(c["key"][0] for c in read_json(plan)["runs"][0]["changes"])
    assert deleted == ["a.ckpt", "b.log", "notes.txt"]
    assert writes(emu) == []
