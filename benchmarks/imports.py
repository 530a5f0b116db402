"""Imports: ``reconcile plan`` + ``apply`` of an MLflow import vs the loop a user writes today
(``benchmarks/import_loop.py``: MlflowClient reads, ``wandb.init``, ``log`` per step, ``save``,
``finish``).

    .venv/bin/python benchmarks/imports.py             # 1,000 runs x 3 metrics x 500 steps + 2 artifacts
    .venv/bin/python benchmarks/imports.py --runs 100 --steps 500 --latency-ms 20
    .venv/bin/python benchmarks/imports.py --workdir W --side fill       # fill MLflow once into W ...
    .venv/bin/python benchmarks/imports.py --workdir W --side loop       # ... and reuse it, a side at a time
    .venv/bin/python benchmarks/imports.py --workdir W --side reconcile  # (compared once both exist)

One real MLflow tracking server (``.venv-mlflow``, as the tests start it) holds the runs; each side writes
to its own fresh emulator (a subprocess, ``--latency-ms`` per request). Both end states are read back with
the real ``wandb.Api`` and must be identical in everything both sides write: display name, config, tags,
notes, group, state, the metrics' summary values, every history row's metric values by ``_step``, and each
file's name and bytes. The load average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from benchmarks.run import BENCH_API_KEY, _load, client_env, reconcile_argv, run_client
from reconcile.emulator.testing import running_emulator
from tests.imports.mlflow_server import running_mlflow

EXPERIMENT = "bench-import"
METRICS = ("loss", "accuracy", "lr")
MLFLOW_WORKERS = 2
"""The tracking server's worker processes (``mlflow server --workers``; MLflow's default is 4): one per
core of the 2-vCPU machine measured, the same server for both sides."""


def populate(uri: str, runs: int, steps: int, workdir: Path) -> None:
    """``runs`` finished runs: 5 params, 3 metrics x ``steps`` steps, 2 artifacts (4 KiB and 64 KiB)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT)

    def one(index: int) -> None:
        start = 1_767_225_600_000 + index * 600_000
        run = client.create_run(experiment_id, start_time=start, run_name=f"run-{index:04d}",
                                tags={"team": "churn", "mlflow.note.content": f"note {index}"})
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in
                                         {"lr": 0.1 / (index + 1), "layers": index % 4, "batch": 64,
                                          "optimizer": "adam", "seed": index}.items()],
                         tags=[RunTag("split", "train")])
        points = [Metric(key, (step + 1) ** -0.5 * (i + 1) + index / 1e4, start + 1000 * step, step)
                  for step in range(steps) for i, key in enumerate(METRICS)]
        for at in range(0, len(points), 1000):
            client.log_batch(run_id, metrics=points[at:at + 1000])
        local = workdir / "artifacts" / run_id
        (local / "model").mkdir(parents=True)
        (local / "model" / "weights.bin").write_bytes(hashlib.sha256(run_id.encode()).digest() * 2048)
        (local / "report.txt").write_bytes(f"run {index}\n".encode() * 400)
        client.log_artifact(run_id, str(local / "model" / "weights.bin"), "model")
        client.log_artifact(run_id, str(local / "report.txt"))
        client.set_terminated(run_id, status="FINISHED", end_time=start + 1000 * steps)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(runs)))


def state(url: str, project: str, tmp: Path) -> dict[str, Any]:
    """What both sides write, per run, as the public API reads it."""
    import wandb

    api = wandb.Api(overrides={"base_url": url}, api_key=BENCH_API_KEY, timeout=120)
    out: dict[str, Any] = {}
    for run in api.runs(f"acme/{project}", per_page=500):
        files = {}
        for file in run.files():
            if file.name.endswith((".bin", ".txt")) and file.name not in ("requirements.txt",):
                root = tmp / run.id
                file.download(root=str(root), replace=True).close()
                files[file.name] = hashlib.sha256((root / file.name).read_bytes()).hexdigest()
        history = [(row["_step"], tuple(row.get(k) for k in METRICS)) for row in run.scan_history()]
        out[run.id] = {
            "name": run.name, "state": run.state, "group": run.group, "notes": run.notes,
            "tags": sorted(run.tags),
            "config": {k: v for k, v in run.config.items() if not k.startswith("_")},
            "summary": {k: run.summary_metrics.get(k) for k in METRICS}, "history": history, "files": files,
        }
    return out


def side(name: str, workdir: Path, latency_ms: int, commands: list[tuple[str, list[str]]], *,
         project: str = "imported", extra_env: dict[str, str] | None = None) -> tuple[float, Any, Any]:
    """Run ``commands`` against a fresh emulator; (wall seconds, (steps, requests), end state).

    The side's database (``<workdir>/<name>.sqlite``) starts empty every time; its timing and end state
    are kept in ``<name>-result.json`` so that sides run by separate invocations can be compared."""
    db = workdir / f"{name}.sqlite"
    for stale in (db, workdir / f"{name}-result.json"):
        stale.unlink(missing_ok=True)
    with running_emulator(seed={"runs": []}, db=db, latency_ms=latency_ms, subprocess=True) as emu:
        env = {**client_env(emu.url, workdir / f"{name}-home"), **(extra_env or {})}
        start = time.perf_counter()
        steps = []
        for label, argv in commands:
            step = run_client(f"{name}-{label}", argv, env, workdir)
            steps.append(step)
            if step.returncode != 0:
                raise SystemExit(f"{name} {label} failed ({step.returncode}):\n{step.stdout[-2000:]}\n"
                                 f"{step.stderr[-3000:]}")
        seconds = time.perf_counter() - start
        requests = emu.stats()["requests"]
        load = _load()
        emu.set_faults(latency_ms=0)
        end = state(emu.url, project, workdir / f"{name}-read")
    (workdir / f"{name}-result.json").write_text(json.dumps({
        "seconds": seconds, "steps": {s.label: s.seconds for s in steps}, "requests": requests,
        "load_after": load, "state": end}))
    return seconds, (steps, requests), end


def reconcile_side(workdir: Path, latency_ms: int, project: str, source: str,
                   extra_env: dict[str, str] | None = None) -> None:
    """``reconcile plan`` + ``apply`` of an import from ``source`` (the YAML under ``from:``) into
    ``acme/<project>``, as ``side("reconcile", ...)``; prints the timings."""
    spec = workdir / "import.yaml"
    spec.write_text(f"version: 1\ntarget: {{entity: acme, project: {project}}}\nimports:\n"
                    f"  - name: bench\n    from:\n{source}")
    plan = workdir / "plan.json"
    seconds, (steps, requests), _ = side("reconcile", workdir, latency_ms, [
        ("plan", reconcile_argv("plan", "-f", str(spec), "-o", str(plan))),
        ("apply", reconcile_argv("apply", str(plan)))], project=project, extra_env=extra_env)
    timings = ", ".join(f"{s.label} {s.seconds:.1f} s" for s in steps)
    print(f"reconcile: {seconds:.1f} s ({timings}), {requests} requests to the destination; load {_load()}",
          flush=True)


def compare_sides(workdir: Path, runs: int | None) -> int:
    """Compare the reconcile and loop results kept in ``workdir``; print the table row; 0 if identical."""
    results = {}
    for name in ("reconcile", "loop"):
        path = workdir / f"{name}-result.json"
        if not path.exists():
            print(f"no {name} result in {workdir} yet: run --side {name}")
            return 0
        results[name] = json.loads(path.read_text())
    rec, loop = results["reconcile"], results["loop"]
    rec_state, loop_state = rec["state"], loop["state"]
    same = rec_state == loop_state and bool(rec_state) and (runs is None or len(rec_state) == runs)
    print(f"end states identical: {same} ({len(rec_state)} and {len(loop_state)} runs)")
    if not same:
        diff = [k for k in rec_state if rec_state[k] != loop_state.get(k)][:3]
        for key in diff:
            print(key, rec_state[key], loop_state.get(key), sep="\n  ")
        return 1
    steps = ", ".join(f"{label} {sec:.1f} s" for label, sec in rec["steps"].items())
    print(f"| {len(rec_state)} runs | reconcile {rec['seconds']:.1f} s ({steps}; {rec['requests']} requests; "
          f"load after {rec['load_after']}) | loop {loop['seconds']:.1f} s ({loop['requests']} requests; "
          f"load after {loop['load_after']}) | loop / reconcile {loop['seconds'] / rec['seconds']:.1f}x |")
    return 0


def filled(workdir: Path, runs: int, steps: int) -> bool:
    """Whether ``workdir`` holds MLflow runs filled by an earlier invocation with these ``runs`` and
    ``steps`` (reused); an unfinished or different fill is refused."""
    marker = workdir / "mlflow-filled.json"
    wanted = {"runs": runs, "steps": steps}
    if marker.exists():
        if json.loads(marker.read_text()) != wanted:
            raise SystemExit(f"{workdir} holds MLflow runs filled with {marker.read_text()}, not {wanted}: "
                             "use another --workdir")
        print(f"reusing the MLflow runs filled in {workdir}", flush=True)
        return True
    if (workdir / "mlflow" / "mlflow.db").exists():
        raise SystemExit(f"{workdir}/mlflow holds an unfinished fill: remove it or use another --workdir")
    return False


def fill(uri: str, workdir: Path, runs: int, steps: int) -> None:
    """Fill MLflow with ``runs`` runs and mark the work dir filled."""
    start = time.perf_counter()
    populate(uri, runs, steps, workdir)
    (workdir / "mlflow-filled.json").write_text(json.dumps({"runs": runs, "steps": steps}))
    print(f"populated MLflow in {time.perf_counter() - start:.0f} s; load {_load()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="kept: MLflow is filled once there and reused by later invocations")
    parser.add_argument("--side", choices=("both", "reconcile", "loop", "fill"), default="both",
                        help="which side to run (fill: only fill MLflow); results are kept in the work dir "
                             "and compared once both exist")
    parser.add_argument("--mlflow-workers", type=int, default=MLFLOW_WORKERS,
                        help="the tracking server's worker processes, for both sides "
                             f"(default {MLFLOW_WORKERS})")
    args = parser.parse_args(argv)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="reconcile-bench-import-"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{args.runs} MLflow runs x {len(METRICS)} metrics x {args.steps} steps + 2 artifacts; emulator "
          f"latency {args.latency_ms} ms; MLflow server workers {args.mlflow_workers}; work dir {workdir}; "
          f"load {_load()}", flush=True)
    reuse = filled(workdir, args.runs, args.steps)
    with running_mlflow(workdir / "mlflow", workers=args.mlflow_workers) as server:
        if not reuse:
            fill(server.uri, workdir, args.runs, args.steps)
        if args.side in ("both", "reconcile"):
            reconcile_side(workdir, args.latency_ms, "imported",
                           f"      mlflow:\n        tracking_uri: {server.uri}\n"
                           f"        experiments: [{EXPERIMENT}]\n")
        if args.side in ("both", "loop"):
            loop = [sys.executable, str(Path(__file__).with_name("import_loop.py")), "--tracking-uri",
                    server.uri, "--experiment", EXPERIMENT]
            loop_s, (_, loop_req), _ = side("loop", workdir, args.latency_ms, [("loop", loop)])
            print(f"loop: {loop_s:.1f} s, {loop_req} requests; load {_load()}", flush=True)
    return compare_sides(workdir, args.runs) if args.side != "fill" else 0


if __name__ == "__main__":
    raise SystemExit(main())
