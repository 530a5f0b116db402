"""``reconcile plan``: read live runs, diff them against the spec, print (and save) the plan.

Orchestration only: the spec loader reads the files, ``selection`` says what to ask the
server for, the backend streams runs page by page, the pure planner diffs them one at a
time (so memory stays flat), and a renderer prints the result.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import click
import structlog

from reconcile import selection
from reconcile.backend import Backend
from reconcile.errors import PlanError
from reconcile.errors_handler import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from reconcile.import_reads import plan_imports
from reconcile.models import LiveRun, Plan, Rule, Spec, Target
from reconcile.planfile import write_plan
from reconcile.planner import Planner, needs_artifacts, needs_files
from reconcile.render import render
from reconcile.spec import load_spec

log = structlog.get_logger()

_FILE_FETCH_CHUNK = 200  # runs whose file lists are fetched concurrently at a time


def with_env_defaults(spec: Spec, environ: dict[str, str] | None = None) -> Spec:
    """The spec with targets lacking an entity or project filled from WANDB_ENTITY/WANDB_PROJECT."""
    env = os.environ if environ is None else environ
    default = Target(entity=env.get("WANDB_ENTITY") or None, project=env.get("WANDB_PROJECT") or None)
    rules = tuple(dataclasses.replace(rule, target=rule.target.over(default)) for rule in spec.rules)
    imports = tuple(dataclasses.replace(entry, target=entry.target.over(default)) for entry in spec.imports)
    return dataclasses.replace(spec, target=spec.target.over(default), rules=rules, imports=imports)


def parse_targets(targets: Sequence[str]) -> dict[tuple[str, str], set[str]]:
    """``--target ENTITY/PROJECT/RUN_ID`` values grouped by project."""
    out: dict[tuple[str, str], set[str]] = {}
    for raw in targets:
        parts = raw.strip().strip("/").split("/")
        if len(parts) != 3 or not all(parts):
            raise PlanError(f"--target {raw!r} is not ENTITY/PROJECT/RUN_ID (e.g. acme/vision/abc123)")
        out.setdefault((parts[0], parts[1]), set()).add(parts[2])
    return out


def _restrict(filters: dict[str, Any] | None, run_ids: set[str] | None) -> dict[str, Any] | None:
    if run_ids is None:
        return filters
    by_name = {"name": {"$in": sorted(run_ids)}}
    return by_name if filters is None else {"$and": [filters, by_name]}


def _chunks(items: Iterable[LiveRun], size: int) -> Iterator[list[LiveRun]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _with_files(spec: Spec, runs: Iterable[LiveRun], backend: Backend, now: datetime,
                parallelism: int) -> Iterator[LiveRun]:
    """Attach file lists (and logged artifact versions) to the runs a files (artifacts) rule matches,
    fetching them concurrently."""
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="files") as pool:

        def attach(run: LiveRun) -> LiveRun:
            if needs_files(spec, run, now):
                run = dataclasses.replace(run, files=backend.list_files(run))
            if needs_artifacts(spec, run, now):
                run = dataclasses.replace(run, artifacts=backend.list_artifacts(run))
            return run

        for chunk in _chunks(runs, _FILE_FETCH_CHUNK):
            yield from pool.map(attach, chunk)


def build_plan(files: list[Path], targets: list[str], backend: Backend, *, parallelism: int = 10,
               now: datetime | None = None,
               on_progress: Callable[[int], None] | None = None) -> Plan:
    """Load the specs, stream the matching live runs from ``backend`` and plan them."""
    return plan_spec(load_spec(files), targets, backend, parallelism=parallelism, now=now,
                     on_progress=on_progress)


def plan_spec(spec: Spec, targets: list[str], backend: Backend, *, parallelism: int = 10,
              now: datetime | None = None, on_progress: Callable[[int], None] | None = None) -> Plan:
    """Stream the live runs ``spec`` selects from ``backend`` and plan them."""
    spec = with_env_defaults(spec)
    now = now or datetime.now(timezone.utc)
    wanted = parse_targets(targets) if targets else None
    planner = Planner(spec, now=now, base_url=backend.base_url)
    read = 0
    found: set[tuple[str, str, str]] = set()
    projects = selection.targets(spec)
    if wanted is not None:
        _check_targets(wanted, projects)
    for (entity, project), rules in projects.items():
        run_ids = None if wanted is None else wanted.get((entity, project))
        if wanted is not None and run_ids is None:
            continue  # --target names no run of this project
        filters = _restrict(selection.project_filter(rules, now), run_ids)
        log.info("listing runs", project=f"{entity}/{project}", filters=filters)
        runs = backend.iter_runs(entity, project, filters)
        for run in _with_files(spec, runs, backend, now, parallelism):
            if run_ids is not None and run.id not in run_ids:
                continue
            found.add((entity, project, run.id))
            planner.add(run)
            read += 1
            if on_progress is not None:
                on_progress(read)
    if wanted is not None:
        missing = sorted(f"{e}/{p}/{i}" for (e, p), ids in wanted.items() for i in ids
                         if (e, p, i) not in found)
        if missing:
            raise PlanError(f"--target {', '.join(missing)}: no such run is selected by the spec's rules "
                            "(check the id, the project, and the rules' match)")
    plan_imports(spec, backend, planner, parallelism=parallelism, targets=targets)
    return planner.finish()


def _check_targets(wanted: dict[tuple[str, str], set[str]],
                   projects: dict[tuple[str, str], list[Rule]]) -> None:
    """Refuse --target where it would change the plan of the runs it names."""
    for key in wanted:
        ranked = [r.name for r in projects.get(key, []) if r.files is not None and r.files.unless_top]
        if ranked:
            # unless_top ranks all of a rule's matched runs; planning only some would rank them alone.
            raise PlanError(f"--target cannot be used with unless_top rules ({', '.join(ranked)}): their "
                            "ranking needs every run they match. Plan without --target.")


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
    report, done = _progress_reporter()
    backend = WandbBackend()
    try:
        plan = plan_spec(spec, targets, backend, parallelism=parallelism, on_progress=report)
    finally:
        done()
        backend.close()
    render(plan, sys.stdout, fmt, color=color, show_kept=show_kept)
    if plan.has_errors:
        if out is not None:
            click.echo(f"The plan has errors; {out} was not written.", err=True)
        return EXIT_ERROR
    if out is not None:
        write_plan(plan, out)
        click.echo(f"Saved the plan to {out}. Apply exactly this plan with: reconcile apply {out}", err=True)
    if detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK
