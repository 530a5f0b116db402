"""A seeded fleet of runs and a spec that changes every kind of field, shared by the reliability tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import wandb

from tests.conftest import TEST_API_KEY

ENTITY, PROJECT = "acme", "fleet"

SPEC = f"""
version: 1
target: {{entity: {ENTITY}, project: {PROJECT}}}
rules:
  - name: audit
    match: {{all: true}}
    set:
      config: {{audit: {{reviewed: true}}, optimizer: {{lr: 0.5}}}}
      summary: {{checked: 1}}
      name: "audited-{{id}}"
    add_tags: [audited]
    remove_tags: [wip]
    unset: {{summary: [tmp]}}
  - name: prune
    match: {{tags: [ckpt]}}
    files: {{delete: ["*.ckpt"], keep: ["best.ckpt"]}}
"""
"""Every run: config leaf, nested config leaf, summary add and unset, name, tags; some runs: files."""


def fleet(count: int, *, files_every: int = 20) -> dict[str, Any]:
    """An emulator fixture of ``count`` finished runs; every ``files_every``-th one has checkpoints."""
    runs = []
    for i in range(count):
        with_files = i % files_every == 0
        runs.append({
            "entity": ENTITY, "project": PROJECT, "id": f"r{i:04d}", "name": f"run-{i}", "state": "finished",
            "created_at": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "config": {"lr": i / 1000, "optimizer": {"name": "sgd"}, "seed": i},
            "summary": {"acc": i / count, "tmp": i} if i % 2 else {"acc": i / count},
            "tags": ["wip", "ckpt"] if with_files else (["wip"] if i % 3 else []),
            "files": [{"name": f"step-{s}.ckpt", "size": 100 + s} for s in range(3)]
            + [{"name": "best.ckpt", "size": 7}, {"name": "output.log", "size": 9}] if with_files else [],
        })
    return {"runs": runs}


def api(url: str) -> Any:
    """A fresh public-API client (nothing cached)."""
    return wandb.Api(overrides={"base_url": url}, api_key=TEST_API_KEY, timeout=30)


def state(url: str, *, with_files: bool = True) -> dict[str, Any]:
    """The fields the spec manages (plus the untouched ones), per run id, read through wandb.Api."""
    out: dict[str, Any] = {}
    for run in api(url).runs(f"{ENTITY}/{PROJECT}", per_page=1000):
        files = sorted(f.name for f in run.files()) if with_files and "ckpt" in run.tags else None
        out[run.id] = (dict(run.config), dict(run.summary_metrics), sorted(run.tags), run.name, run.notes,
                       files)
    return out


def writes_per_run(mutations: list[dict[str, Any]]) -> Counter[str]:
    """UpsertBucket writes per run path."""
    return Counter(m["run"] for m in mutations if m["operation"] == "UpsertBucket")


def deleted_files(mutations: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """How often each (run, file name) was deleted."""
    found: Counter[tuple[str, str]] = Counter()
    for m in mutations:
        if m["operation"] == "deleteFiles":
            found.update((m["run"], name) for name in m["fields"].get("files", []))
    return found
