"""Reading runs from an MLflow tracking server: the one module that imports ``mlflow``.

The mapping (README, "Imports"): the W&B run id is the MLflow run id; display name <- run
name; config <- params (the strings MLflow stores); summary <- the latest value of each
metric; history <- each metric's history by step (``_step``), one row per step, with the
latest timestamp logged at that step (``_timestamp``, seconds); group <- experiment name;
notes <- the ``mlflow.note.content`` tag; state <- status; created time <- start time;
files <- artifacts, at their artifact paths; every other tag not under ``mlflow.`` becomes
the W&B tag ``key:value`` (``key`` alone when the value is empty). MLflow's own ``mlflow.*``
tags (source, user, git commit, ...) are not imported.

MLflow's client reads credentials from its own environment variables
(``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``); reconcile never
reads, stores or prints them. Its errors become ``BackendError``s naming the import.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

# MLflow 3's client reports usage to MLflow's servers unless told not to; an import sends nothing
# anywhere but the tracking server it names (set MLFLOW_DISABLE_TELEMETRY=false to allow it).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow import MlflowClient  # after the telemetry switch above
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response
from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

from reconcile.errors import BackendError, NotFound, RetryableError
from reconcile.models import MlflowSource
from reconcile.sources import SourceFile, SourceRead, SourceRun

STATES = {
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "killed",
    "RUNNING": "running",
    "SCHEDULED": "pending",
}
"""MLflow run status -> W&B run state."""

NOTE_TAG = "mlflow.note.content"
_PAGE = 1000
_REPOS = 4096
"""Artifact repositories kept (one per run read; each costs no request to make)."""

BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
"""The tracking server's bulk history read, the one its own UI's charts use: one metric of up to
``BULK_RUNS`` runs a request, its points in the order GetMetricHistory returns them, at most
``max_results`` (the server caps it at 25,000) in all."""
BULK_RUNS = 100
"""Run ids a bulk request may name (the server's limit)."""
BULK_POINTS = 25_000
"""Points a bulk request asks for (the server's cap): an answer that holds this many may be cut short,
so its runs are read again in halves, and a run alone with GetMetricHistory (paged)."""
_BULK_TARGET = 20_000
"""Points a bulk request is planned to return, estimated from each run's last step."""


def tracking_uri(source: MlflowSource, environ: Mapping[str, str] | None = None) -> str:
    """The source's tracking URI, else ``MLFLOW_TRACKING_URI``; a clear error without either."""
    env = os.environ if environ is None else environ
    uri = source.tracking_uri or env.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise BackendError("no MLflow tracking server: give `tracking_uri` in the import's `from.mlflow`, "
                           "or set MLFLOW_TRACKING_URI")
    return uri


def history_rows(metrics: Mapping[str, list[tuple[int, int, float]]]) -> list[dict[str, Any]]:
    """Rows by step from ``{key: [(step, timestamp_ms, value), ...]}``: at each step each metric's
    value logged last (latest timestamp, then the later entry), ``_timestamp`` the step's latest time."""
    steps: dict[int, dict[str, tuple[int, float]]] = {}
    for key, points in metrics.items():
        for step, stamp, value in points:
            row = steps.setdefault(step, {})
            if key not in row or stamp >= row[key][0]:
                row[key] = (stamp, value)
    out = []
    for step in sorted(steps):
        row = steps[step]
        values: dict[str, Any] = {key: value for key, (_, value) in sorted(row.items())}
        values["_step"] = step
        values["_timestamp"] = max(stamp for stamp, _ in row.values()) / 1000.0
        out.append(values)
    return out


def map_tags(tags: Mapping[str, str]) -> tuple[str, ...]:
    """MLflow tags not under ``mlflow.`` as W&B tags: ``key:value``, or ``key`` for an empty value."""
    return tuple(sorted(f"{k}:{v}" if v else k for k, v in tags.items() if not k.startswith("mlflow.")))


class MlflowReader:
    """Runs of the experiments an ``imports[].from.mlflow`` names, mapped to W&B's fields."""

    def __init__(self, name: str, source: MlflowSource, *, parallelism: int = 10,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.source = source
        self.uri = tracking_uri(source, environ)
        self.description = f"MLflow at {self.uri}"
        self.parallelism = parallelism
        self._client = MlflowClient(tracking_uri=self.uri)
        self._experiment_names: dict[str, str] | None = None
        self._repos: dict[str, ArtifactRepository] = {}  # run id -> its artifact repository
        self._lock = threading.Lock()
        self._repo_lock = threading.Lock()
        # GetMetricHistory costs an SQLite server a scan of every point of that metric in the whole
        # store; one bulk request pays it once for many runs (benchmarks/README.md, "Imports").
        self._bulk = self.uri.startswith(("http://", "https://"))  # False once the server lacks it
        self.bulk_points = BULK_POINTS

    def close(self) -> None:
        """Nothing to release: the client holds no open connection between calls."""

    # ------------------------------------------------------------------ runs

    def runs(self, ids: frozenset[str] | None = None) -> Iterator[SourceRun]:
        """Every selected run (``ids``: of these ids), mapped with its history rows: runs in batches whose
        metric histories are read with one bulk request per metric, batches read concurrently (at most
        ``parallelism`` ahead of the caller, so memory stays bounded)."""
        experiments = self._experiments()
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="mlflow") as pool:
            token: str | None = None
            while True:
                page = self._call(
                    "search runs",
                    lambda t=token: self._client.search_runs(
                        list(experiments), filter_string=self.source.filter or "",
                        run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=t,
                    ),
                )
                chosen = [run for run in page if ids is None or run.info.run_id in ids]
                for mapped in _ahead(pool, lambda b: self._map_batch(b, experiments), _batches(chosen),
                                     self.parallelism):
                    yield from mapped
                token = page.token
                if not token:
                    return

    def history(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's history rows in step order."""
        run = self._call("read the run", lambda: self._client.get_run(run_id))
        yield from history_rows(self._metric_points(run))

    def read(self, run_id: str) -> SourceRead | None:
        """A fresh read of one run, mapped, with its history rows; None if it is gone or no longer in the
        import's experiments."""
        run = self._fresh(run_id)
        if run is None:
            return None
        mapped = self._map(run, self._experiments())
        return SourceRead(mapped, mapped.rows or ())

    def peek(self, run_id: str) -> SourceRun | None:
        """One run read fresh without its metric histories (one GetRun and its artifact listing), for
        ``SourceRun.revision``; None if it is gone or no longer in the import's experiments."""
        run = self._fresh(run_id)
        return None if run is None else self._map(run, self._experiments(), with_history=False)

    def _fresh(self, run_id: str) -> Run | None:
        try:
            run: Run = self._call("read the run", lambda: self._client.get_run(run_id))
        except NotFound:
            return None
        if run.info.experiment_id not in self._experiments() or run.info.lifecycle_stage != "active":
            return None
        return run

    def download(self, run_id: str, name: str, dest: Path) -> None:
        """Download the artifact ``name`` of the run to ``dest`` (from the run's artifact repository, as
        ``MlflowClient.download_artifacts`` does, without reading the run again if it was just read)."""
        repo = self._repos.get(run_id)
        if repo is None:
            run = self._call("read the run", lambda: self._client.get_run(run_id))
            repo = self._repo(run)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mlflow-") as tmp:
            def fetch() -> str:
                return str(repo.download_artifacts(name, dst_path=tmp))  # type: ignore[no-untyped-call]

            local = self._call(f"download artifact {name!r}", fetch)
            shutil.move(local, dest)

    # ------------------------------------------------------------------ helpers

    def _experiments(self) -> dict[str, str]:
        """Experiment id -> name for every experiment the import names (read once)."""
        with self._lock:  # read once, though several threads ask
            if self._experiment_names is None:
                self._experiment_names = self._read_experiments()
            return self._experiment_names

    def _read_experiments(self) -> dict[str, str]:
        out = {}
        for wanted in self.source.experiments:
            experiment = self._call("find the experiment",
                                    lambda w=wanted: self._client.get_experiment_by_name(w))
            if experiment is None:
                raise NotFound(f"import {self.name!r}: {self.description} has no experiment named {wanted!r}")
            out[experiment.experiment_id] = experiment.name
        return out

    def _map_batch(self, runs: Sequence[Run], experiments: Mapping[str, str]) -> list[SourceRun]:
        points = self._bulk_points(runs)
        return [self._map(run, experiments, points=points[run.info.run_id]) for run in runs]

    def _map(self, run: Run, experiments: Mapping[str, str], *, with_history: bool = True,
             points: Mapping[str, list[tuple[int, int, float]]] | None = None) -> SourceRun:
        """The run mapped, with its history rows (from ``points``, else one request per metric), or
        without (``with_history`` false: ``steps``/``rows`` empty, what ``revision`` needs)."""
        info, data = run.info, run.data
        if points is None and with_history:
            points = self._metric_points(run)
        rows = history_rows(points) if points is not None else []
        files = tuple(self._artifacts(self._repo(run), None))
        start = info.start_time if info.start_time is not None else 0
        return SourceRun(
            id=info.run_id,
            name=info.run_name or None,
            state=STATES.get(info.status, "crashed"),
            created_at=datetime.fromtimestamp(start / 1000.0, tz=timezone.utc),
            config=dict(data.params),
            summary=dict(data.metrics),
            tags=map_tags(data.tags),
            notes=data.tags.get(NOTE_TAG),
            group=experiments.get(info.experiment_id),
            steps=tuple(row["_step"] for row in rows),
            history_keys=tuple(sorted(data.metrics)),
            files=files,
            latest={m.key: (int(m.step), int(m.timestamp)) for m in data.to_proto().metrics},
            rows=tuple(rows) if with_history else None,
        )

    def _metric_points(self, run: Run,
                       keys: Iterable[str] | None = None) -> dict[str, list[tuple[int, int, float]]]:
        """Each metric's points, with GetMetricHistory (one request per metric, paged by the client)."""
        out = {}
        for key in sorted(run.data.metrics) if keys is None else keys:
            metrics = self._call(f"read the history of {key!r}",
                                 lambda k=key: self._client.get_metric_history(run.info.run_id, k))
            out[key] = [(m.step, m.timestamp, m.value) for m in metrics]
        return out

    def _bulk_points(self, runs: Sequence[Run]) -> dict[str, dict[str, list[tuple[int, int, float]]]]:
        """Run id -> metric -> points, for every metric of each run: one bulk request per metric where
        the server answers them (an answer that may be cut short is read again in halves); GetMetricHistory
        for a run alone at the cap, or a metric the bulk answer has no point of."""
        out: dict[str, dict[str, list[tuple[int, int, float]]]] = {run.info.run_id: {} for run in runs}
        for key in sorted({key for run in runs for key in run.data.metrics}):
            pending = [[run for run in runs if key in run.data.metrics]]
            while pending:
                group = pending.pop()
                got = self._bulk_read([run.info.run_id for run in group], key) if self._bulk else None
                whole = got is not None and sum(map(len, got.values())) < self.bulk_points
                if got is not None and not whole and len(group) > 1:
                    half = len(group) // 2
                    pending += [group[:half], group[half:]]
                    continue
                for run in group:
                    found = got.get(run.info.run_id) if got is not None and whole else None
                    # A metric the run has shows at least one point: none means the answer cannot be
                    # trusted for it (the run moved, say), so it is read the documented way.
                    out[run.info.run_id][key] = found or self._metric_points(run, [key])[key]
        return out

    def _bulk_read(self, run_ids: list[str], key: str) -> dict[str, list[tuple[int, int, float]]] | None:
        """``key``'s points of each of ``run_ids`` in one bulk request, by run id (all of them, unless as
        many as ``bulk_points``); None, and no bulk request again, if the server has no such endpoint."""
        def call() -> Any:
            creds = get_default_host_creds(self.uri)  # type: ignore[no-untyped-call]
            response = http_request(creds, BULK_ENDPOINT, "GET",  # type: ignore[no-untyped-call]
                                    params={"run_id": run_ids, "metric_key": key,
                                            "max_results": self.bulk_points})
            if response.status_code in (404, 405, 501) and "error_code" not in response.text:
                return None  # an older server, or a proxy that serves only the REST API
            verify_rest_response(response, BULK_ENDPOINT)
            return response.json().get("metrics")

        metrics = self._call(f"read the history of {key!r}", call)
        if not isinstance(metrics, list):
            self._bulk = False
            return None
        out: dict[str, list[tuple[int, int, float]]] = {}
        for m in metrics:
            point = (int(m["step"]), int(m["timestamp"]), float(m["value"]))
            out.setdefault(str(m["run_id"]), []).append(point)
        return out

    def _repo(self, run: Run) -> ArtifactRepository:
        """The run's artifact repository, made from the artifact URI the run carries as the client's
        ``_get_artifact_repo`` makes it (``MlflowClient.list_artifacts``/``download_artifacts`` would
        read the run again, and look for logged models, on every call); kept for ``download``."""
        uri = add_databricks_profile_info_to_artifact_uri(  # type: ignore[no-untyped-call]
            run.info.artifact_uri, self.uri)
        repo = get_artifact_repository(uri, tracking_uri=self.uri)
        with self._repo_lock:  # reads run on several threads
            if len(self._repos) >= _REPOS:
                self._repos.pop(next(iter(self._repos)))
            self._repos[run.info.run_id] = repo
        return repo

    def _artifacts(self, repo: ArtifactRepository, path: str | None) -> Iterator[SourceFile]:
        listing = self._call("list artifacts", lambda: repo.list_artifacts(path))
        for info in listing:
            if info.is_dir:
                yield from self._artifacts(repo, info.path)
            else:
                yield SourceFile(name=info.path, size=int(info.file_size or 0))

    def _call(self, doing: str, call: Any) -> Any:
        try:
            return call()
        except MlflowException as exc:
            self._raise(exc, doing)
        except OSError as exc:  # requests' connection errors are OSErrors
            raise RetryableError(f"import {self.name!r}: cannot {doing} at {self.description}: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def _raise(self, exc: MlflowException, doing: str) -> NoReturn:
        code = getattr(exc, "error_code", "")
        message = f"import {self.name!r}: cannot {doing} at {self.description}: {exc.message}"
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise NotFound(message) from exc
        if code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"):
            raise RetryableError(message) from exc
        raise BackendError(message) from exc


def _batches(runs: Sequence[Run]) -> Iterator[list[Run]]:
    """Runs in batches of about ``_BULK_TARGET`` points per metric (each run's estimated by its last
    step) and at most ``BULK_RUNS`` runs."""
    batch: list[Run] = []
    points = 0
    for run in runs:
        latest = [int(m.step) for m in run.data.to_proto().metrics]
        size = max(latest, default=0) + 1
        if batch and (points + size > _BULK_TARGET or len(batch) >= BULK_RUNS):
            yield batch
            batch, points = [], 0
        batch.append(run)
        points += size
    if batch:
        yield batch


def _ahead(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any],
           ahead: int) -> Iterator[Any]:
    """``pool.map(fn, items)`` with at most ``ahead`` results computed before the caller takes them."""
    pending: deque[Future[Any]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
