"""Benchmark data: a realistic emulator fixture, the change set as a reconcile spec, and seeding.

Every run looks like a training run: ~30 config keys (nested optimizer, scheduler and data
dicts), ~20 summary metrics, and files a real run uploads (W&B system files, checkpoints,
media). Everything is derived from the run index, so the fixture is deterministic.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from reconcile.emulator.fixture import parse_fixture
from reconcile.emulator.store import Store

ENTITY = "acme"
PROJECT = "bench"
EPOCH = datetime(2026, 1, 1)
MODELS = ("resnet50", "vit-b16", "convnext-t", "mlp-mixer")
SYSTEM_FILES = ("wandb-metadata.json", "wandb-summary.json", "config.yaml", "requirements.txt", "output.log")
STATES = ("finished",) * 8 + ("crashed", "failed")  # 80% finished: the change set targets finished runs

# The change set, shared by the loop (benchmarks/loop.py) and the spec below.
NEW_CONFIG = {"dataset_version": "imagenet-v2", "optimizer": {"lr_schedule": "cosine"}}
ADD_TAGS = ("reviewed",)
REMOVE_TAGS = ("wip",)
RENAME_SUMMARY = ("val_acc", "val/accuracy")
KEEP_CHECKPOINTS = 2  # the newest 2 checkpoints of each run survive (besides checkpoints/best.pt)
NAME_TEMPLATE = "{config.model}-bs{config.batch_size}-{id}"


def expected_name(config: dict[str, Any], run_id: str) -> str:
    """The display name NAME_TEMPLATE gives a run (what the loop computes by hand)."""
    return f"{config['model']}-bs{config['batch_size']}-{run_id}"


def _config(i: int) -> dict[str, Any]:
    model = MODELS[i % len(MODELS)]
    return {
        "model": model, "dataset": "imagenet", "seed": i, "epochs": 90 + i % 3 * 10,
        "batch_size": 64 * (1 + i % 4), "precision": "bf16", "grad_clip": 1.0, "ema_decay": 0.9999,
        "dropout": round(0.1 * (i % 4), 1), "label_smoothing": 0.1, "hidden_dim": 768, "num_layers": 12,
        "num_heads": 12, "image_size": 224, "max_steps": 450_000, "eval_every": 1000, "log_every": 50,
        "save_every": 5000, "git_commit": f"{i * 2654435761 % 16**12:012x}", "host": f"gpu-node-{i % 64:02d}",
        "cuda_version": "12.4", "torch_version": "2.5.1", "compile": i % 2 == 0, "num_workers": 16,
        "optimizer": {"name": "adamw", "lr": [3e-4, 1e-3, 5e-4][i % 3], "weight_decay": 0.05,
                      "betas": [0.9, 0.999], "eps": 1e-8},
        "scheduler": {"name": "warmup_cosine", "warmup_steps": 10_000, "min_lr": 1e-6},
        "data": {"root": "/datasets/imagenet", "augment": {"hflip": True, "crop": "random_resized",
                                                            "mixup": 0.8, "cutmix": 1.0}},
        "distributed": {"world_size": 8 * (1 + i % 2), "backend": "nccl"},
    }


def _summary(i: int) -> dict[str, Any]:
    acc = round(0.6 + (i * 7919 % 3000) / 10_000, 4)
    return {
        "loss": round(1.5 - acc, 4), "val_loss": round(1.7 - acc, 4), "val_acc": acc, "train_acc": acc + 0.05,
        "top5": min(0.99, acc + 0.15), "lr": 1e-6, "epoch": 90, "_step": 450_000, "_runtime": 86_400 + i,
        "_timestamp": 1_767_225_600 + i * 60, "grad_norm": 0.42, "throughput": 3100.5, "gpu_mem_gb": 71.2,
        "best_val_acc": acc, "f1": round(acc - 0.02, 4), "precision": round(acc - 0.01, 4),
        "recall": round(acc - 0.03, 4), "auc": 0.97, "eval/top1": acc, "eval/top5": min(0.99, acc + 0.15),
    }


def _files(i: int, count: int, created: datetime) -> list[dict[str, Any]]:
    """System files first, then checkpoints (one is best.pt) and media images, each a minute apart."""
    system = list(SYSTEM_FILES[: min(len(SYSTEM_FILES), count // 4)])
    rest = count - len(system)
    n_ckpt = (rest + 1) // 2
    names = system + ["checkpoints/best.pt" if j == 0 else f"checkpoints/step-{j * 5000:07d}.pt"
                      for j in range(n_ckpt)]
    names += [f"media/images/val_samples_{j * 1000}_{i:x}.png" for j in range(rest - n_ckpt)]
    out = []
    for j, name in enumerate(names):
        size = (350_000_000 + i % 7 * 1_000_000) if name.endswith(".pt") else (
            180_000 + j * 1000 if name.endswith(".png") else 2_000 + j * 100)
        updated = (created + timedelta(minutes=10 + j)).isoformat()
        out.append({"name": name, "size": size, "updated_at": updated})
    return out


def generate(runs: int, files: int) -> dict[str, Any]:
    """The fixture dict: ``runs`` runs of ``files`` files each (0 for none) in acme/bench."""
    out = []
    for i in range(runs):
        created = EPOCH + timedelta(minutes=7 * i)
        out.append({
            "entity": ENTITY, "project": PROJECT, "id": f"r{i:07d}", "name": f"run-{i}",
            "state": STATES[i % len(STATES)], "created_at": created.isoformat(),
            "config": _config(i), "summary": _summary(i),
            "tags": ["baseline", "wip"] if i % 3 == 0 else ["baseline"],
            "group": f"sweep-{i % 20}", "job_type": "train",
            "files": _files(i, files, created) if files else [],
        })
    return {"runs": out, "viewer": {"entity": ENTITY, "username": "bench"}}


def spec(files: bool = True) -> dict[str, Any]:
    """The change set as a reconcile spec (version 1)."""
    rules: list[dict[str, Any]] = [{
        "name": "review-finished",
        "match": {"state": ["finished"]},
        "set": {"config": NEW_CONFIG, "name": NAME_TEMPLATE},
        "add_tags": list(ADD_TAGS),
        "remove_tags": list(REMOVE_TAGS),
        "rename": {"summary": {RENAME_SUMMARY[0]: RENAME_SUMMARY[1]}},
    }]
    if files:
        rules[0]["files"] = {"delete": ["checkpoints/*.pt"], "keep": ["checkpoints/best.pt"],
                             "keep_last": KEEP_CHECKPOINTS}
        rules.append({"name": "drop-media", "match": {"state": ["finished"]},
                      "files": {"delete": ["media/images/**"]}})
    return {"version": 1, "target": {"entity": ENTITY, "project": PROJECT}, "rules": rules}


def noop_spec() -> dict[str, Any]:
    """A spec every seeded run already satisfies (it reads every run, changes nothing)."""
    return {"version": 1, "target": {"entity": ENTITY, "project": PROJECT},
            "rules": [{"name": "pin-job-type", "match": {"all": True}, "set": {"job_type": "train"}}]}


def write_spec(data: dict[str, Any], path: Path) -> Path:
    """Write a spec as YAML."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def seed_db(fixture: dict[str, Any], db: Path) -> None:
    """Seed a fresh SQLite database with the emulator's own store (fast; the emulator then serves it as is).

    ``reconcile emulator --seed`` reads fixtures with a YAML parser, which takes minutes for 100,000 runs;
    seeding here uses the same normaliser (``parse_fixture``) and ``Store.seed``.
    """
    store = Store(db, reset=True)
    try:
        store.seed(parse_fixture(fixture))
    finally:
        store.close()


def copy_db(source: Path, dest: Path) -> Path:
    """A fresh copy of a seeded database (one per phase, so both phases start from the same data)."""
    for suffix in ("", "-wal", "-shm"):
        if dest.with_name(dest.name + suffix).exists():
            dest.with_name(dest.name + suffix).unlink()
    shutil.copyfile(source, dest)
    return dest


def end_state(db: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every run's comparable state, read from the emulator's database after it stopped: config (values),
    summary, sorted tags, display name, group, job type, notes and sorted file names."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        files: dict[int, list[str]] = {}
        for run_pk, name in conn.execute("SELECT run_pk, name FROM files"):
            files.setdefault(run_pk, []).append(name)
        rows = conn.execute("SELECT pk, name, display_name, config, summary, tags, group_name, job_type, "
                            "notes FROM runs ORDER BY name")
        for pk, name, display, config, summary, tags, group, job_type, notes in rows:
            yield name, {
                "config": {k: v.get("value") if isinstance(v, dict) else v
                           for k, v in json.loads(config).items()},
                "summary": json.loads(summary), "tags": sorted(json.loads(tags)), "name": display,
                "group": group, "job_type": job_type, "notes": notes or None,
                "files": sorted(files.get(pk, [])),
            }
    finally:
        conn.close()
