"""``reconcile plan``: read live runs, diff them against the spec, print (and save) the plan.

Orchestration only: the spec loader reads the files, ``reader`` says what to read and streams
the runs (files included where a file rule needs them) page by page, the pure planner diffs
them one at a time and spools each finished run to disk (so memory stays flat), and a renderer
prints the result, reading the runs back one at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import click
import structlog

from reconcile.backend import Backend
from reconcile.commands.paths import check_distinct, check_output_file
from reconcile.errors_handler import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from reconcile.import_reads import plan_imports
from reconcile.models import Plan, Spec
from reconcile.planfile import write_plan
from reconcile.planner import Planner
from reconcile.reader import RunReader, with_env_defaults
from reconcile.render import render
from reconcile.spec import load_spec
from reconcile.spec.files import expand

log = structlog.get_logger()


def build_plan(files: list[Path], targets: list[str], source: Backend, *, parallelism: int = 10,
               now: datetime | None = None, on_progress: Callable[[int], None] | None = None) -> Plan:
    """Load the specs, stream the matching live runs from ``source`` and plan them."""
    return plan_spec(load_spec(files), targets, source, parallelism=parallelism, now=now,
                     on_progress=on_progress)


def plan_spec(spec: Spec, targets: list[str], source: Backend, *, parallelism: int = 10,
              now: datetime | None = None, on_progress: Callable[[int], None] | None = None) -> Plan:
    """Stream the live runs ``spec`` selects from ``source`` and plan them."""
    spec = with_env_defaults(spec)
    now = now or datetime.now(timezone.utc)
    reader = RunReader(spec, targets, now)
    planner = Planner(spec, now=now, base_url=source.base_url, targets=reader.targets)
    for read, run in enumerate(reader.runs(source, parallelism=parallelism), 1):
        planner.add(run)
        if on_progress is not None:
            on_progress(read)
    imported = plan_imports(spec, source, planner, parallelism=parallelism, targets=reader.targets)
    if spec.imports:
        reader.check_found(imported)
    return planner.finish()


def _progress_reporter() -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A stderr counter of runs read, on a TTY only."""
    if not sys.stderr.isatty():
        return None, lambda: None

    def report(count: int) -> None:
        if count % 100 == 0:
            click.echo(f"\rReading runs... {count}", err=True, nl=False)

    return report, lambda: click.echo("\r\033[K", err=True, nl=False)


def run(files: list[Path], *, out: Path | None, fmt: str, detailed_exitcode: bool, targets: list[str],
        color: bool, parallelism: int, show_kept: bool = False) -> int:
    """Plan, render to stdout, save with ``-o``; return the exit code (0, 1, or 2 with changes)."""
    from reconcile.backend.wandb_api import WandbBackend

    spec = load_spec(files)  # a bad spec fails before credentials or the network are touched
    if out is not None:
        check_distinct([("-o", out)], [("a spec file", path) for _name, path in expand(files)[0]])
        check_output_file(out, "-o")  # before minutes of reading, not after
    report, done = _progress_reporter()
    backend = WandbBackend()
    try:
        plan = plan_spec(spec, targets, backend, parallelism=parallelism, on_progress=report)
    finally:
        done()
        backend.close()
    try:
        return _show_and_save(plan, out=out, fmt=fmt, detailed_exitcode=detailed_exitcode, color=color,
                              show_kept=show_kept)
    finally:
        plan.close()  # its spool file: removed now, whatever happened


def _show_and_save(plan: Plan, *, out: Path | None, fmt: str, detailed_exitcode: bool, color: bool,
                   show_kept: bool) -> int:
    # The plan file is written before stdout, so that a reader of stdout that stops early
    # (`plan -o plan.json | head`) cannot lose it; the lines on stderr still follow the plan.
    saved = None if plan.has_errors else out
    if saved is not None:
        write_plan(plan, saved)
    try:
        render(plan, sys.stdout, fmt, color=color, show_kept=show_kept)
    finally:
        if saved is not None:
            click.echo(f"Saved the plan to {saved}. Apply exactly this plan with: reconcile apply {saved}",
                       err=True)
    if plan.has_errors:
        if out is not None:
            click.echo(f"The plan has errors; {out} was not written.", err=True)
        return EXIT_ERROR
    if detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK
