"""The read side of imports: stream each import's source runs, read their destination runs in
batches, and hand each pair to the pure import planner. The planner never reads; this never plans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from itertools import islice

import structlog

from reconcile.backend import Backend
from reconcile.errors import NotFound, PlanError
from reconcile.import_planner import plan_import
from reconcile.models import ConfigWrites, Import, Spec
from reconcile.planner import Planner
from reconcile.sources import SourceReader, SourceRun, open_reader

log = structlog.get_logger(__name__)

BATCH = 100
"""Source runs whose destination runs are read in one batched request."""


def open_source(entry: Import, *, parallelism: int) -> SourceReader:
    """The reader of ``entry``'s source."""
    return open_reader(entry.name, entry.source, parallelism=parallelism)


def _batches(runs: Iterator[SourceRun], size: int) -> Iterator[list[SourceRun]]:
    while batch := list(islice(runs, size)):
        yield batch


def plan_imports(spec: Spec, backend: Backend, planner: Planner, *, parallelism: int,
                 targets: Mapping[tuple[str, str], frozenset[str] | None] | None = None,
                 ) -> set[tuple[str, str, str]]:
    """Plan every import of ``spec`` into ``planner`` (targets must already carry env defaults); with
    ``targets`` (``--target``, parsed), only the imports into a project it names, and of those only the
    runs it names. Returns the ``(entity, project, id)`` of every source run selected (planned or in sync)."""
    selected: set[tuple[str, str, str]] = set()
    for entry in spec.imports:
        entity, project = entry.target.entity, entry.target.project
        if not entity or not project:
            raise PlanError(f"import {entry.name!r} has no destination: give `target` (entity and project) "
                            "in the spec, or set WANDB_ENTITY and WANDB_PROJECT")
        if targets is not None and (entity, project) not in targets:
            continue  # --target names nothing in this import's project
        ids = None if targets is None else targets[(entity, project)]
        writes = entry.target.config_writes or ConfigWrites.MERGE
        reader = open_source(entry, parallelism=parallelism)
        log.info("reading import source", name=entry.name, source=reader.description)
        try:
            for batch in _batches(reader.runs(ids), BATCH):
                try:
                    live = backend.get_runs(entity, project, [run.id for run in batch])
                except NotFound:  # a new destination project: apply's first creation makes it
                    live = {}
                for source in batch:
                    selected.add((entity, project, source.id))
                    run = live.get(source.id)
                    if run is not None and run.files is None:
                        run = dataclasses.replace(run, files=backend.list_files(run))
                    plan = plan_import(entry, entity, project, source, run, config_writes=writes)
                    if plan is not None:
                        planner.add_import(plan)
        finally:
            reader.close()
    return selected
