"""``reconcile apply`` against the emulator, through the real CLI and the real wandb client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner, Result

from reconcile.cli import main
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

Start = Callable[..., Any]

RUN_ONE = {
    "entity": "acme", "project": "vision", "id": "r1", "name": "brave-1", "state": "finished",
    "created_at": "2026-01-02T03:04:05Z", "config": {"lr": 0.1, "optimizer": {"name": "sgd"}},
    "summary": {"acc": 0.91, "loss": 0.2}, "tags": ["wip"], "group": "g1", "job_type": "train", "notes": "",
    "files": [{"name": "ckpt-1.pt", "size": 1000, "updated_at": "2026-01-02T04:00:00Z"},
              {"name": "ckpt/2.pt", "size": 2000, "updated_at": "2026-01-02T05:00:00Z"},
              {"name": "best.pt", "size": 300, "updated_at": "2026-01-02T05:00:00Z"}],
}

EVERY_KIND = """
version: 1
target: {entity: acme, project: vision}
rules:
  - name: every-kind
    match: {ids: [r1]}
    set:
      config: {optimizer: {lr: 0.5}, lr: 0.2}
      summary: {best: 0.93}
      name: "{config.optimizer.name}-run"
      notes: reviewed
      group: baselines
      job_type: eval
    add_tags: [baseline]
    remove_tags: [wip]
    unset: {summary: [loss]}
    rename: {summary: {acc: val/acc}}
    files:
      delete: ["*.pt", "ckpt/**"]
      keep: ["best.pt"]
"""

BULK = """
version: 1
target: {entity: acme, project: bulk}
rules:
  - name: audit
    match: {all: true}
    set:
      config: {audit: {reviewed: true}}
      summary: {checked: 1}
    add_tags: [audited]
"""


def bulk_runs(count: int) -> list[dict[str, Any]]:
    """``count`` finished runs b000.. in acme/bulk."""
    return [{"entity": "acme", "project": "bulk", "id": f"b{i:03d}", "name": f"bulk-{i}", "state": "finished",
             "created_at": f"2026-01-01T0{i // 60 % 10}:{i % 60:02d}:00Z", "config": {"lr": i / 1000},
             "summary": {"acc": i}, "tags": ["t"]} for i in range(count)]


def cli(*args: str) -> Result:
    """Run the reconcile CLI in-process (no TTY: apply -f needs --auto-approve)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def api(url: str) -> Any:
    """A fresh public-API client for read-back."""
    return wandb.Api(overrides={"base_url": url}, api_key=TEST_API_KEY)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def upserts_per_run(emu: Any) -> Counter[str]:
    """How many UpsertBucket writes the emulator applied per run."""
    return Counter(m["run"] for m in emu.mutations() if m["operation"] == "UpsertBucket")


def reapply_writes_each_run_once(emu: Any, plan: Path, runs: int) -> None:
    """A second apply of ``plan`` finishes it: ``runs`` runs changed in all, each written exactly once."""
    rerun = cli("apply", str(plan))
    assert rerun.exit_code == 0, rerun.output
    assert f"Apply complete: {runs} runs changed" in rerun.stdout
    writes = upserts_per_run(emu)
    assert len(writes) == runs
    assert set(writes.values()) == {1}


def test_apply_every_change_kind_reads_back_through_wandb(emulator: Start, wandb_env: Any,
                                                          tmp_path: Path) -> None:
    """Plan, apply, read back with wandb.Api, plan again: no changes (exit 0 with --detailed-exitcode)."""
    emu = emulator(seed={"runs": [RUN_ONE]})
    wandb_env(emu.url)
    spec = write(tmp_path / "spec.yaml", EVERY_KIND)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    applied = cli("apply", str(plan), "--no-backup")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 1 run changed, 2 files deleted (2.93 KiB freed), 0 stale, 0 failed." \
        in applied.stdout
    run = api(emu.url).run("acme/vision/r1")
    assert run.config["lr"] == 0.2
    assert run.config["optimizer"] == {"name": "sgd", "lr": 0.5}
    assert run.summary_metrics == {"best": 0.93, "val/acc": 0.91}
    assert sorted(run.tags) == ["baseline"]
    assert (run.name, run.notes, run.group, run.job_type) == ("sgd-run", "reviewed", "baselines", "eval")
    assert sorted(f.name for f in run.files()) == ["best.pt"]
    writes = [m for m in emu.mutations() if m["operation"] in ("UpsertBucket", "deleteFiles")]
    assert [m["operation"] for m in writes] == ["UpsertBucket", "deleteFiles"]  # one request each
    assert sorted(writes[1]["fields"]["files"]) == ["ckpt-1.pt", "ckpt/2.pt"]
    again = cli("plan", "-f", str(spec), "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes." in again.stdout


def test_apply_run_edited_after_plan_is_stale_and_untouched(emulator: Start, wandb_env: Any,
                                                             tmp_path: Path) -> None:
    """A run edited through wandb.Api between plan and apply gets no write; the others are applied."""
    emu = emulator(seed={"runs": bulk_runs(3)})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(write(tmp_path / "s.yaml", BULK)), "-o", str(plan)).exit_code == 0
    edited = api(emu.url).run("acme/bulk/b001")
    edited.tags = ["someone-else"]
    edited.update()
    before = len(emu.mutations())
    result = cli("apply", str(plan))
    assert result.exit_code == 1
    assert "1 stale" in result.stdout
    assert "stale: acme/bulk/b001" in result.stderr
    after = emu.mutations()[before:]
    assert sorted(m["run"] for m in after) == ["acme/bulk/b000", "acme/bulk/b002"]
    reader = api(emu.url)
    assert reader.run("acme/bulk/b001").tags == ["someone-else"]
    assert "audited" in reader.run("acme/bulk/b002").tags


def test_apply_without_tty_needs_auto_approve(emulator: Start, wandb_env: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """apply -f with no terminal refuses (exit 1, says how); --auto-approve applies."""
    emu = emulator(seed={"runs": bulk_runs(2)})
    wandb_env(emu.url)
    spec = write(tmp_path / "s.yaml", BULK)
    monkeypatch.chdir(tmp_path)
    refused = cli("apply", "-f", str(spec))
    assert refused.exit_code == 1
    assert "--auto-approve" in refused.stderr
    assert not emu.mutations()
    approved = cli("apply", "-f", str(spec), "--auto-approve")
    assert approved.exit_code == 0, approved.output
    assert (tmp_path / "reconcile.plan.journal.jsonl").exists()
    assert (tmp_path / "reconcile.plan.undo.json").exists()
    assert (tmp_path / "reconcile.plan.json").exists()
    assert "Apply complete: 2 runs changed" in approved.stdout
    again = cli("apply", "reconcile.plan.json")  # the saved plan and its journal go together
    assert again.exit_code == 0, again.output
    assert "finished by an earlier apply" in again.stderr


def test_apply_backup_and_undo_round_trip(emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """--backup-dir then applying the undo plan restores deleted files byte for byte and the metadata."""
    seeded = {**RUN_ONE, "files": [{"name": "ckpt/1.pt", "content": "first checkpoint\n"},
                                   {"name": "model.pt", "content": "the model \x00 bytes"},
                                   {"name": "best.pt", "content": "best"}]}
    emu = emulator(seed={"runs": [seeded]})
    wandb_env(emu.url)
    spec = write(tmp_path / "s.yaml", """
version: 1
target: {entity: acme, project: vision}
rules:
  - name: prune
    match: {ids: [r1]}
    set: {config: {lr: 0.3}, summary: {acc: 0.5}, notes: pruned, name: pruned-1}
    add_tags: [pruned]
    remove_tags: [wip]
    files: {delete: ["**/*.pt", "*.pt"], keep: [best.pt]}
""")
    reader = api(emu.url)
    original = reader.run("acme/vision/r1")
    snapshot = (dict(original.config), dict(original.summary_metrics), sorted(original.tags), original.name,
                original.notes)
    originals = {}
    for f in original.files():
        f.download(root=str(tmp_path / "orig"), replace=True)
        originals[f.name] = (tmp_path / "orig" / f.name).read_bytes()
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    applied = cli("apply", str(plan), "--backup-dir", str(tmp_path / "backup"))
    assert applied.exit_code == 0, applied.output
    [copy] = (tmp_path / "backup").glob("*/files/acme/vision/r1/*/ckpt/1.pt")  # <apply id>/.../<name key>/..
    assert copy.read_bytes() == originals["ckpt/1.pt"]
    undo = tmp_path / "plan.undo.json"
    undone = cli("apply", str(undo))
    assert undone.exit_code == 0, undone.output
    assert "0 files deleted (0 bytes freed), 0 stale, 0 failed, 2 files restored." in undone.stdout
    reader = api(emu.url)
    restored = reader.run("acme/vision/r1")
    summary = dict(restored.summary_metrics)
    assert set(summary.pop("_reconcile")["restored_files"]) == {"ckpt/1.pt", "model.pt"}  # upload times
    assert (dict(restored.config), summary, sorted(restored.tags), restored.name,
            restored.notes) == snapshot
    for f in restored.files():
        f.download(root=str(tmp_path / "restored"), replace=True)
        assert (tmp_path / "restored" / f.name).read_bytes() == originals[f.name]
    assert sorted(f.name for f in restored.files()) == sorted(originals)


@pytest.mark.slow
def test_apply_sigkill_then_rerun_finishes_without_writing_twice(emulator: Start, wandb_env: Any,
                                                                  tmp_path: Path) -> None:
    """SIGKILL partway through a 200-run apply (its writes after the 30th held at the emulator's barrier,
    so the kill lands there whatever the machine's speed); the writes in flight at the kill land after it
    (as a server may finish a request whose client died); the re-run converges and no run is written twice."""
    seed = {"runs": bulk_runs(200)}
    emu = emulator(seed=seed)
    env = wandb_env(emu.url)
    spec = write(tmp_path / "s.yaml", BULK)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    emu.set_faults(hold="UpsertBucket", hold_after=30)
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "apply", str(plan), "--parallelism", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert emu.wait_held(timeout=90) >= 1, "apply never reached the barrier"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert sum(upserts_per_run(emu).values()) == 30
        in_flight = emu.wait_held(timeout=0)
    finally:
        emu.set_faults(hold=None)
    assert 1 <= in_flight <= 4
    assert _wait_for(lambda: sum(upserts_per_run(emu).values()) == 30 + in_flight)
    reapply_writes_each_run_once(emu, plan, 200)

    clean = emulator(seed=seed)
    wandb_env(clean.url)
    clean_plan = tmp_path / "clean.json"
    assert cli("plan", "-f", str(spec), "-o", str(clean_plan)).exit_code == 0
    assert cli("apply", str(clean_plan)).exit_code == 0
    killed_state, clean_state = api(emu.url).runs("acme/bulk"), api(clean.url).runs("acme/bulk")

    def state(runs: Any) -> dict[str, Any]:
        return {r.id: (r.config, r.summary_metrics, sorted(r.tags), r.name) for r in runs}

    assert state(killed_state) == state(clean_state)


def test_ctrl_c_during_a_held_reread_ends_apply_at_once_and_a_rerun_finishes(
        emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """Ctrl-C while the third group's staleness re-read (read one group ahead) is held at the emulator's
    barrier: "Interrupted.", exit 130 within seconds, not after the held read times out and is retried
    (nothing joins the re-read); the writes handed out before it are finished and journaled; once the
    barrier is released a second apply writes the other runs, none twice."""
    emu = emulator(seed={"runs": bulk_runs(20)})
    env = wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(write(tmp_path / "s.yaml", BULK)), "-o", str(plan)).exit_code == 0
    emu.set_faults(hold="Runs", hold_after=2)  # groups of 4: the 1st and 2nd re-reads pass, the 3rd waits
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "apply", str(plan), "--parallelism", "4", "--no-backup"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert emu.wait_held(timeout=90) == 1, "apply never reached the barrier"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            proc.wait(timeout=15)  # a bound on a hang: the held read's client timeout is 19 s, then a retry
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        to_exit = time.monotonic() - sent
    finally:
        emu.set_faults(hold=None)
    assert proc.stderr is not None
    output = proc.stderr.read()
    assert to_exit < 15, f"apply ran {to_exit:.1f} s after Ctrl-C: {output}"
    assert proc.returncode == 130, output
    assert "Interrupted." in output
    assert "Traceback" not in output, output
    assert sum(upserts_per_run(emu).values()) == 8  # the first two groups, handed out before the hold
    records = [json.loads(x) for x in (tmp_path / "plan.journal.jsonl").read_text().splitlines()]
    journaled = {r["run"] for r in records if r.get("type") == "run" and r["phase"] == "metadata_written"}
    assert journaled == set(upserts_per_run(emu))  # every write that went out is in the journal
    reapply_writes_each_run_once(emu, plan, 20)
    for run in api(emu.url).runs("acme/bulk"):
        assert run.config["audit"] == {"reviewed": True}


@pytest.mark.slow
def test_apply_under_faults_applies_or_reports_every_run(emulator: Start, wandb_env: Any,
                                                         tmp_path: Path) -> None:
    """With 20% 500s and a low rate limit, every one of 200 runs ends applied or reported; a re-run
    finishes the rest and nothing is written twice."""
    emu = emulator(seed={"runs": bulk_runs(200)})
    wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(write(tmp_path / "s.yaml", BULK)), "-o", str(plan)).exit_code == 0
    emu.set_faults(fail_rate=0.2, rate_limit=40)
    result = cli("apply", str(plan))
    assert result.exit_code in (0, 1), result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("Apply complete:"))
    numbers = [int(word) for word in line.replace(",", " ").split() if word.isdigit()]
    changed, _files, stale, failed = numbers[0], numbers[1], numbers[2], numbers[3]
    unconverged = numbers[4] if len(numbers) > 4 else 0
    assert changed + stale + failed + unconverged == 200
    assert stale == 0
    records = [json.loads(x) for x in (tmp_path / "plan.journal.jsonl").read_text().splitlines()]
    finals = {r["run"]: r["phase"] for r in records
              if r.get("type") == "run" and r["phase"] in ("done", "failed", "unconverged", "stale")}
    assert len(finals) == 200
    emu.set_faults(fail_rate=0.0, rate_limit=None)
    rerun = cli("apply", str(plan))
    assert rerun.exit_code == 0, rerun.output
    writes = upserts_per_run(emu)
    assert len(writes) == 200
    assert set(writes.values()) == {1}
    for run in api(emu.url).runs("acme/bulk"):
        assert run.config["audit"] == {"reviewed": True}
        assert "audited" in run.tags
