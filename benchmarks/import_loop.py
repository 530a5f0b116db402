"""The loop a user writes today to move MLflow runs into W&B (no importer ships with wandb 0.31):

    WANDB_BASE_URL=... WANDB_API_KEY=... python benchmarks/import_loop.py --tracking-uri URI --experiment NAME

For each run: ``MlflowClient`` reads (the run, each metric's history, the artifacts), then
``wandb.init`` (same id, name, config, notes, group, tags), ``run.log`` per step, ``wandb.save`` per
artifact, ``finish`` (exit code 1 for a failed run). Sequential, no sleeps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import wandb
from mlflow import MlflowClient


def rows_by_step(client: MlflowClient, run: Any) -> list[tuple[int, dict[str, float]]]:
    """Each step's metric values (the value logged last at that step)."""
    steps: dict[int, dict[str, tuple[int, float]]] = {}
    for key in sorted(run.data.metrics):
        for m in client.get_metric_history(run.info.run_id, key):
            row = steps.setdefault(m.step, {})
            if key not in row or m.timestamp >= row[key][0]:
                row[key] = (m.timestamp, m.value)
    return [(s, {k: v for k, (_, v) in steps[s].items()}) for s in sorted(steps)]


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.extend(artifacts(client, run_id, info.path) if info.is_dir else [info.path])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--entity", default="acme")
    parser.add_argument("--project", default="imported")
    args = parser.parse_args()
    client = MlflowClient(tracking_uri=args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    token = None
    settings = wandb.Settings(base_url=os.environ["WANDB_BASE_URL"], console="off", x_disable_stats=True)
    count = 0
    while True:
        page = client.search_runs([experiment.experiment_id], max_results=1000, page_token=token)
        for run in page:
            tags = sorted(f"{k}:{v}" if v else k for k, v in run.data.tags.items()
                          if not k.startswith("mlflow."))
            w = wandb.init(entity=args.entity, project=args.project, id=run.info.run_id,
                           name=run.info.run_name, config=dict(run.data.params),
                           notes=run.data.tags.get("mlflow.note.content"), group=experiment.name, tags=tags,
                           settings=settings)
            for step, values in rows_by_step(client, run):
                w.log(values, step=step)
            with tempfile.TemporaryDirectory() as tmp:
                for name in artifacts(client, run.info.run_id):
                    where = Path(tmp, os.path.dirname(name))  # keep the artifact path (MLflow drops it)
                    where.mkdir(parents=True, exist_ok=True)
                    local = client.download_artifacts(run.info.run_id, name, dst_path=str(where))
                    wandb.save(local, base_path=tmp, policy="now")
                w.finish(exit_code=1 if run.info.status == "FAILED" else 0)
            count += 1
        token = page.token
        if not token:
            break
    print(f"imported {count} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
