"""Benchmark reconcile against the loop users write today, on the local emulator.

    .venv/bin/python benchmarks/run.py                     # 1,000 runs x 20 files at 20 ms: loop vs reconcile
    .venv/bin/python benchmarks/run.py --runs 100 --files 20
    .venv/bin/python benchmarks/run.py --only scale --scale 100000

Each phase gets a fresh copy of one seeded database and its own emulator subprocess (so the
server's CPU and memory are not the client's); the client runs in a subprocess too and its peak
RSS is its own VmHWM (``benchmarks/peak_rss.py``). See ``benchmarks/README.md`` for what each column means.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import fixture
from reconcile.emulator.testing import running_emulator

BENCH_API_KEY = "local-" + "b" * 40  # the emulator accepts any key; this one is a placeholder
LISTING = "Runs"  # the client's paged runs query (operation name parsed from the query text)
APPLY_FLAGS: list[str] = ["--no-backup"]  # the loops it is compared with delete without a copy too


@dataclasses.dataclass
class Step:
    """One client process: its command, exit code, wall time, peak RSS and output."""

    label: str
    argv: list[str]
    returncode: int
    seconds: float
    max_rss_mib: float
    stdout: str
    stderr: str


@dataclasses.dataclass
class Phase:
    """One way of doing the change set (or one scale measurement) against its own emulator."""

    name: str
    steps: list[Step]
    seconds: float
    requests: int
    operations: dict[str, int]
    listing_requests: int  # Runs pages that list the project (not the batched re-reads)
    db: Path

    @property
    def max_rss_mib(self) -> float:
        """The largest client process's peak RSS."""
        return max(s.max_rss_mib for s in self.steps)

    @property
    def ok(self) -> bool:
        """Every client process exited 0."""
        return all(s.returncode == 0 for s in self.steps)


HTTP_TIMEOUT: int | None = None
"""``--http-timeout``: WANDB_HTTP_TIMEOUT for the client processes (None: the client's default)."""


def client_env(url: str, home: Path) -> dict[str, str]:
    """The environment of a client process: pointed at the emulator, nothing written to the real home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    if HTTP_TIMEOUT is not None:
        env["WANDB_HTTP_TIMEOUT"] = str(HTTP_TIMEOUT)
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "WANDB_BASE_URL": url, "WANDB_API_KEY": BENCH_API_KEY, "WANDB_SILENT": "true", "WANDB_DIR": str(home),
        "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_CACHE_DIR": str(home / "cache"), "HOME": str(home),
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1",
    })
    return env


def run_client(label: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path) -> Step:
    """Run one Python client process (``[python, ...]``) to the end and measure its own peak RSS.

    The client runs under ``benchmarks/peak_rss.py``, which reads the process's VmHWM at exit: the
    rusage of a child would include this harness's RSS at fork time (see that module).
    """
    out_path, err_path = workdir / f"{label}.stdout", workdir / f"{label}.stderr"
    rss_path = workdir / f"{label}.peak-rss"
    rss_path.unlink(missing_ok=True)
    wrapped = [argv[0], str(Path(__file__).with_name("peak_rss.py")), str(rss_path), *argv[1:]]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.run(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=dict(env),
                              cwd=workdir, check=False)
        seconds = time.perf_counter() - start
    peak = int(rss_path.read_text()) / 1024 if rss_path.exists() else math.nan
    return Step(label, list(argv), proc.returncode, seconds, peak,
                out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


def run_phase(name: str, base_db: Path, workdir: Path, latency_ms: int,
              commands: Sequence[tuple[str, list[str]]], *, listing_steps: Sequence[str] = ()) -> Phase:
    """Copy the seeded database, serve it with latency from a subprocess emulator and run ``commands``.

    ``listing_steps`` names the steps whose ``Runs`` requests are listing pages (the loop's listing, the
    plan's listing); ``Runs`` requests of other steps are batched re-reads.
    """
    db = fixture.copy_db(base_db, workdir / f"{name}.sqlite")
    steps: list[Step] = []
    listing = 0
    with running_emulator(db=db, latency_ms=latency_ms, subprocess=True) as emu:
        env = client_env(emu.url, workdir / f"{name}-home")
        emu.reset_stats()
        start = time.perf_counter()
        for label, argv in commands:
            before = emu.stats()["operations"].get(LISTING, 0)
            step = run_client(f"{name}-{label}", argv, env, workdir)
            steps.append(step)
            if label in listing_steps:
                listing += emu.stats()["operations"].get(LISTING, 0) - before
            if step.returncode != 0:
                break
        seconds = time.perf_counter() - start
        stats = emu.stats()
    return Phase(name, steps, seconds, stats["requests"], stats["operations"], listing, db)


def reconcile_argv(*args: str) -> list[str]:
    """``python -m reconcile ARGS`` with this interpreter."""
    return [sys.executable, "-m", "reconcile", *args]


def compare(a: Path, b: Path, *, show: int = 5) -> list[str]:
    """Differences between two end states (empty when identical), at most ``show`` described."""
    left, right = dict(fixture.end_state(a)), dict(fixture.end_state(b))
    diffs = [f"run only in {a.name if k in left else b.name}: {k}" for k in sorted(set(left) ^ set(right))]
    for key in sorted(set(left) & set(right)):
        for field in left[key]:
            if left[key][field] != right[key][field]:
                diffs.append(f"{key} {field}: {left[key][field]!r} != {right[key][field]!r}")
    return diffs[:show] + ([f"... and {len(diffs) - show} more"] if len(diffs) > show else [])


def changed_runs(before: Path, after: Path) -> int:
    """How many runs differ between two databases."""
    old = dict(fixture.end_state(before))
    return sum(1 for key, state in fixture.end_state(after) if old.get(key) != state)


def _fmt(value: float, unit: str = "") -> str:
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:,.1f}{unit}" if value >= 10 else f"{value:,.2f}{unit}"


def print_table(rows: Sequence[tuple[str, Sequence[str]]], header: Sequence[str]) -> None:
    """A plain fixed-width table on stdout."""
    widths = [max(len(header[i]), *(len(r[1][i - 1]) if i else len(r[0]) for r in rows))
              for i in range(len(header))]
    pairs = enumerate(zip(header, widths, strict=True))
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in pairs)
    print(line)
    print("-" * len(line))
    for label, cells in rows:
        cells_text = (c.rjust(w) for c, w in zip(cells, widths[1:], strict=True))
        print("  ".join([label.ljust(widths[0]), *cells_text]))


def _fail(phase: Phase) -> int:
    step = phase.steps[-1]
    print(f"\n{phase.name}: `{' '.join(step.argv[1:])}` exited {step.returncode}\n"
          f"--- stdout (tail)\n{step.stdout[-3000:]}\n--- stderr (tail)\n{step.stderr[-3000:]}",
          file=sys.stderr)
    return 1


def _loop_argv(args: argparse.Namespace, threads: int) -> list[str]:
    argv = [sys.executable, str(Path(__file__).with_name("loop.py")), "--threads", str(threads)]
    return argv + ([] if args.files else ["--no-files"])


SIDES = ("reconcile", "threads", "loop")
"""The ways of doing the change set, in the order they run (the slowest last)."""


def seeded_base(args: argparse.Namespace, workdir: Path) -> Path:
    """``workdir/base.sqlite`` seeded with ``--runs`` x ``--files``; with ``--reuse-seed``, one this
    harness seeded earlier with the same sizes is used as it is (seeding 2,000,000 files takes minutes)."""
    base, marker = workdir / "base.sqlite", workdir / "base.seeded"
    sizes = f"{args.runs} {args.files} {fixture.__name__}"
    if args.reuse_seed and base.exists() and marker.exists() and marker.read_text() == sizes:
        print(f"reusing {base} ({args.runs} runs x {args.files} files, seeded earlier)", flush=True)
        return base
    marker.unlink(missing_ok=True)
    fixture.seed_db(fixture.generate(args.runs, args.files), base)
    marker.write_text(sizes)
    return base


def compare_mode(args: argparse.Namespace, workdir: Path) -> int:
    """reconcile vs the 10-thread loop vs the loop on the same data; verify identical end states."""
    t0 = time.perf_counter()
    base = seeded_base(args, workdir)
    spec_path = fixture.write_spec(fixture.spec(files=args.files > 0), workdir / "spec.yaml")
    print(f"seeded {args.runs} runs x {args.files} files in {time.perf_counter() - t0:.1f} s; "
          f"emulator latency {args.latency_ms} ms; work dir {workdir}; load {_load()}", flush=True)
    sides = [s for s in SIDES if args.only is None or s in args.only.split(",")]
    phases: dict[str, Phase] = {}
    for side in sides:
        if side == "reconcile":
            plan_file = workdir / "plan.json"
            apply_flags = ["--no-color", "--parallelism", str(args.parallelism), *APPLY_FLAGS]
            commands = [
                ("plan", reconcile_argv("plan", "-f", str(spec_path), "-o", str(plan_file), "--no-color",
                                        "--parallelism", str(args.parallelism))),
                ("apply", reconcile_argv("apply", str(plan_file), *apply_flags)),
            ][:1 if args.plan_only else 2]
            listing: tuple[str, ...] = ("plan",)
        else:
            threads = args.threads if side == "threads" else 1
            commands, listing = [(side, _loop_argv(args, threads))], (side,)
        phases[side] = phase = run_phase(side, base, workdir, args.latency_ms, commands, listing_steps=listing)
        if not phase.ok:
            return _fail(phase)
        print(f"{side}: {phase.seconds:.1f} s, {phase.requests} requests; load {_load()}", flush=True)

    some = next(iter(phases.values()))
    changed = changed_runs(base, some.db)
    identical: bool | None = None
    others = [(name, phase.db) for name, phase in phases.items()]
    others += [(f"recorded {db.name}", db) for db in args.compare_with]
    if len(others) > 1:
        identical = True
        first_name, first_db = others[0]
        for name, db in others[1:]:
            diffs = compare(first_db, db)
            if diffs:
                identical = False
                print(f"END STATES DIFFER ({first_name} vs {name}):\n  " + "\n  ".join(diffs), file=sys.stderr)
    header = ["", "wall s", "requests", "req/run", "req/changed run*", "peak RSS MiB"]
    rows = []
    for phase in phases.values():
        rows.append((phase.name, [
            _fmt(phase.seconds), f"{phase.requests:,}", _fmt(phase.requests / max(args.runs, 1)),
            _fmt((phase.requests - phase.listing_requests) / changed) if changed else "-",
            _fmt(phase.max_rss_mib)]))
    rec = phases.get("reconcile")
    for side in ("loop", "threads"):
        if rec is not None and side in phases:
            other = phases[side]
            rows.append((f"{side} / reconcile", [
                f"{other.seconds / rec.seconds:.1f}x", f"{other.requests / rec.requests:.1f}x", "", "",
                f"{other.max_rss_mib / rec.max_rss_mib:.2f}x"]))
    print()
    print(f"{args.runs:,} runs x {args.files} files, {changed:,} runs changed, latency {args.latency_ms} ms, "
          f"parallelism {args.parallelism}, loop threads {args.threads}; load after: {_load()}")
    print_table(rows, header)
    print("* excluding the Runs pages that list the project")
    for phase in phases.values():
        steps = ", ".join(f"{s.label.split('-', 1)[1]} {s.seconds:.1f} s / {s.max_rss_mib:.0f} MiB"
                          for s in phase.steps)
        ops = ", ".join(f"{k} {v}" for k, v in sorted(phase.operations.items(), key=lambda kv: -kv[1]))
        print(f"{phase.name}: {steps}; listing pages {phase.listing_requests}; operations: {ops}")
    if identical is not None:
        print(f"end states identical: {'yes' if identical else 'NO'} ({', '.join(n for n, _ in others)})")
    return 0 if identical in (None, True) else 1


def _load() -> str:
    """The 1/5/15-minute load averages (the machine is shared: figures move with it)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def scale_mode(args: argparse.Namespace, workdir: Path) -> int:
    """No-op and full plans over ``--scale`` runs (no files), and a no-op plan of 1,000 runs."""
    rows = []
    noop = fixture.write_spec(fixture.noop_spec(), workdir / "noop.yaml")
    full = fixture.write_spec(fixture.spec(files=False), workdir / "full.yaml")
    plans = ((args.scale, (("no-op plan", noop), ("full plan", full))), (1000, (("no-op plan", noop),)))
    for runs, specs in plans:
        t0 = time.perf_counter()
        base = workdir / f"scale-{runs}.sqlite"
        fixture.seed_db(fixture.generate(runs, 0), base)
        print(f"seeded {runs:,} runs in {time.perf_counter() - t0:.1f} s", flush=True)
        for label, spec_path in specs:
            name = f"{label.split()[0]}-{runs}"
            phase = run_phase(name, base, workdir, args.latency_ms, [
                ("plan", reconcile_argv("plan", "-f", str(spec_path), "-o", str(workdir / f"{name}.json"),
                                        "--no-color", "--parallelism", str(args.parallelism)))],
                listing_steps=("plan",))
            if not phase.ok:
                return _fail(phase)
            summary = [line for line in phase.steps[0].stdout.splitlines()
                       if line.startswith(("Plan:", "No "))]
            rows.append((f"{label}, {runs:,} runs", [
                _fmt(phase.seconds), f"{phase.requests:,}", _fmt(phase.max_rss_mib),
                (summary[-1] if summary else "")[:60]]))
            print(f"{rows[-1][0]}: {phase.seconds:.1f} s", flush=True)
    print()
    print(f"scale (no files), latency {args.latency_ms} ms, parallelism {args.parallelism}")
    print_table(rows, ["", "wall s", "requests", "peak RSS MiB", "plan"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the chosen benchmark, print its table; exit 1 if anything failed."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="runs in the fixture (default 1000)")
    parser.add_argument("--files", type=int, default=20, help="files per run (default 20)")
    parser.add_argument("--latency-ms", type=int, default=20, help="emulator latency per request")
    parser.add_argument("--scale", type=int, default=100_000, help="runs for --only scale (default 100000)")
    parser.add_argument("--only", help="comma-separated sides among reconcile,threads,loop (default: all "
                                       "three), or scale")
    parser.add_argument("--parallelism", type=int, default=10, help="reconcile --parallelism (default 10)")
    parser.add_argument("--threads", type=int, default=10, help="threads of the threaded loop (default 10)")
    parser.add_argument("--compare-with", type=Path, action="append", default=[],
                        help="also require the end state of this database (kept by an earlier run's work dir, "
                             "e.g. loop.sqlite) to be identical")
    parser.add_argument("--workdir", type=Path, help="keep databases, plans, logs here")
    parser.add_argument("--reuse-seed", action="store_true",
                        help="use the work dir's base.sqlite if this harness seeded it with the same --runs "
                             "and --files (seeding 100,000 x 20 takes minutes)")
    parser.add_argument("--http-timeout", type=int,
                        help="WANDB_HTTP_TIMEOUT (seconds) for the clients; default: the client's own (on a "
                             "saturated machine a page of 100 runs with their files can outlast it)")
    parser.add_argument("--plan-only", action="store_true",
                        help="with --only reconcile: run `reconcile plan` and not the apply (plan's wall time and "
                             "peak RSS at sizes where the apply would take hours)")
    args = parser.parse_args(argv)
    if args.plan_only and args.only != "reconcile":
        parser.error("--plan-only needs --only reconcile (the other sides' end states would differ)")
    global HTTP_TIMEOUT  # noqa: PLW0603 - one setting for every client process of this run
    HTTP_TIMEOUT = args.http_timeout
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    if args.only == "scale":
        return scale_mode(args, workdir)
    return compare_mode(args, workdir)


if __name__ == "__main__":
    raise SystemExit(main())
