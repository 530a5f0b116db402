"""Measure the emulator with the real wandb client: seeding, one 1,000-run page, a long paged listing.

    python -m reconcile.emulator.benchmark --runs 100000

Prints one line per measurement; the figures go into ``benchmarks/README.md`` ("Emulator").
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import wandb

from reconcile.emulator.fixture import parse_fixture, synthetic_runs
from reconcile.emulator.server import Settings, make_server
from reconcile.emulator.store import Store

BENCH_API_KEY = "local-" + "b" * 40


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_DIR"] = str(tmp)
    t0 = time.perf_counter()
    fixture = parse_fixture({"runs": list(synthetic_runs(args.runs, entity="acme", project="bench"))})
    t1 = time.perf_counter()
    store = Store(tmp / "bench.sqlite", reset=True)
    store.seed(fixture)
    t2 = time.perf_counter()
    del fixture
    print(f"seed {args.runs} runs: parse {t1 - t0:.2f} s, insert {t2 - t1:.2f} s")

    server = make_server(store, Settings())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api: Any = wandb.Api(overrides={"base_url": server.url}, api_key=BENCH_API_KEY)
    timings = []
    for _ in range(args.repeat):
        api.flush()
        runs = api.runs("acme/bench", per_page=args.page)
        start = time.perf_counter()
        it = iter(runs)
        next(it)  # loads exactly the first page
        timings.append(time.perf_counter() - start)
    print(
        f"one page of {args.page} runs (lazy fragment) via wandb: best {min(timings) * 1000:.0f} ms, "
        f"median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms"
    )
    timings = []
    for _ in range(args.repeat):
        api.flush()
        runs = api.runs("acme/bench", per_page=args.page, lazy=False)
        start = time.perf_counter()
        next(iter(runs))
        timings.append(time.perf_counter() - start)
    print(
        f"one page of {args.page} runs (full fragment) via wandb: best {min(timings) * 1000:.0f} ms, "
        f"median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms"
    )

    api.flush()
    rss_before = _rss_mib()
    start = time.perf_counter()
    count = 0
    for _ in api.runs("acme/bench", per_page=args.page, filters={"state": "finished"}, order="-created_at"):
        count += 1
        if count % (args.page * 10) == 0:
            api.flush()  # the client caches its Runs objects; drop them so only the server is measured
    print(
        f"filtered listing of {count} runs in pages of {args.page}: {time.perf_counter() - start:.1f} s; "
        f"max RSS {rss_before:.0f} -> {_rss_mib():.0f} MiB (server and client in one process)"
    )
    server.shutdown()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
