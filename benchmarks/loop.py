"""The loop users write today with the public ``wandb`` API: the change set of ``benchmarks/fixture.py``.

    WANDB_BASE_URL=http://127.0.0.1:PORT WANDB_API_KEY=... python benchmarks/loop.py [--no-files] [--threads 10]

One run at a time, no sleeps, no batching: what a W&B user's cleanup script looks like
(list runs with a filter; per run: edit config/tags/name, move a summary metric,
``run.update()``; list the run's files and ``file.delete()`` each one to go). ``--threads N``
is what a power user writes once that is too slow: the same per-run body on a thread pool
sharing one ``wandb.Api``, fed by the same listing.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import wandb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.fixture import (
    ADD_TAGS,
    ENTITY,
    KEEP_CHECKPOINTS,
    NEW_CONFIG,
    PROJECT,
    REMOVE_TAGS,
    RENAME_SUMMARY,
    expected_name,
)


def change(run: Any, *, files: bool) -> int:
    """The change set on one run; returns how many files it deleted."""
    for key, value in NEW_CONFIG.items():
        if isinstance(value, dict):
            run.config.setdefault(key, {}).update(value)
        else:
            run.config[key] = value
    run.tags = [t for t in run.tags if t not in REMOVE_TAGS] + [t for t in ADD_TAGS if t not in run.tags]
    run.name = expected_name(run.config, run.id)
    old, new = RENAME_SUMMARY
    if old in run.summary:
        run.summary[new] = run.summary[old]
        del run.summary[old]
    run.update()  # UpsertBucket with the whole config, then a second one with the whole summary
    if not files:
        return 0
    deleted = 0
    checkpoints = []
    for f in run.files():
        if fnmatch.fnmatchcase(f.name, "media/images/*"):
            f.delete()
            deleted += 1
        elif fnmatch.fnmatchcase(f.name, "checkpoints/*.pt") and f.name != "checkpoints/best.pt":
            checkpoints.append(f)
    checkpoints.sort(key=lambda f: f.updated_at, reverse=True)
    for f in checkpoints[KEEP_CHECKPOINTS:]:
        f.delete()
        deleted += 1
    return deleted


def main(argv: list[str] | None = None) -> int:
    """Apply the change set run by run; print how many runs and files were touched."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-files", action="store_true", help="skip the file deletions")
    parser.add_argument("--threads", type=int, default=1, help="runs changed at once (default 1: sequential)")
    args = parser.parse_args(argv)
    api = wandb.Api(timeout=60)
    runs = api.runs(f"{ENTITY}/{PROJECT}", filters={"state": "finished"})
    if args.threads <= 1:
        counts = [change(run, files=not args.no_files) for run in runs]
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            counts = list(pool.map(lambda run: change(run, files=not args.no_files), runs))
    print(f"loop: updated {len(counts)} runs, deleted {sum(counts)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
