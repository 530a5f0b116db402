"""W&B -> W&B: ``reconcile plan`` + ``apply`` of a ``from: {wandb: ...}`` import vs the loop a user writes
today (``benchmarks/import_loop_wandb.py``: ``api.runs``, ``wandb.init``, ``log`` per history row, files
downloaded and ``save``d, ``finish``).

    .venv/bin/python benchmarks/imports.py --runs 1000 --workdir W --side reconcile  # W/reconcile.sqlite
    .venv/bin/python benchmarks/imports_wandb.py --source-db W/reconcile.sqlite --workdir W2

The source is an emulator subprocess serving a copy of a database that ``benchmarks/imports.py`` filled
(its runs in ``acme/imported``: 3 metrics x N steps, 2 files each); each side copies them into
``acme/copied`` of its own fresh emulator. Both end states are read back with the real ``wandb.Api`` and
must be identical (the same fields as ``benchmarks/imports.py`` compares).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.imports import compare_sides, reconcile_side, side
from benchmarks.run import BENCH_API_KEY, _load
from reconcile.emulator.testing import running_emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-db", type=Path, required=True)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--side", choices=("both", "reconcile", "loop"), default="both",
                        help="which side to run; results are kept in the work dir and compared once "
                             "both exist")
    args = parser.parse_args(argv)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="reconcile-bench-wandb-"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"source-{args.side}.sqlite"  # each invocation serves its own copy
    shutil.copyfile(args.source_db, db)
    with running_emulator(db=db, latency_ms=args.latency_ms, subprocess=True) as source:
        print(f"source {args.source_db}; emulator latency {args.latency_ms} ms (source and destinations); "
              f"work dir {workdir}; load {_load()}", flush=True)
        if args.side in ("both", "reconcile"):
            reconcile_side(workdir, args.latency_ms, "copied",
                           f"      wandb:\n        base_url: {source.url}\n"
                           "        api_key_env: SOURCE_WANDB_API_KEY\n        entity: acme\n"
                           "        project: imported\n",
                           extra_env={"SOURCE_WANDB_API_KEY": BENCH_API_KEY})
        if args.side in ("both", "loop"):
            loop = [sys.executable, str(Path(__file__).with_name("import_loop_wandb.py")), "--source-url",
                    source.url, "--source-key", BENCH_API_KEY]
            loop_s, (_, loop_req), _ = side("loop", workdir, args.latency_ms, [("loop", loop)],
                                            project="copied")
            print(f"loop: {loop_s:.1f} s, {loop_req} requests to the destination; load {_load()}", flush=True)
    return compare_sides(workdir, None)


if __name__ == "__main__":
    raise SystemExit(main())
