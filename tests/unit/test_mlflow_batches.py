"""How the MLflow reader batches runs for its bulk history reads, and how far ahead it reads (no server:
``mlflow.entities`` are plain objects)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from mlflow.entities import Metric, Run, RunData, RunInfo

from reconcile.sources.mlflow_source import BULK_RUNS, _ahead, _batches


def run(index: int, last_step: int | None) -> Run:
    info = RunInfo(run_id=f"r{index}", experiment_id="1", user_id="u", status="FINISHED", start_time=0,
                   end_time=1, lifecycle_stage="active")
    metrics = [] if last_step is None else [Metric("loss", 0.1, 5, last_step), Metric("lr", 0.1, 5, 0)]
    return Run(info, RunData(metrics=metrics))


def test_runs_are_batched_by_their_estimated_points_and_at_most_the_servers_run_limit() -> None:
    sizes = [len(b) for b in _batches([run(i, 499) for i in range(100)])]
    assert sizes == [40, 40, 20]  # 500 points a metric: 20,000 a request
    assert [len(b) for b in _batches([run(i, None) for i in range(250)])] == [BULK_RUNS, BULK_RUNS, 50]
    assert [len(b) for b in _batches([run(0, 30_000), run(1, 5), run(2, 5)])] == [1, 2]  # one alone over it
    assert list(_batches([])) == []


def test_ahead_keeps_order_and_computes_at_most_that_many_results_before_they_are_taken() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
        return item * 2

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = _ahead(pool, work, iter(range(20)), 3)
        assert next(results) == 0
        assert len(started) <= 3  # the first result taken, at most two more started
        assert list(results) == [2 * i for i in range(1, 20)]
