"""Crash-resume: SIGKILL a 300-run apply at 10 seeded-random points, apply again after each kill, and
prove the end state equals a clean apply with nothing written twice and nothing written after a stale
report. The seed is printed on failure so a failing schedule reproduces."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconcile.apply.backup import file_digests
from reconcile.cli import main
from tests.reliability.conftest import record, spawn
from tests.reliability.fleet import SPEC, deleted_files, fleet, state, writes_per_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 8
RUNS = 300
FILE_RUNS = RUNS // 20  # fleet(): every 20th run has three deletable checkpoints
WRITES = RUNS + FILE_RUNS  # one UpsertBucket per run, one deleteFiles per run with checkpoints
KILLS = 10


def kill_schedule(rng: random.Random) -> list[tuple[str, float]]:
    """Ten kill points in a seeded order: eight after K more writes than the emulator had seen when
    that apply started, two at a delay after start (mid start-up or mid first read)."""
    points: list[tuple[str, float]] = [("mutations", float(rng.randint(1, 30))) for _ in range(KILLS - 2)]
    for _ in range(2):
        points.insert(rng.randrange(len(points) + 1), ("delay", rng.uniform(0.3, 1.5)))
    return points


def test_crash_resume_sigkill_at_ten_points_converges_to_clean_apply(  # noqa: PLR0915 - one scenario
        emulator: Callable[..., Any], subprocess_env: Any, tmp_path: Path) -> None:
    """Ten SIGKILLs at seeded points, a resume after each: same state as a clean apply, every run written
    once, every file deleted once, no stale report, and planning again shows no changes."""
    seed = fleet(RUNS)
    emu = emulator(seed=seed)
    env = subprocess_env(emu.url)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    plan = tmp_path / "plan.json"
    planned = CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)], catch_exceptions=False)
    assert planned.exit_code == 0, planned.output
    assert f"Plan: {RUNS} runs to change" in planned.stdout
    emu.set_faults(latency_ms=3)  # spreads the writes over a few seconds so kills land mid-apply
    backups = tmp_path / "backups"
    rng = random.Random(SEED)
    kills: list[tuple[str, float, int]] = []
    for mode, point in kill_schedule(rng):
        proc = spawn("apply", str(plan), "--backup-dir", str(backups), env=env)
        started, seen = time.monotonic(), len(emu.mutations())
        while proc.poll() is None and time.monotonic() - started < 60:
            if mode == "delay" and time.monotonic() - started >= point:
                break
            if mode == "mutations" and len(emu.mutations()) >= seen + point:
                break
            time.sleep(0.015)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append((mode, point, len(emu.mutations())))
        proc.wait(timeout=10)
    emu.set_faults(latency_ms=0)
    print(f"seed {SEED}: killed at (mode, point, mutations seen) {kills}")
    assert len(kills) >= KILLS - 1, f"apply finished before most kill points (seed {SEED}): {kills}"
    final = CliRunner().invoke(main, ["apply", str(plan), "--backup-dir", str(backups)],
                               catch_exceptions=False)
    assert final.exit_code == 0, final.output
    assert f"Apply complete: {RUNS} runs changed, {FILE_RUNS * 3} files deleted" in final.stdout
    record(kills=len(kills))

    mutations = emu.mutations()
    per_run = writes_per_run(mutations)
    assert len(per_run) == RUNS
    assert set(per_run.values()) == {1}, [r for r, n in per_run.items() if n > 1]
    deletions = deleted_files(mutations)
    assert len(deletions) == FILE_RUNS * 3
    assert set(deletions.values()) == {1}
    # Every deleted file has a backup of its full size whose bytes hash as recorded: nothing lost.
    manifest = [json.loads(line) for f in backups.glob("*/manifest.jsonl")
                for line in f.read_text().splitlines()]
    backed = {(m["run"], m["name"]): m for m in manifest}
    assert set(deletions) <= set(backed)
    lost = 0
    for key in deletions:
        copy = Path(backed[key]["path"])
        lost += backed[key]["size"] - (copy.stat().st_size if copy.exists() else 0)
        assert file_digests(copy)[1] == backed[key]["sha256"]
    assert lost == 0
    record(bytes_lost=lost)
    journal = [json.loads(line) for line in (tmp_path / "plan.journal.jsonl").read_text().splitlines()
               if line.strip().endswith("}")]
    assert not [r for r in journal if r.get("phase") == "stale"]

    clean = emulator(seed=seed)
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    subprocess_env(clean.url)  # the in-process CLI below now talks to the clean copy
    clean_plan = clean_dir / "plan.json"
    assert CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(clean_plan)]).exit_code == 0
    assert CliRunner().invoke(main, ["apply", str(clean_plan), "--no-backup"]).exit_code == 0
    assert state(emu.url) == state(clean.url)

    subprocess_env(emu.url)  # back to the killed-and-resumed emulator
    again = CliRunner().invoke(main, ["plan", "-f", str(spec), "--detailed-exitcode"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
