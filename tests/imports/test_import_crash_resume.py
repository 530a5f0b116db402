"""SIGKILL an MLflow import's apply at seeded points, apply again after each kill: the end state is the
one a clean import gives (compared with a second emulator that imported without interruption), with
every history row and file exactly once."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner

from reconcile.cli import main
from tests.conftest import TEST_API_KEY
from tests.imports.conftest import MlflowRun, log_run
from tests.imports.mlflow_server import MlflowServer
from tests.reliability.conftest import record, spawn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 17
RUNS = 6
STEPS = 2400  # three file_stream requests of history per run: kills land between and inside them
KILLS = 6
EXPERIMENT = "crash-churn"


@pytest.fixture(scope="module")
def runs(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> list[MlflowRun]:
    tmp = tmp_path_factory.mktemp("artifacts")
    return [log_run(mlflow_server.uri, EXPERIMENT, i, tmp, steps=STEPS, note=f"note {i}",
                    status="FAILED" if i == 2 else "FINISHED") for i in range(RUNS)]


@pytest.fixture(autouse=True)
def _teardown_wandb() -> Any:
    yield
    wandb.teardown()


def destination_state(url: str, run_ids: list[str], tmp: Path) -> dict[str, Any]:
    """What the public API reads of each run: fields, every history row, every file's bytes."""
    api = wandb.Api(overrides={"base_url": url}, api_key=TEST_API_KEY)
    out: dict[str, Any] = {}
    for run_id in run_ids:
        run = api.run(f"acme/churn/{run_id}")
        files = {}
        for file in run.files():
            root = tmp / url.rsplit(":", 1)[-1] / run_id
            file.download(root=str(root), replace=True).close()
            files[file.name] = (root / file.name).read_bytes()
        out[run_id] = {
            "name": run.name, "state": run.state, "group": run.group, "notes": run.notes,
            "tags": sorted(run.tags),
            "config": {k: v for k, v in run.config.items() if not k.startswith("_")},
            "summary": dict(run.summary_metrics), "history": list(run.scan_history()),
            "history_lines": run.historyLineCount, "files": files,
        }
    return out


def partial_histories(mutations: list[dict[str, Any]]) -> int:
    """Runs whose history the file_stream writes so far cover only part of the rows."""
    lines: dict[str, int] = {}
    for m in mutations:
        if m["operation"] == "file_stream" and "history" in m["fields"]:
            offset, count = m["fields"]["history"]
            lines[m["run"]] = max(lines.get(m["run"], 0), offset + count)
    return sum(1 for n in lines.values() if 0 < n < STEPS)


def test_a_killed_import_resumes_to_the_state_of_a_clean_import(
        runs: list[MlflowRun], mlflow_server: MlflowServer, emulator: Any, wandb_env: Any,
        tmp_path: Path) -> None:
    spec = tmp_path / "import.yaml"
    spec.write_text("version: 1\ntarget: {entity: acme, project: churn}\nimports:\n"
                    "  - name: churn-from-mlflow\n    from:\n      mlflow:\n"
                    f"        tracking_uri: {mlflow_server.uri}\n        experiments: [{EXPERIMENT}]\n")
    ids = [r.run_id for r in runs]

    clean = emulator(seed={"runs": []})
    wandb_env(clean.url)
    plan = tmp_path / "clean.json"
    assert CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)]).exit_code == 0
    done = CliRunner().invoke(main, ["apply", str(plan)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    expected = destination_state(clean.url, ids, tmp_path / "clean")

    emu = emulator(seed={"runs": []})
    env = wandb_env(emu.url)
    plan = tmp_path / "plan.json"
    planned = CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)], catch_exceptions=False)
    assert f"Plan: {RUNS} runs to create" in planned.stdout, planned.output
    emu.set_faults(latency_ms=40)  # spreads the writes so the kills land mid-apply
    rng = random.Random(SEED)
    kills: list[tuple[int, int]] = []
    mid_history = 0  # kills that left some run with only part of its history
    for _ in range(KILLS):
        point = rng.randint(1, 8)
        proc = spawn("apply", str(plan), env=env)
        started, seen = time.monotonic(), len(emu.mutations())
        while proc.poll() is None and time.monotonic() - started < 120:
            if len(emu.mutations()) >= seen + point:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            mutations = emu.mutations()
            kills.append((point, len(mutations)))
            mid_history += partial_histories(mutations) > 0
        proc.wait(timeout=10)
    emu.set_faults(latency_ms=0)
    print(f"seed {SEED}: killed at (point, mutations seen) {kills}")
    assert len(kills) >= KILLS - 1, f"apply finished before most kill points (seed {SEED}): {kills}"
    assert mid_history >= 1, f"no kill landed inside a run's history (seed {SEED}): {kills}"
    final = CliRunner().invoke(main, ["apply", str(plan)], catch_exceptions=False)
    assert final.exit_code == 0, final.output
    assert "0 stale, 0 failed" in final.stdout
    record(kills=len(kills))

    got = destination_state(emu.url, ids, tmp_path / "resumed")
    for run_id in ids:
        steps = [row["_step"] for row in got[run_id]["history"]]
        assert steps == sorted(set(steps)), f"{run_id}: a history row was written twice"
        assert got[run_id] == expected[run_id], run_id
    again = CliRunner().invoke(main, ["plan", "-f", str(spec)], catch_exceptions=False)
    assert "No changes" in again.stdout, again.output
