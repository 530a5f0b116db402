"""`reconcile apply` of an MLflow import: a real MLflow server and the emulator, both on loopback; the
real ``wandb.Api`` reads back what apply wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import graphql
import pytest
import wandb
from click.testing import CliRunner, Result

from reconcile.cli import main
from reconcile.emulator import server as emulator_server
from tests.conftest import TEST_API_KEY
from tests.imports.conftest import MlflowRun, log_run
from tests.imports.mlflow_server import MlflowServer
from tests.unit.test_schema_subset import assert_default_shape, full_emulator_schema
from tests.wandb_vocabulary import client_usage, outside, usage

pytestmark = pytest.mark.integration

STATUSES = ["FINISHED"] * 14 + ["FAILED"] * 3 + ["KILLED", "RUNNING", "RUNNING"]
STATES = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}
EXPERIMENT = "apply-churn"


@pytest.fixture(scope="module")
def twenty(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> list[MlflowRun]:
    """20 runs: params, metric histories, tags, a note on some, artifacts; failed, killed and running ones."""
    tmp = tmp_path_factory.mktemp("artifacts")
    return [log_run(mlflow_server.uri, EXPERIMENT, i, tmp, status=status, steps=6 + i % 3,
                    note=f"note {i}" if i % 4 == 0 else None)
            for i, status in enumerate(STATUSES)]


@pytest.fixture(autouse=True)
def _teardown_wandb() -> Any:
    yield
    wandb.teardown()  # the wandb-core service the Api reads started


def write_spec(path: Path, uri: str) -> Path:
    path.write_text("version: 1\ntarget: {entity: acme, project: churn}\nimports:\n"
                    "  - name: churn-from-mlflow\n    from:\n      mlflow:\n"
                    f"        tracking_uri: {uri}\n        experiments: [{EXPERIMENT}]\n")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def expected_rows(run: MlflowRun) -> list[dict[str, Any]]:
    """History rows by step: each metric's value at that step, ``_timestamp`` the step's latest time."""
    by_step: dict[int, dict[str, Any]] = {}
    for key, points in run.metrics.items():
        for step, stamp, value in points:
            row = by_step.setdefault(step, {"_step": step, "_timestamp": 0.0})
            row[key] = value
            row["_timestamp"] = max(row["_timestamp"], stamp / 1000.0)
    return [by_step[s] for s in sorted(by_step)]


def assert_imported(api: wandb.Api, run: MlflowRun, tmp: Path) -> None:
    """Every mapped field, every history row and every artifact's bytes, as the public API reads them."""
    got = api.run(f"acme/churn/{run.run_id}")
    rows = expected_rows(run)
    assert got.name == run.name
    assert got.state == STATES[run.status]
    assert got.group == EXPERIMENT
    assert (got.notes or None) == run.note
    assert {k: v for k, v in got.config.items() if not k.startswith("_")} == run.params
    assert sorted(got.tags) == sorted(f"{k}:{v}" if v else k for k, v in run.tags.items()
                                      if not k.startswith("mlflow."))
    summary = got.summary_metrics
    for key, points in run.metrics.items():
        assert summary[key] == points[-1][2]
    assert summary["_step"] == rows[-1]["_step"]
    history = list(got.scan_history())
    assert [r["_step"] for r in history] == [r["_step"] for r in rows]  # every step once, in order
    for want, have in zip(rows, history, strict=True):
        for key, value in want.items():
            assert math.isclose(have[key], value), (run.run_id, key, have, want)
        assert have["_runtime"] >= 0
    files = {f.name: f for f in got.files()}
    assert {n: f.size for n, f in files.items()} == {n: len(b) for n, b in run.artifacts.items()}
    for name, data in run.artifacts.items():
        target = tmp / run.run_id
        files[name].download(root=str(target), replace=True).close()
        assert (target / name).read_bytes() == data


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every GraphQL document the emulator receives, as sent (recorded at the emulator)."""
    documents: list[str] = []
    real = emulator_server.operation_name

    def recording(query: str) -> Any:
        documents.append(query)
        return real(query)

    monkeypatch.setattr(emulator_server, "operation_name", recording)
    return documents


def assert_client_vocabulary(sent: list[str]) -> None:
    """Every document is built from the installed client's vocabulary (tests/wandb_vocabulary.py)."""
    schema = full_emulator_schema()
    for text in sent:
        document = graphql.parse(text)
        assert graphql.validate(schema, document) == [], text
        assert outside(usage(document, schema), client_usage(schema)) == [], text
        assert_default_shape(document)


def test_apply_creates_every_run_and_the_next_plan_shows_only_new_source_data(
        twenty: list[MlflowRun], mlflow_server: MlflowServer, emulator: Any, wandb_env: Any, tmp_path: Path,
        sent: list[str]) -> None:
    emu = emulator(seed={"runs": []})
    wandb_env(emu.url)
    spec = write_spec(tmp_path / "import.yaml", mlflow_server.uri)
    plan = tmp_path / "plan.json"
    planned = invoke("plan", "-f", str(spec), "-o", str(plan))
    assert planned.exit_code == 0, planned.output
    assert "Plan: 20 runs to create" in planned.stdout
    assert json.loads(plan.read_text())["imports"] == {
        "churn-from-mlflow": {"mlflow": {"tracking_uri": mlflow_server.uri, "experiments": [EXPERIMENT],
                                         "filter": None}}}

    applied = invoke("apply", str(plan))
    assert applied.exit_code == 0, applied.output
    rows = sum(len(expected_rows(r)) for r in twenty)
    size = sum(len(b) for r in twenty for b in r.artifacts.values())
    assert "Apply complete: 20 runs changed" in applied.stdout
    assert f"20 runs created, {rows} history rows and 40 files" in applied.stdout, applied.stdout
    assert size > 0

    api = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)
    for run in twenty:
        assert_imported(api, run, tmp_path / "downloads")

    again = invoke("plan", "-f", str(spec), "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.stdout

    assert_client_vocabulary(sent)

    # New data in MLflow: one more step of a finished run, and a new run.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    grown = twenty[3]
    last = expected_rows(grown)[-1]["_step"]
    client.log_metric(grown.run_id, "loss", 0.001, timestamp=grown.start_ms + 99_000, step=last + 1)
    grown.metrics["loss"].append((last + 1, grown.start_ms + 99_000, 0.001))
    new = log_run(mlflow_server.uri, EXPERIMENT, 20, tmp_path / "new", steps=4)
    out = tmp_path / "plan2.json"
    third = invoke("plan", "-f", str(spec), "-o", str(out))
    assert third.exit_code == 0, third.output
    assert "Plan: 1 run to create, 1 run to change" in third.stdout
    runs = {r["path"].split("/")[2]: r for r in json.loads(out.read_text())["runs"]}
    assert set(runs) == {grown.run_id, new.run_id}
    assert runs[new.run_id]["action"] == "create"
    update = runs[grown.run_id]
    assert update["action"] == "update"
    assert {(c["kind"], tuple(c["key"])): (c["before"], c["after"]) for c in update["changes"]} == {
        ("summary", ("loss",)): (grown.metrics["loss"][-2][2], 0.001),
        ("history", ()): (last, {"rows": 1, "first_step": last + 1, "last_step": last + 1,
                                 "metrics": ["auc", "loss"]}),
    }

    fourth = invoke("apply", str(out))
    assert fourth.exit_code == 0, fourth.output
    assert "1 run created, 5 history rows" in fourth.stdout  # 4 rows of the new run, 1 appended
    api = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)
    assert_imported(api, grown, tmp_path / "downloads2")
    assert_imported(api, new, tmp_path / "downloads2")
    assert "No changes" in invoke("plan", "-f", str(spec)).stdout


def test_source_runs_changed_between_plan_and_apply_are_stale_and_the_others_are_imported(
        mlflow_server: MlflowServer, emulator: Any, wandb_env: Any, tmp_path: Path) -> None:
    """The plan carries each run's history rows; apply checks each source run without its histories: a
    point logged after the last step, or a new tag, since the plan makes the run stale (nothing written);
    an unchanged run is imported with every planned row."""
    from mlflow import MlflowClient

    runs = [log_run(mlflow_server.uri, "stale-churn", 40 + i, tmp_path / "src", steps=5) for i in range(3)]
    grown, tagged, unchanged = runs
    emu = emulator(seed={"runs": []})
    wandb_env(emu.url)
    spec = tmp_path / "import.yaml"
    spec.write_text("version: 1\ntarget: {entity: acme, project: churn}\nimports:\n  - name: stale\n"
                    f"    from:\n      mlflow:\n        tracking_uri: {mlflow_server.uri}\n"
                    "        experiments: [stale-churn]\n")
    plan = tmp_path / "plan.json"
    assert invoke("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    carried = {r["path"].split("/")[2]: r["source_rows"] for r in json.loads(plan.read_text())["runs"]}
    assert {k: [row["_step"] for row in v] for k, v in carried.items()} == {
        r.run_id: list(range(5)) for r in runs}

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    client.log_metric(grown.run_id, "loss", 0.001, timestamp=grown.start_ms + 99_000, step=5)
    client.set_tag(tagged.run_id, "stage", "late")
    applied = invoke("apply", str(plan))
    assert applied.exit_code == 1, applied.output
    for run in (grown, tagged):
        assert f"stale: acme/churn/{run.run_id}: the source run changed since the plan" in applied.output
    api = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)
    assert sorted(r.id for r in api.runs("acme/churn")) == [unchanged.run_id]
    got = api.run(f"acme/churn/{unchanged.run_id}")
    assert [(r["_step"], r["loss"]) for r in got.scan_history()] == [
        (row["_step"], row["loss"]) for row in carried[unchanged.run_id]]

    again = invoke("plan", "-f", str(spec))
    assert "Plan: 2 runs to create" in again.stdout, again.output
