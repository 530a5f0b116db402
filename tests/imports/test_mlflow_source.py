"""Reading MLflow runs (a real tracking server on loopback) mapped to W&B's fields."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.errors import BackendError, NotFound
from reconcile.models import MlflowSource
from reconcile.sources import SourceFile
from reconcile.sources.mlflow_source import MlflowReader, history_rows, map_tags, tracking_uri
from tests.imports.conftest import MlflowRun, log_run
from tests.imports.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def logged(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, MlflowRun]:
    """Runs in two experiments (finished, failed, killed, running), plus one in an experiment not imported."""
    tmp = tmp_path_factory.mktemp("artifacts")
    runs = [
        log_run(mlflow_server.uri, "churn", 0, tmp, note="baseline, **markdown** note"),
        log_run(mlflow_server.uri, "churn", 1, tmp, status="FAILED"),
        log_run(mlflow_server.uri, "churn", 2, tmp, status="RUNNING"),
        log_run(mlflow_server.uri, "churn-v2", 3, tmp, status="KILLED", steps=8),
        log_run(mlflow_server.uri, "elsewhere", 4, tmp),
    ]
    return {r.run_id: r for r in runs}


def reader(server: MlflowServer, **kwargs: object) -> MlflowReader:
    source = MlflowSource(**{"experiments": ("churn", "churn-v2"), "tracking_uri": server.uri, **kwargs})
    return MlflowReader("from-mlflow", source, parallelism=4)  # type: ignore[arg-type]


def test_every_mapped_field_comes_from_mlflow(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun]
) -> None:
    """Ids, name, params, latest metrics, tags, note, experiment, status, start time and artifacts."""
    runs = {r.id: r for r in reader(mlflow_server).runs()}
    assert set(runs) == {r.run_id for r in logged.values() if r.experiment != "elsewhere"}
    states = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}
    for run_id, run in runs.items():
        want = logged[run_id]
        assert run.name == want.name
        assert run.config == want.params
        assert run.summary == {k: points[-1][2] for k, points in want.metrics.items()}
        assert run.group == want.experiment
        assert run.notes == want.note
        assert run.state == states[want.status]
        assert run.created_at == datetime.fromtimestamp(want.start_ms / 1000, tz=timezone.utc)
        assert run.tags == tuple(sorted(f"{k}:{v}" if v else k for k, v in want.tags.items()
                                        if not k.startswith("mlflow.")))
        assert run.job_type is None
        steps = {s for points in want.metrics.values() for s, _, _ in points}
        assert run.steps == tuple(sorted(steps))
        assert run.history_keys == ("auc", "loss")
        assert sorted(run.files, key=lambda f: f.name) == sorted(
            (SourceFile(path, len(data)) for path, data in want.artifacts.items()), key=lambda f: f.name)


def test_history_has_one_row_per_step_with_its_timestamp(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun]
) -> None:
    want = next(r for r in logged.values() if r.status == "KILLED")
    rows = list(reader(mlflow_server).history(want.run_id))
    assert [row["_step"] for row in rows] == list(range(8))
    for row in rows:
        step = row["_step"]
        loss = next(p for p in want.metrics["loss"] if p[0] == step)
        assert row["loss"] == loss[2]
        auc = [p for p in want.metrics["auc"] if p[0] == step]
        assert ("auc" in row) == bool(auc)
        assert row["_timestamp"] == max(p[1] for p in [loss, *auc]) / 1000


def test_artifacts_download_byte_for_byte(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun], tmp_path: Path
) -> None:
    want = next(iter(logged.values()))
    source = reader(mlflow_server)
    for name, data in want.artifacts.items():
        dest = tmp_path / name.replace("/", "_")
        source.download(want.run_id, name, dest)
        assert dest.read_bytes() == data


def test_filter_uses_mlflows_search_syntax(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun]
) -> None:
    search = "params.optimizer = 'adam' and attributes.status = 'FAILED'"
    runs = list(reader(mlflow_server, filter=search).runs())
    assert [r.id for r in runs] == [r.run_id for r in logged.values() if r.status == "FAILED"]


def test_an_unknown_experiment_is_a_clear_error(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun]
) -> None:
    with pytest.raises(NotFound, match=r"import 'from-mlflow': MLflow at http://127\.0\.0\.1:\d+ has no "
                                       r"experiment named 'churn-v3'"):
        list(reader(mlflow_server, experiments=("churn", "churn-v3")).runs())


def test_a_bad_filter_is_a_clear_error(mlflow_server: MlflowServer, logged: dict[str, MlflowRun]) -> None:
    with pytest.raises(BackendError, match=r"import 'from-mlflow': cannot search runs at MLflow at "):
        list(reader(mlflow_server, filter="metrics.auc >>> 1").runs())


# ---------------------------------------------------------------------------- pure mapping


def test_history_rows_keep_the_value_logged_last_at_a_step() -> None:
    rows = history_rows({"a": [(0, 1000, 1.0), (0, 3000, 2.0), (2, 4000, 3.0)], "b": [(0, 2000, 9.0)]})
    assert rows == [
        {"a": 2.0, "b": 9.0, "_step": 0, "_timestamp": 3.0},
        {"a": 3.0, "_step": 2, "_timestamp": 4.0},
    ]


def test_tags_outside_mlflow_namespace_become_key_value_tags() -> None:
    assert map_tags({"team": "a", "flag": "", "mlflow.user": "x", "mlflow.note.content": "n"}) == (
        "flag", "team:a")


def test_tracking_uri_falls_back_to_the_environment_and_says_what_is_missing() -> None:
    source = MlflowSource(experiments=("e",))
    assert tracking_uri(source, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}) == "http://127.0.0.1:1"
    with pytest.raises(BackendError, match=r"give `tracking_uri`.*or set MLFLOW_TRACKING_URI"):
        tracking_uri(source, {})


def test_runs_carry_their_rows_and_peek_reads_the_same_revision_without_the_histories(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """What the plan carries (the rows ``runs`` read, the revision) is what apply's ``peek`` checks: the
    same revision while nothing changed; another once a point is logged after a metric's last step or a
    tag is set; a point added below the last step is not seen (README, "Imports")."""
    from mlflow import MlflowClient

    run = log_run(mlflow_server.uri, "peeked", 0, tmp_path, steps=6)
    source = MlflowReader("peek", MlflowSource(experiments=("peeked",), tracking_uri=mlflow_server.uri))
    (listed,) = source.runs()
    read = source.read(run.run_id)
    assert read is not None and listed.rows == read.rows and [r["_step"] for r in read.rows] == list(range(6))
    assert listed.latest == {"loss": (5, run.start_ms + 6000), "auc": (4, run.start_ms + 5005)}
    peeked = source.peek(run.run_id)
    assert peeked is not None and (peeked.steps, peeked.rows) == ((), None)
    assert peeked.revision() == listed.revision() == read.run.revision()

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    client.log_metric(run.run_id, "auc", 0.7, timestamp=run.start_ms + 9000, step=1)  # below auc's last step
    assert (source.peek(run.run_id) or peeked).revision() == listed.revision()
    client.log_metric(run.run_id, "loss", 0.01, timestamp=run.start_ms + 9000, step=6)  # after the last step
    after_step = source.peek(run.run_id)
    assert after_step is not None and after_step.revision() != listed.revision()
    client.set_tag(run.run_id, "stage", "late")
    tagged = source.peek(run.run_id)
    assert tagged is not None and tagged.revision() != after_step.revision()
    client.delete_run(run.run_id)
    assert source.peek(run.run_id) is None


def _rows_by_run(source: MlflowReader) -> dict[str, tuple[object, ...]]:
    return {run.id: run.rows or () for run in source.runs()}


def test_bulk_history_reads_give_exactly_the_rows_get_metric_history_gives(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``runs`` reads each metric of a batch of runs with one bulk request; each run's rows are those
    ``read`` builds from GetMetricHistory, one request per metric (rows with a metric missing too)."""
    source = reader(mlflow_server)
    singles: list[str] = []
    real = source._metric_points
    monkeypatch.setattr(source, "_metric_points", lambda run, keys=None: (
        singles.append(run.info.run_id), real(run, keys))[1])
    bulk = _rows_by_run(source)
    assert singles == [] and source._bulk  # nothing read one metric at a time
    for run_id, rows in bulk.items():
        read = source.read(run_id)
        assert read is not None and rows == read.rows and rows
    assert any("auc" not in row for rows in bulk.values() for row in rows)


def test_a_bulk_answer_at_the_cap_is_read_again_in_halves_and_a_run_alone_one_metric_at_a_time(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun]
) -> None:
    whole = _rows_by_run(reader(mlflow_server))
    capped = reader(mlflow_server)
    capped.bulk_points = 4  # every run has 5 or 8 loss points: each answer may be cut short
    assert _rows_by_run(capped) == whole
    capped.bulk_points = 9  # two runs of 5 points are cut short together, one alone is not
    assert _rows_by_run(capped) == whole


def test_a_server_without_the_bulk_endpoint_is_read_one_metric_at_a_time(
    mlflow_server: MlflowServer, logged: dict[str, MlflowRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconcile.sources import mlflow_source

    whole = _rows_by_run(reader(mlflow_server))
    monkeypatch.setattr(mlflow_source, "BULK_ENDPOINT", "/ajax-api/2.0/mlflow/metrics/no-such-endpoint")
    older = reader(mlflow_server)
    assert _rows_by_run(older) == whole
    assert older._bulk is False  # asked once, then never again
