"""The read side of a plan: which projects and runs to read, with or without files, batched,
restricted by ``--target``. The planner never reads; this module never plans.

``reads`` turns a spec (and ``--target``) into one ``ProjectRead`` per project: the server-side
filter (``selection``), the runs ``--target`` names, and whether the project's file rules need
file lists; where a rule ranks runs (``unless_top``, artifact collections), a second read brings
the rest of its match, without files, for the planner to rank but not change. ``RunReader``
streams the runs of those reads from a ``RunSource``: anything with the Backend's ``iter_runs``
shape (W&B through ``reconcile.backend``; another source, such as an import's, reads through the
same shape). File lists come inside the batched ``Runs`` pages.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Any, Protocol

import structlog

from reconcile import selection
from reconcile.errors import BackendError, PlanError
from reconcile.models import LiveArtifact, LiveRun, Rule, Spec, Target
from reconcile.planner import needs_artifacts, needs_files

log = structlog.get_logger(__name__)

_ARTIFACT_CHUNK = 200
"""Runs whose artifact versions are listed concurrently at a time."""


class RunSource(Protocol):
    """Where runs are read from: pages of a project's runs matching a filter, files if asked."""

    base_url: str

    def iter_runs(self, entity: str, project: str, filters: Mapping[str, Any] | None = None, *,
                  per_page: int | None = None, with_files: bool = False) -> Iterator[LiveRun]:
        """Stream the project's runs matching ``filters``; ``with_files``: each with every file."""
        ...

    def list_artifacts(self, run: LiveRun) -> tuple[LiveArtifact, ...]:
        """Every artifact version the run logged."""
        ...


@dataclass(frozen=True, slots=True)
class ProjectRead:
    """One project's read: the server filter, the runs ``--target`` names, whether files are needed."""

    entity: str
    project: str
    rules: tuple[Rule, ...]
    filters: dict[str, Any] | None
    run_ids: frozenset[str] | None = None  # None: every run the filter selects
    with_files: bool = False
    context: bool = False  # the runs outside run_ids, without files: only for rankings (ranks_runs)


def with_env_defaults(spec: Spec, environ: Mapping[str, str] | None = None) -> Spec:
    """The spec with targets lacking an entity or project filled from WANDB_ENTITY/WANDB_PROJECT."""
    env = os.environ if environ is None else environ
    default = Target(entity=env.get("WANDB_ENTITY") or None, project=env.get("WANDB_PROJECT") or None)
    rules = tuple(dataclasses.replace(rule, target=rule.target.over(default)) for rule in spec.rules)
    imports = tuple(dataclasses.replace(entry, target=entry.target.over(default)) for entry in spec.imports)
    return dataclasses.replace(spec, target=spec.target.over(default), rules=rules, imports=imports)


def parse_targets(targets: Sequence[str]) -> dict[tuple[str, str], frozenset[str] | None]:
    """``--target`` values by project: ``ENTITY/PROJECT/RUN_ID`` adds a run, ``ENTITY/PROJECT`` takes
    every run of the project (None)."""
    out: dict[tuple[str, str], frozenset[str] | None] = {}
    for raw in targets:
        parts = raw.strip().strip("/").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise PlanError(f"--target {raw!r} is not ENTITY/PROJECT/RUN_ID or ENTITY/PROJECT "
                            "(e.g. acme/vision/abc123, acme/vision)")
        key = (parts[0], parts[1])
        if len(parts) == 2:
            out[key] = None
        elif key not in out or out[key] is not None:
            out[key] = (out.get(key) or frozenset()) | {parts[2]}
    return out


def import_projects(spec: Spec) -> set[tuple[str, str]]:
    """The destination projects of the spec's imports (targets must already carry env defaults)."""
    return {(i.target.entity, i.target.project) for i in spec.imports if i.target.entity and i.target.project}


def _check_targets(wanted: Mapping[tuple[str, str], frozenset[str] | None],
                   projects: Mapping[tuple[str, str], list[Rule]], imported: set[tuple[str, str]]) -> None:
    """Refuse a --target project that no rule or import of the spec targets."""
    unknown = sorted(f"{e}/{p}" for e, p in wanted if (e, p) not in projects and (e, p) not in imported)
    if unknown:
        known = ", ".join(sorted(f"{e}/{p}" for e, p in set(projects) | imported)) or "none"
        what = "rule or import" if imported else "rule"
        raise PlanError(f"--target {', '.join(unknown)}: no {what} of the spec targets that project "
                        f"(the spec's projects: {known})")


def ranks_runs(rule: Rule) -> bool:
    """Whether what ``rule`` does to one run depends on the other runs it matches: ``files.unless_top``
    ranks them, and an ``artifacts:`` block ranks whole collections (``keep_last``, calendar buckets)
    and the runs that logged them (``unless_top``)."""
    return (rule.files is not None and rule.files.unless_top is not None) or rule.artifacts is not None


def _restrict(filters: dict[str, Any] | None, run_ids: frozenset[str] | None) -> dict[str, Any] | None:
    if run_ids is None:
        return filters
    by_name = {"name": {"$in": sorted(run_ids)}}
    return by_name if filters is None else {"$and": [filters, by_name]}


def reads(spec: Spec, targets: Sequence[str], now: datetime) -> list[ProjectRead]:
    """One read per project the spec's rules target (only those ``--target`` names, if given)."""
    wanted = parse_targets(targets) if targets else None
    projects = selection.targets(spec)
    if wanted is not None:
        _check_targets(wanted, projects, import_projects(spec))
    out = []
    for (entity, project), rules in projects.items():
        if wanted is not None and (entity, project) not in wanted:
            continue  # --target names nothing in this project
        ids = None if wanted is None else wanted[(entity, project)]
        filters = selection.project_filter(rules, now)
        out.append(ProjectRead(entity, project, tuple(rules), _restrict(filters, ids), ids,
                               with_files=any(rule.files is not None for rule in rules)))
        if ids is not None and any(ranks_runs(rule) for rule in rules):
            # A ranking is over the rule's whole match: the other runs are read too (after the
            # targeted ones, without files); the planner only ranks them.
            out.append(ProjectRead(entity, project, tuple(rules), filters, ids, context=True))
    return out


def _wanted(read: ProjectRead, live: LiveRun) -> bool:
    """Whether a listed run belongs to ``read`` (the server filter is only an optimisation)."""
    if read.run_ids is None:
        return True
    return (live.id not in read.run_ids) if read.context else (live.id in read.run_ids)


class RunReader:
    """Streams the runs a spec selects, in project order, each with its files when a file rule needs them."""

    def __init__(self, spec: Spec, targets: Sequence[str], now: datetime) -> None:
        self.spec, self.now = spec, now
        self.targets = parse_targets(targets) if targets else None
        self.reads = reads(spec, targets, now)
        self.found: set[tuple[str, str, str]] = set()

    def runs(self, source: RunSource, *, parallelism: int = 10) -> Iterator[LiveRun]:
        """Every selected run from ``source``; raises PlanError at the end if a ``--target`` was not found
        (unless the spec has imports, which may find it: then the caller calls ``check_found``).

        Files come inside the listing pages; the artifact versions a run logged (only for runs an
        ``artifacts:`` rule matches) are listed per run, ``parallelism`` at a time.
        """
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="artifacts") as pool:
            for read in self.reads:
                log.info("listing runs", project=f"{read.entity}/{read.project}", filters=read.filters,
                         with_files=read.with_files)
                chosen = (live for live in self._listing(source, read) if _wanted(read, live))
                while chunk := list(islice(chosen, _ARTIFACT_CHUNK)):
                    yield from pool.map(partial(self._complete, source, read), chunk)
        if not self.spec.imports:
            self.check_found()

    def _listing(self, source: RunSource, read: ProjectRead) -> Iterator[LiveRun]:
        """The runs of one read; a listing the server refuses names the rule (and the file and line
        of the ``filters``) it refused, if asking it with each rule's filter alone finds one."""
        def probe(flt: Mapping[str, Any]) -> None:
            next(source.iter_runs(read.entity, read.project, flt, per_page=1), None)  # one page

        if not read.context and selection.project_filter(read.rules, self.now) is None:
            # The listing sends no rule's filter (a rule reads every run): the client-side check would
            # evaluate what W&B may refuse, so each written match.filters is asked of the server once.
            refused = selection.rule_refusals(read.rules, self.now, probe, only_written=True)
            if refused:
                raise refused
        try:
            yield from source.iter_runs(read.entity, read.project, read.filters, with_files=read.with_files)
        except BackendError as exc:
            raise selection.refused_filter(exc, read.rules, self.now, probe, read.filters) from exc

    def _complete(self, source: RunSource, read: ProjectRead, live: LiveRun) -> LiveRun:
        """``live`` as the planner needs it: files where a file rule applies, artifacts where one does.

        A run outside ``--target`` (read only for a ranking) keeps no files: the planner only ranks it.
        """
        if not read.context:
            self.found.add((live.entity, live.project, live.id))
        if live.files is not None and (read.context or not needs_files(self.spec, live, self.now)):
            live = dataclasses.replace(live, files=None)  # no file rule applies: plan it without
        if needs_artifacts(self.spec, live, self.now):
            live = dataclasses.replace(live, artifacts=source.list_artifacts(live))
        return live

    def check_found(self, imported: Iterable[tuple[str, str, str]] = ()) -> None:
        """Raise PlanError naming each ``--target`` run that neither the rules nor (``imported``: the
        ``(entity, project, id)`` of the source runs the imports selected) the imports found."""
        if self.targets is None:
            return
        found = self.found | set(imported)
        missing = sorted(f"{e}/{p}/{i}" for (e, p), ids in self.targets.items() for i in ids or ()
                         if (e, p, i) not in found)
        if missing:
            what = "rules or imports" if self.spec.imports else "rules"
            raise PlanError(f"--target {', '.join(missing)}: no such run is selected by the spec's {what} "
                            f"(check the id, the project, and the {what}' match)")
