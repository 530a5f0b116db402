"""Benchmark artifact version retention: reconcile against the loop from W&B's docs, on the emulator.

The docs' way to clean up a collection is
``for v in api.artifacts(type, name): if not v.aliases: v.delete()``; here it runs over every
``model`` collection of the project (``api.artifact_collections``). reconcile does the same with a
rule (``artifacts: {type: model}``: every version without an alias goes): ``plan -o`` then
``apply``. Each side gets its own emulator subprocess seeded from the same fixture, with
``--latency-ms`` on every request, and the end states (versions left, with aliases) must match.

    .venv/bin/python benchmarks/artifacts.py                      # 1,000 versions (10 runs x 100), 20 ms
    .venv/bin/python benchmarks/artifacts.py --runs 2 --versions 50 --latency-ms 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import client_env, reconcile_argv, run_client
from reconcile.emulator.testing import running_emulator

LOOP = """
import sys
import wandb

entity, project = sys.argv[1], sys.argv[2]
api = wandb.Api()
for collection in api.artifact_collections(f"{entity}/{project}", "model"):
    for v in api.artifacts("model", f"{entity}/{project}/{collection.name}"):
        if not v.aliases:
            v.delete()
"""

SPEC = """
version: 1
target: {entity: acme, project: ckpts}
rules:
  - name: drop-unaliased-checkpoints
    match: {all: true}
    artifacts: {type: model}
"""


def build_fixture(runs: int, versions: int) -> dict[str, Any]:
    """``runs`` runs, each with a ``model-<run>`` collection of ``versions`` versions (one per epoch);
    ``latest`` on the newest (the emulator's default) and ``best`` on a middle one."""
    out = []
    for r in range(runs):
        run_id = f"run{r:03d}"
        out.append(
            {
                "entity": "acme",
                "project": "ckpts",
                "id": run_id,
                "state": "finished",
                "created_at": "2026-03-01T00:00:00Z",
                "artifacts": [
                    {
                        "name": f"model-{run_id}",
                        "type": "model",
                        "size": 1_000_000 + v,
                        "created_at": f"2026-03-{1 + v // 24:02d}T{v % 24:02d}:00:00Z",
                        "aliases": ["best"] if v == versions // 2 else [],
                    }
                    for v in range(versions)
                ],
            }
        )
    return {"runs": out}


def end_state(db: Path) -> list[tuple[str, int, str]]:
    """Every live version (collection, index, aliases) left in an emulator database."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT c.name, v.version_index, (SELECT group_concat(alias) FROM (SELECT alias FROM "
            "artifact_aliases a WHERE a.version_pk = v.pk ORDER BY alias)) "
            "FROM artifact_versions v JOIN artifact_collections c "
            "ON c.pk = v.collection_pk WHERE v.state != 'DELETED' ORDER BY c.name, v.version_index"
        ).fetchall()
    finally:
        conn.close()
    return [(name, index, aliases or "") for name, index, aliases in rows]


def phase(
    name: str, fixture: dict[str, Any], latency: int, workdir: Path, commands: list[tuple[str, list[str]]]
) -> dict[str, Any]:
    """Seed an emulator subprocess, run the commands against it; time, requests, operations, end state."""
    db = workdir / f"{name}.sqlite"
    with running_emulator(seed=fixture, db=db, latency_ms=latency, subprocess=True) as emu:
        env = client_env(emu.url, workdir / f"{name}-home")
        emu.reset_stats()
        start = time.perf_counter()
        steps = []
        for label, argv in commands:
            step = run_client(f"{name}-{label}", argv, env, workdir)
            steps.append(step)
            if step.returncode != 0:
                raise SystemExit(
                    f"{name} {label} failed ({step.returncode}):\n{step.stderr[-2000:]}"
                    f"\n{step.stdout[-2000:]}"
                )
        seconds = time.perf_counter() - start
        stats = emu.stats()
    return {
        "seconds": seconds,
        "requests": stats["requests"],
        "operations": stats["operations"],
        "steps": [(s.label, round(s.seconds, 1)) for s in steps],
        "state": end_state(db),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--versions", type=int, default=100, help="versions per run's collection")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reconcile-bench-artifacts-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fixture = build_fixture(args.runs, args.versions)
    (workdir / "loop.py").write_text(LOOP)
    (workdir / "spec.yaml").write_text(SPEC)
    plan = workdir / "plan.json"
    loop = phase(
        "loop",
        fixture,
        args.latency_ms,
        workdir,
        [("loop", [sys.executable, str(workdir / "loop.py"), "acme", "ckpts"])],
    )
    rec = phase(
        "reconcile",
        fixture,
        args.latency_ms,
        workdir,
        [
            ("plan", reconcile_argv("plan", "-f", str(workdir / "spec.yaml"), "-o", str(plan))),
            ("apply", reconcile_argv("apply", str(plan))),
        ],
    )
    if loop["state"] != rec["state"]:
        raise SystemExit("end states differ: " + json.dumps([loop["state"][:5], rec["state"][:5]]))
    total = args.runs * args.versions
    deleted = total - len(loop["state"])
    print(
        f"{total} versions in {args.runs} collections, {deleted} deleted, latency {args.latency_ms} ms; "
        "end states identical"
    )
    print("| | wall s | requests | req/deleted version |")
    print("|---|---|---|---|")
    for label, data in (("docs' loop", loop), ("reconcile plan + apply", rec)):
        print(f"| {label} | {data['seconds']:.1f} | {data['requests']} | {data['requests'] / deleted:.2f} |")
    print(
        f"| loop / reconcile | {loop['seconds'] / rec['seconds']:.1f}x | "
        f"{loop['requests'] / rec['requests']:.2f}x | |"
    )
    for label, data in (("loop", loop), ("reconcile", rec)):
        print(
            f"\n{label} steps {data['steps']}; operations: {json.dumps(data['operations'], sort_keys=True)}"
        )


if __name__ == "__main__":
    main()
