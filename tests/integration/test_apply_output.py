"""What `reconcile apply` tells a person: each stale run once, naming the fields that drifted, and on a
terminal a live bar (rich) counting runs, files and bytes. Real CLI, real wandb client, the emulator on
loopback; the terminal is a pseudo-terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner

from reconcile.cli import main
from tests.conftest import TEST_API_KEY
from tests.terminal import run_on_terminal

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
target: {entity: acme, project: bulk}
rules:
  - name: audit
    match: {all: true}
    set: {notes: "lr {config.lr}"}
    add_tags: [audited]
    files:
      delete: ["*.ckpt"]
"""
MiB = 1024 * 1024
UPDATED = "2026-01-01T01:00:00Z"
SUMMARY = "Apply complete: 2 runs changed, 4 files deleted (4 MiB freed), 1 stale, 0 failed."
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _runs(count: int) -> list[dict[str, Any]]:
    return [{"entity": "acme", "project": "bulk", "id": f"b{i:03d}", "name": f"bulk-{i}", "state": "finished",
             "created_at": f"2026-01-01T00:{i:02d}:00Z", "config": {"lr": 0.1}, "summary": {}, "tags": ["t"],
             "files": [*({"name": f"step-{j}.ckpt", "size": MiB, "updated_at": UPDATED} for j in range(2)),
                       {"name": "best.pt", "size": 10, "updated_at": UPDATED}]}
            for i in range(count)]


def _plan_runs(tmp_path: Path, emulator: Any, wandb_env: Any, count: int) -> tuple[Any, Path, dict[str, str]]:
    """``count`` runs seeded and planned (tags and two files each): the emulator, the plan, the env."""
    emu = emulator(seed={"runs": _runs(count)})
    env = wandb_env(emu.url)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    plan = tmp_path / "plan.json"
    planned = CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)], catch_exceptions=False)
    assert planned.exit_code == 0, planned.output
    return emu, plan, env


def _planned(tmp_path: Path, emulator: Any, wandb_env: Any) -> tuple[Any, Path, dict[str, str]]:
    """Three runs planned; then b001's tags and config.lr edited by someone else."""
    emu, plan, env = _plan_runs(tmp_path, emulator, wandb_env, 3)
    run = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY).run("acme/bulk/b001")
    run.tags = ["someone-else"]
    run.config["lr"] = 0.5
    run.update()
    return emu, plan, env


def test_a_stale_run_is_reported_once_naming_what_drifted(tmp_path: Path, emulator: Any,
                                                          wandb_env: Any) -> None:
    """Without a terminal: one line for the stale run, naming config.lr and tags; no log line beside it."""
    _, plan, _ = _planned(tmp_path, emulator, wandb_env)
    result = CliRunner().invoke(main, ["apply", str(plan), "--no-backup"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if "b001" in line]
    assert lines == ["stale: acme/bulk/b001: config.lr, tags changed since the plan; nothing was written "
                     "(plan again)"], result.stderr
    assert SUMMARY in result.stdout


def test_json_logs_report_a_stale_run_as_one_event_with_its_fields(tmp_path: Path, emulator: Any,
                                                                    wandb_env: Any) -> None:
    """With --log-format json the stale run is exactly one event, its drifted fields a list."""
    _, plan, _ = _planned(tmp_path, emulator, wandb_env)
    args = ["apply", str(plan), "--log-format", "json", "--no-backup"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    about = [e for e in events if "b001" in json.dumps(e)]
    assert [(e["event"], e["fields"]) for e in about] == [("run_stale", ["config.lr", "tags"])], about


def test_progress_bar_on_a_terminal(tmp_path: Path, emulator: Any, wandb_env: Any) -> None:
    """On a terminal: a live bar counting runs, files and bytes, the stale run once above it, no log lines."""
    _, plan, env = _planned(tmp_path, emulator, wandb_env)
    args = ["apply", str(plan), "--no-backup"]
    code, screen = run_on_terminal(args, env=env, columns=160)
    text = ANSI.sub("", screen)
    assert code == 1, text
    assert text.count("stale: acme/bulk/b001") == 1, text
    assert "run_stale" not in text
    final = [line for line in re.split(r"[\r\n]", text) if line.startswith("Applying")][-1]
    assert re.search(r"3/3 runs\s+4/6 files deleted, 4 MiB of 6 MiB freed", final), final
    assert re.search(r"ETA\s+0:00:00", final), final
    assert SUMMARY in text


def test_the_bar_counts_runs_as_their_writes_finish_with_an_eta(tmp_path: Path, emulator: Any,
                                                                wandb_env: Any) -> None:
    """On a terminal, an apply of 20 slow runs: the bar counts each run when its writes are done (not all
    at the end, after the batched read-back) and, while runs remain, shows an ETA from the rate seen."""
    emu, plan, env = _plan_runs(tmp_path, emulator, wandb_env, 20)
    emu.set_faults(latency_ms=250)
    args = ["apply", str(plan), "--parallelism", "2", "--no-backup"]
    code, screen = run_on_terminal(args, env=env, columns=160)
    text = ANSI.sub("", screen)
    assert code == 0, text
    shown = [(int(m.group(1)), m.group(2)) for line in re.split(r"[\r\n]", text)
             if (m := re.search(r"(\d+)/20 runs.*ETA\s+(\S+)", line))]
    during = [(done, eta) for done, eta in shown if 0 < done < 20]
    assert len({done for done, _ in during}) >= 3, shown  # counted as runs finish, not at the end
    assert any(re.fullmatch(r"\d+:\d\d:\d\d", eta) for _, eta in during), shown  # an ETA while running
    assert shown[-1][0] == 20, shown
