"""Measure the emulator with the real wandb client: seeding, one 1,000-run page, a long paged listing.

    python benchmarks/emulator_listing.py --runs 100000

The emulator runs as its own process (``reconcile emulator``) so its memory is measured alone.
Prints one line per measurement; the figures go into ``benchmarks/README.md`` ("Emulator").
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import wandb

from reconcile.emulator.fixture import parse_fixture, synthetic_runs
from reconcile.emulator.store import Store
from reconcile.emulator.testing import running_emulator

BENCH_API_KEY = "local-" + "b" * 40


def _rss_mib(pid: int | None) -> tuple[float, float]:
    """Current and peak resident memory (MiB) of a process, from /proc (Linux)."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _first_page_ms(api: Any, page: int, repeat: int, *, lazy: bool) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        api.flush()
        runs = api.runs("acme/bench", per_page=page, lazy=lazy)
        start = time.perf_counter()
        next(iter(runs))  # loads exactly the first page
        timings.append(time.perf_counter() - start)
    return min(timings) * 1000, statistics.median(timings) * 1000


def main(argv: list[str] | None = None) -> int:
    """Seed, serve from a subprocess, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_DIR"] = str(tmp)
    db = tmp / "bench.sqlite"
    t0 = time.perf_counter()
    fixture = parse_fixture({"runs": list(synthetic_runs(args.runs, entity="acme", project="bench"))})
    t1 = time.perf_counter()
    store = Store(db, reset=True)
    store.seed(fixture)
    store.close()
    print(f"seed {args.runs} runs: normalise {t1 - t0:.2f} s, SQLite insert {time.perf_counter() - t1:.2f} s")
    del fixture

    with running_emulator(db=db, subprocess=True) as emu:
        api: Any = wandb.Api(overrides={"base_url": emu.url}, api_key=BENCH_API_KEY)
        for lazy in (True, False):
            best, median = _first_page_ms(api, args.page, args.repeat, lazy=lazy)
            print(
                f"one page of {args.page} runs ({'lazy' if lazy else 'full'} fragment) through wandb: "
                f"best {best:.0f} ms, median {median:.0f} ms"
            )
        api.flush()
        rss_before, _ = _rss_mib(emu.pid)
        start = time.perf_counter()
        count = 0
        for _ in api.runs("acme/bench", per_page=args.page, order="-created_at"):
            count += 1
        elapsed = time.perf_counter() - start
        rss_after, peak = _rss_mib(emu.pid)
        print(
            f"listing of all {count} runs in pages of {args.page}: {elapsed:.1f} s "
            f"({elapsed / max(count // args.page, 1) * 1000:.0f} ms/page); emulator RSS {rss_before:.0f} MiB "
            f"before, {rss_after:.0f} MiB after, peak {peak:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
