"""The loop a user writes today to copy runs from one W&B server to another:

    WANDB_BASE_URL=DEST WANDB_API_KEY=... \
        python benchmarks/import_loop_wandb.py --source-url URL --source-key KEY

For each source run (``api.runs``): ``wandb.init`` on the destination with the same id, name, config,
notes, group, job type and tags; ``run.log(row, step=_step)`` for every row of ``scan_history``;
every file downloaded and ``wandb.save``d; ``finish`` (exit code 1 for a failed run). Sequential.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import wandb


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-url", required=True)
    parser.add_argument("--source-key", required=True)
    parser.add_argument("--path", default="acme/imported")
    parser.add_argument("--project", default="copied")
    args = parser.parse_args()
    source = wandb.Api(overrides={"base_url": args.source_url}, api_key=args.source_key, timeout=120)
    settings = wandb.Settings(base_url=os.environ["WANDB_BASE_URL"], console="off", x_disable_stats=True)
    count = 0
    for run in source.runs(args.path, per_page=500):
        entity = args.path.split("/")[0]
        w = wandb.init(entity=entity, project=args.project, id=run.id, name=run.name, config=dict(run.config),
                       notes=run.notes, group=run.group, job_type=run.job_type, tags=list(run.tags),
                       settings=settings)
        for row in run.scan_history():
            w.log({k: v for k, v in row.items() if not k.startswith("_")}, step=row["_step"])
        with tempfile.TemporaryDirectory() as tmp:
            for file in run.files():
                file.download(root=tmp, replace=True).close()
                wandb.save(str(Path(tmp, file.name)), base_path=tmp, policy="now")
            w.finish(exit_code=1 if run.state == "failed" else 0)
        count += 1
    print(f"copied {count} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
