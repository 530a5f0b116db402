"""A tiny run of ``benchmarks/run.py`` (loop vs reconcile on the emulator), so the harness never rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import fixture
from benchmarks.run import compare
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--latency-ms", "0", "--workdir", str(tmp_path),
         *args],
        capture_output=True, text=True, timeout=600, env=dict(os.environ), cwd=REPO, check=False)


def test_benchmark_compare_identical_end_states(tmp_path: Path) -> None:
    """20 runs x 12 files: all three ways finish, reach the same end state, and the table is printed."""
    result = _bench(tmp_path, "--runs", "20", "--files", "12")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "end states identical: yes" in out
    assert "wall s" in out
    assert "req/changed run*" in out
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"reconcile", "loop", "threads"} <= rows
    assert "loop / reconcile" in out and "threads / reconcile" in out
    assert "(reconcile, threads, loop)" in out
    # Finished runs (16 of 20) change; checkpoints beyond the newest two and all media were deleted.
    assert "16 runs changed" in out
    assert "deleteFiles" in out


def test_benchmark_detects_different_end_states(tmp_path: Path) -> None:
    """The end-state comparison is not vacuous: end states of runs that differ are reported."""
    data = fixture.generate(3, 4)
    fixture.seed_db(data, tmp_path / "a.sqlite")
    data["runs"][1]["tags"] = ["changed"]
    fixture.seed_db(data, tmp_path / "b.sqlite")
    diffs = compare(tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    assert diffs == ["r0000001 tags: ['baseline'] != ['changed']"]


def test_benchmark_plan_only_runs_no_apply(tmp_path: Path) -> None:
    """`--only reconcile --plan-only` plans (a saved plan, its peak RSS) and applies nothing; without
    `--only reconcile` it is refused."""
    result = _bench(tmp_path, "--runs", "6", "--files", "4", "--only", "reconcile", "--plan-only")
    assert result.returncode == 0, result.stderr[-3000:]
    [steps] = [line for line in result.stdout.splitlines() if line.startswith("reconcile: plan ")]
    assert "MiB; listing pages" in steps and "apply" not in steps
    assert "0 runs changed" in result.stdout
    assert (tmp_path / "plan.json").exists()
    refused = _bench(tmp_path, "--runs", "6", "--files", "4", "--plan-only")
    assert refused.returncode == 2 and "--plan-only needs --only reconcile" in refused.stderr
