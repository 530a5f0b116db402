"""Fixtures for imports: a real MLflow tracking server filled with runs through MLflow's own client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.imports.mlflow_server import MlflowServer, running_mlflow

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before mlflow is imported anywhere


@dataclass
class MlflowRun:
    """What a test run was given, to compare the import against."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_ms: int
    params: dict[str, str]
    metrics: dict[str, list[tuple[int, int, float]]]  # key -> [(step, timestamp ms, value)]
    tags: dict[str, str]
    note: str | None
    artifacts: dict[str, bytes] = field(default_factory=dict)  # artifact path -> bytes


def log_run(uri: str, experiment: str, index: int, tmp: Path, *, status: str = "FINISHED",
            steps: int = 5, note: str | None = None) -> MlflowRun:
    """Create one MLflow run with params, metric histories, tags, a note and artifacts."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    start_ms = 1_767_225_600_000 + index * 60_000  # 2026-01-01T00:00:00Z + index minutes
    name = f"run-{index:02d}"
    tags = {"team": "churn", "priority": "" if index % 2 else "high"}
    if note is not None:
        tags["mlflow.note.content"] = note
    run = client.create_run(experiment_id, start_time=start_ms, tags=tags, run_name=name)
    params = {"lr": str(0.1 / (index + 1)), "layers": str(index % 4 + 1), "optimizer": "adam"}
    metrics: dict[str, list[tuple[int, int, float]]] = {"loss": [], "auc": []}
    for step in range(steps):
        stamp = start_ms + 1000 * (step + 1)
        metrics["loss"].append((step, stamp, 1.0 / (step + 1 + index)))
        if step % 2 == 0:  # auc only on even steps: rows with some metrics missing
            metrics["auc"].append((step, stamp + 5, 0.5 + step / 100 + index / 1000))
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    logged = [Metric(k, v, ts, s) for k, points in metrics.items() for s, ts, v in points]
    for start in range(0, len(logged), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run.info.run_id, metrics=logged[start:start + 1000])
    artifacts = {
        "model/weights.bin": bytes(range(256)) * (4 + index),
        f"report-{index}.txt": f"run {index}\n".encode(),
    }
    for path, data in artifacts.items():
        local_dir = tmp / run.info.run_id / (os.path.dirname(path) or ".")
        local_dir.mkdir(parents=True, exist_ok=True)
        local = local_dir / os.path.basename(path)
        local.write_bytes(data)
        client.log_artifact(run.info.run_id, str(local), os.path.dirname(path) or None)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status, end_time=start_ms + 1000 * (steps + 1))
    return MlflowRun(run.info.run_id, name, experiment, status, start_ms, params, metrics,
                     dict(tags), note, artifacts)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow server for the session; each test module logs to its own experiments."""
    with running_mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
