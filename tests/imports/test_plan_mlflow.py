"""`reconcile plan` of an MLflow import: a real MLflow server and the emulator, both on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import main
from tests.imports.conftest import MlflowRun, log_run
from tests.imports.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

STATUSES = ["FINISHED"] * 14 + ["FAILED"] * 3 + ["KILLED", "RUNNING", "RUNNING"]


@pytest.fixture(scope="module")
def twenty(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> list[MlflowRun]:
    """20 runs: params, metric histories, tags, a note on some, artifacts; failed, killed and running ones."""
    tmp = tmp_path_factory.mktemp("artifacts")
    return [log_run(mlflow_server.uri, "plan-churn", i, tmp, status=status, steps=6 + i % 3,
                    note=f"note {i}" if i % 4 == 0 else None)
            for i, status in enumerate(STATUSES)]


@pytest.fixture
def spec(tmp_path: Path, mlflow_server: MlflowServer) -> Path:
    path = tmp_path / "import.yaml"
    path.write_text("version: 1\ntarget: {entity: acme, project: churn}\nimports:\n"
                    "  - name: churn-from-mlflow\n    from:\n      mlflow:\n"
                    f"        tracking_uri: {mlflow_server.uri}\n        experiments: [plan-churn]\n")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def imported_seed(run: MlflowRun, **override: Any) -> dict[str, Any]:
    """The destination run as a complete import of ``run`` leaves it (emulator fixture form)."""
    steps = sorted({s for points in run.metrics.values() for s, _, _ in points})
    states = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}
    seed = {
        "entity": "acme", "project": "churn", "id": run.run_id, "name": run.name,
        "state": states[run.status], "created_at": "2026-01-01T00:00:00Z",
        "config": dict(run.params),
        "summary": {**{k: points[-1][2] for k, points in run.metrics.items()}, "_step": steps[-1]},
        "tags": sorted(f"{k}:{v}" if v else k for k, v in run.tags.items() if not k.startswith("mlflow.")),
        "group": run.experiment, "notes": run.note or "",
        "files": [{"name": name, "size": len(data), "updated_at": "2026-01-01T00:00:00Z"}
                  for name, data in run.artifacts.items()],
    }
    seed.update(override)
    return seed


@pytest.fixture
def destination(emulator: Any, wandb_env: Any) -> Any:
    def start(runs: list[dict[str, Any]]) -> Any:
        handle = emulator(seed={"runs": runs})
        wandb_env(handle.url)
        return handle

    return start


def test_plan_shows_a_creation_per_mlflow_run(
    twenty: list[MlflowRun], spec: Path, destination: Any, tmp_path: Path
) -> None:
    handle = destination([])
    out = tmp_path / "plan.json"
    result = invoke("plan", "-f", str(spec), "-o", str(out), "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    for run in twenty:
        assert f'# acme/churn/{run.run_id} "{run.name}" will be created' in result.output
    summary = "Plan: 20 runs to create, 0 runs to change (0 attribute changes), 40 files to upload"
    assert summary in result.output
    plan = json.loads(out.read_text())
    assert [r["action"] for r in plan["runs"]] == ["create"] * 20
    assert plan["summary"]["runs_to_create"] == 20
    by_id = {r["path"].split("/")[2]: r for r in plan["runs"]}
    for run in twenty:
        changes = {(c["kind"], tuple(c["key"])): c["after"] for c in by_id[run.run_id]["changes"]}
        assert {k[0] for k, _ in run.params.items()} and all(
            changes[("config", (k,))] == v for k, v in run.params.items())
        steps = sorted({s for points in run.metrics.values() for s, _, _ in points})
        assert changes[("history", ())] == {"rows": len(steps), "first_step": 0, "last_step": steps[-1],
                                            "metrics": ["auc", "loss"]}
        assert changes[("notes", ())] == run.note if run.note else ("notes", ()) not in changes
    assert handle.mutations() == []  # planning never writes


def test_an_imported_run_plans_nothing_and_a_changed_one_only_its_difference(
    twenty: list[MlflowRun], spec: Path, destination: Any, tmp_path: Path
) -> None:
    first, second = twenty[0], twenty[1]
    seeds = [imported_seed(first), imported_seed(second, config={**second.params, "lr": "stale"},
                                                  summary={"loss": 9.0, "_step": 2})]
    destination(seeds)
    out = tmp_path / "plan.json"
    result = invoke("plan", "-f", str(spec), "-o", str(out), "--format", "json")
    assert result.exit_code == 0, result.output
    runs = {r["path"].split("/")[2]: r for r in json.loads(out.read_text())["runs"]}
    assert first.run_id not in runs  # in sync: no change
    update = runs[second.run_id]
    assert update["action"] == "update"
    got = {(c["kind"], tuple(c["key"])): (c["before"], c["after"]) for c in update["changes"]}
    steps = sorted({s for points in second.metrics.values() for s, _, _ in points})
    assert got == {
        ("config", ("lr",)): ("stale", second.params["lr"]),
        ("summary", ("loss",)): (9.0, second.metrics["loss"][-1][2]),
        ("summary", ("auc",)): (None, second.metrics["auc"][-1][2]),
        ("history", ()): (2, {"rows": len([s for s in steps if s > 2]), "first_step": 3,
                              "last_step": steps[-1], "metrics": ["auc", "loss"]}),
    }
    assert sum(r["action"] == "create" for r in runs.values()) == 18


def test_target_plans_only_the_import_runs_it_names(
    twenty: list[MlflowRun], spec: Path, destination: Any, tmp_path: Path
) -> None:
    """--target ENTITY/PROJECT/RUN_ID selects import creations: only the runs named are planned; a run no
    import selects, or a project no rule or import targets, is an error naming it."""
    destination([])
    first, second = twenty[0].run_id, twenty[5].run_id
    out = tmp_path / "plan.json"
    result = invoke("plan", "-f", str(spec), "-o", str(out), "--target", f"acme/churn/{first}",
                    "--target", f"acme/churn/{second}")
    assert result.exit_code == 0, result.output
    planned = [run["path"] for run in json.loads(out.read_text())["runs"]]
    assert sorted(planned) == sorted([f"acme/churn/{first}", f"acme/churn/{second}"])
    assert "Plan: 2 runs to create" in result.output

    result = invoke("plan", "-f", str(spec), "--target", "acme/churn")  # the whole project: every run
    assert "Plan: 20 runs to create" in result.output, result.output

    result = invoke("plan", "-f", str(spec), "--target", "acme/churn/nosuchrun")
    assert result.exit_code == 1
    assert ("--target acme/churn/nosuchrun: no such run is selected by the spec's rules or imports"
            in result.output)
    result = invoke("plan", "-f", str(spec), "--target", "acme/elsewhere/x")
    assert result.exit_code == 1
    assert "--target acme/elsewhere: no rule or import of the spec targets that project" in result.output
