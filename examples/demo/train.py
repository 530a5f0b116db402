"""A tiny real training script for ``make demo``: logistic regression in numpy, logged with wandb.

Each run calls ``wandb.init``, logs loss and accuracy every step, saves checkpoints (``policy="now"``),
the best model (``policy="live"``) and prediction images (``policy="end"``) with ``wandb.save``, and
finishes. It takes seconds; point it at the emulator with ``WANDB_BASE_URL`` and ``WANDB_API_KEY``.

    python examples/demo/train.py                 # the demo's runs: two projects, a few configs
    python examples/demo/train.py --runs 1 --project scratch --model mlp --lr 0.1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wandb

ENTITY = "acme"


@dataclass(frozen=True)
class Trial:
    """One run: where it goes and its hyperparameters."""

    project: str
    model: str
    lr: float
    epochs: int
    tags: tuple[str, ...] = ()
    exit_code: int = 0
    job_type: str = "train"


DEMO_TRIALS = (
    Trial("vision", "resnet50", 0.1, 6, tags=("wip",)),
    Trial("vision", "resnet50", 0.03, 6),
    Trial("vision", "resnet50", 0.01, 6, tags=("wip",)),
    Trial("vision", "vit-b16", 0.03, 6),
    Trial("vision", "resnet50", 0.3, 3, exit_code=1),  # diverges: the script exits 1, the run is failed
    Trial("nlp", "bert-base", 5e-5, 4, tags=("baseline",), job_type="finetune"),
    Trial("nlp", "bert-large", 2e-5, 4, tags=("ablation",), job_type="finetune"),
)


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(512, 8))
    w = rng.normal(size=8)
    y = (x @ w + rng.normal(scale=0.5, size=512) > 0).astype(float)
    return x, y


def _png(pixels: np.ndarray) -> bytes:
    """A tiny grayscale image, PGM bytes under a .png name (no image library needed)."""
    scaled = (255 * (pixels - pixels.min()) / (np.ptp(pixels) or 1)).astype(np.uint8)
    return f"P5 {scaled.shape[1]} {scaled.shape[0]} 255\n".encode() + scaled.tobytes()


def train(trial: Trial, seed: int, root: Path) -> str:
    """Train one model and log it as one W&B run; returns the run id."""
    run = wandb.init(
        entity=ENTITY,
        project=trial.project,
        config={"model": trial.model, "lr": trial.lr, "epochs": trial.epochs, "seed": seed, "batch_size": 64},
        tags=list(trial.tags),
        job_type=trial.job_type,
        dir=str(root),
    )
    out = Path(run.dir)
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "media" / "images").mkdir(parents=True, exist_ok=True)
    x, y = _data(seed)
    w = np.zeros(x.shape[1])
    best = 0.0
    steps_per_epoch = 10
    for epoch in range(1, trial.epochs + 1):
        for step in range(steps_per_epoch):
            batch = slice(step * 50, step * 50 + 50)
            p = 1 / (1 + np.exp(-(x[batch] @ w)))
            w -= trial.lr * 10 * x[batch].T @ (p - y[batch]) / len(p)
            loss = float(-np.mean(y[batch] * np.log(p + 1e-9) + (1 - y[batch]) * np.log(1 - p + 1e-9)))
            run.log({"loss": loss, "epoch": epoch})
        acc = float(np.mean(((x @ w) > 0) == y))
        run.log({"val_acc": acc, "epoch": epoch})
        checkpoint = out / "checkpoints" / f"epoch-{epoch:03d}.pt"
        checkpoint.write_bytes(w.tobytes() * 64)
        wandb.save(str(checkpoint), base_path=str(out), policy="now")
        if acc >= best:
            best = acc
            (out / "checkpoints" / "model-best.pt").write_bytes(w.tobytes() * 64)
        if epoch % 2 == 0:
            image = out / "media" / "images" / f"predictions_{epoch}.png"
            image.write_bytes(_png(np.outer(x[:16] @ w, w)))
    wandb.save(str(out / "checkpoints" / "model-best.pt"), base_path=str(out), policy="live")
    wandb.save(str(out / "media" / "images" / "*.png"), base_path=str(out), policy="end")
    run.summary["val_acc"] = best
    run_id = run.id
    run.finish(exit_code=trial.exit_code)
    return run_id


def main(argv: list[str] | None = None) -> int:
    """Train the demo's trials (or one trial from the flags); prints one line per run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=None, help="train this many runs of the flags' trial")
    parser.add_argument("--project", default="scratch")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    trials = (
        [Trial(args.project, args.model, args.lr, args.epochs)] * args.runs
        if args.runs
        else list(DEMO_TRIALS)
    )
    with tempfile.TemporaryDirectory(prefix="reconcile-demo-train-") as root:
        for seed, trial in enumerate(trials):
            run_id = train(trial, seed, Path(root))
            print(f"trained {ENTITY}/{trial.project}/{run_id} ({trial.model}, lr={trial.lr})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
