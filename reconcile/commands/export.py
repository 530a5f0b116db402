"""``reconcile export ENTITY/PROJECT``: write a spec that pins the current state of runs.

The on-ramp for an existing project: one rule per run, matched by id, setting its
config, summary, tags, name, notes, group and job type to what they are now, so that
planning the exported spec right away gives "No changes".
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from humanfriendly.text import pluralize

from reconcile.backend import Backend
from reconcile.errors import PlanError
from reconcile.errors_handler import EXIT_OK
from reconcile.models import LiveRun

HEADER = """\
# Written by `reconcile export {path}`: pins the current state of {runs}.
# Planning this spec right away gives "No changes"; edit it to say how runs should look.
# Schema: schemas/reconcile.schema.json in the reconcile repository.
"""


def _managed(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The keys reconcile manages: internal ones (``_wandb``, ``_runtime``, ...) are left out."""
    return {k: v for k, v in mapping.items() if not k.startswith("_")}


def _literal(text: str) -> str:
    """``text`` escaped so the template engine reads it back verbatim."""
    return text.replace("{", "{{").replace("}", "}}")


def pin_rule(run: LiveRun) -> dict[str, Any]:
    """One spec rule that pins ``run`` as it is now."""
    desired: dict[str, Any] = {}
    config = _managed(run.config)
    summary = _managed(run.summary)
    if config:
        desired["config"] = config
    if summary:
        desired["summary"] = summary
    desired["tags"] = [_literal(t) for t in run.tags]
    for field, value in (("name", run.name), ("notes", run.notes), ("group", run.group),
                         ("job_type", run.job_type)):
        if value is not None:
            desired[field] = _literal(value)
    return {"name": f"pin-{run.id}", "match": {"ids": [run.id]}, "set": desired}


def export_spec(backend: Backend, entity: str, project: str, *, filters: Mapping[str, Any] | None,
                ids: list[str]) -> tuple[dict[str, Any], int]:
    """The spec document pinning the selected runs, and how many runs it pins."""
    query: Mapping[str, Any] | None = filters
    if ids:
        by_id = {"name": {"$in": ids}}
        query = by_id if filters is None else {"$and": [dict(filters), by_id]}
    rules = [pin_rule(run) for run in _runs(backend, entity, project, query)]
    missing = sorted(set(ids) - {rule["match"]["ids"][0] for rule in rules})
    if missing:
        raise PlanError(f"--ids {', '.join(missing)}: no such run in {entity}/{project}"
                        + (" matching --filters" if filters else ""))
    spec = {"version": 1, "target": {"entity": entity, "project": project}, "rules": rules}
    return spec, len(rules)


def _runs(backend: Backend, entity: str, project: str, query: Mapping[str, Any] | None) -> Iterator[LiveRun]:
    seen: set[str] = set()
    for run in backend.iter_runs(entity, project, query):
        if run.id not in seen:  # W&B pagination can repeat a run (wandb/wandb#6614)
            seen.add(run.id)
            yield run


class _SpecDumper(yaml.SafeDumper):
    """Block-style YAML; NaN and infinities as YAML's .nan/.inf."""


def _float(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    if math.isnan(value):
        return dumper.represent_scalar("tag:yaml.org,2002:float", ".nan")
    return dumper.represent_float(value)


_SpecDumper.add_representer(float, _float)


def dump_spec(spec: Mapping[str, Any]) -> str:
    """The spec as YAML text, keys in the order written."""
    text: str = yaml.dump(dict(spec), Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=100)
    return text


def run(project_path: str, *, filters: str | None, ids: list[str], out: Path | None) -> int:
    """Export the runs of ``ENTITY/PROJECT`` as a pinning spec to ``out`` or stdout."""
    from reconcile.backend.wandb_api import WandbBackend

    parts = project_path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise PlanError(f"{project_path!r} is not ENTITY/PROJECT (e.g. acme/vision)")
    parsed: Mapping[str, Any] | None = None
    if filters:
        try:
            parsed = json.loads(filters)
        except json.JSONDecodeError as exc:
            raise PlanError(f"--filters is not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(parsed, dict):
            raise PlanError('--filters must be a JSON object, e.g. \'{"state": "finished"}\'')
    backend = WandbBackend()
    try:
        spec, count = export_spec(backend, parts[0], parts[1], filters=parsed, ids=ids)
    finally:
        backend.close()
    text = HEADER.format(path=project_path, runs=pluralize(count, 'run')) + dump_spec(spec)
    if out is None:
        sys.stdout.write(text)
    else:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
        print(f"Wrote {pluralize(count, 'pinned run')} to {out}.", file=sys.stderr)
    return EXIT_OK
