"""Load and normalise emulator fixtures (the contract's ``runs:`` YAML/JSON format).

A fixture is ``{"runs": [...], "projects": [...], "viewer": {...}}``; only ``runs`` is required.
Each run becomes a :class:`SeedRun` with config already in W&B's stored ``{k: {value, desc}}`` form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from reconcile.emulator.artifact_fixture import ArtifactFixtureError, SeedArtifact, parse_seed_artifacts
from reconcile.errors import ReconcileError

RUN_STATES = ("running", "finished", "crashed", "failed", "killed", "pending", "preempting", "preempted")
"""W&B's run states (the client's ``Run.state`` docstring lists preempting and preempted too)."""
_RUN_KEYS = {
    "entity",
    "project",
    "id",
    "name",
    "display_name",
    "state",
    "created_at",
    "heartbeat_at",
    "config",
    "summary",
    "tags",
    "group",
    "job_type",
    "notes",
    "description",
    "user",
    "sweep",
    "commit",
    "system_metrics",
    "history_line_count",
    "files",
    "artifacts",
}
_FILE_KEYS = {"name", "size", "updated_at", "content", "mimetype", "md5"}
_EPOCH = datetime(2026, 1, 1)


class FixtureError(ReconcileError):
    """The fixture file is malformed; the message names the run and key to fix."""


@dataclass(frozen=True, slots=True)
class SeedFile:
    """One file of a seeded run; ``content`` None means deterministic bytes of ``size``."""

    name: str
    size: int
    updated_at: str
    content: bytes | None = None
    mimetype: str | None = None
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class SeedRun:
    """One seeded run, normalised to the stored form."""

    entity: str
    project: str
    id: str
    display_name: str | None
    state: str
    created_at: str
    heartbeat_at: str
    config: dict[str, Any]
    summary: dict[str, Any]
    tags: list[str]
    group: str | None
    job_type: str | None
    notes: str | None
    description: str | None
    username: str | None
    sweep: str | None
    commit: str | None
    system_metrics: dict[str, Any]
    history_line_count: int
    files: tuple[SeedFile, ...] = ()
    artifacts: tuple[SeedArtifact, ...] = ()  # versions this run logged (reconcile.emulator.artifacts)


@dataclass(frozen=True, slots=True)
class Fixture:
    """A whole fixture: the runs, extra (empty) projects and the viewer's identity."""

    runs: list[SeedRun]
    projects: list[tuple[str, str]] = field(default_factory=list)
    viewer_entity: str = "emulator"
    viewer_username: str = "emulator"


def to_iso(value: Any, where: str) -> str:
    """Return the stored zone-less UTC ISO form (``2026-01-02T03:04:05``) of a date/time."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise FixtureError(f"{where}: {value!r} is not an ISO-8601 date/time") from exc
    else:
        raise FixtureError(f"{where}: expected an ISO-8601 date/time, got {value!r}")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed.isoformat(timespec="seconds") if not parsed.microsecond else parsed.isoformat()


def wrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap plain config values in W&B's stored ``{"value": v, "desc": null}`` form."""
    return {str(k): {"value": v, "desc": None} for k, v in config.items()}


def _jsonable(value: Any, where: str) -> Any:
    # YAML may produce dates inside config/summary; JSON cannot carry them, so store ISO strings.
    try:
        return json.loads(json.dumps(value, default=lambda v: to_iso(v, where)))
    except (TypeError, ValueError) as exc:
        raise FixtureError(f"{where}: value is not JSON-serialisable: {exc}") from exc


def _file(raw: Any, where: str, default_time: str) -> SeedFile:
    if not isinstance(raw, dict) or "name" not in raw:
        raise FixtureError(f"{where}: each file needs at least a name")
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        raise FixtureError(f"{where}: unknown file keys {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}")
    content = raw.get("content")
    data = content.encode() if isinstance(content, str) else content
    if data is not None and not isinstance(data, bytes):
        raise FixtureError(f"{where}: content must be a string")
    size = raw.get("size", len(data) if data is not None else 0)
    if not isinstance(size, int) or size < 0:
        raise FixtureError(f"{where}: size must be a non-negative integer (bytes)")
    if data is not None and size != len(data):
        raise FixtureError(f"{where}: size {size} differs from the content's {len(data)} bytes")
    return SeedFile(
        name=str(raw["name"]),
        size=size,
        updated_at=to_iso(raw["updated_at"], where) if "updated_at" in raw else default_time,
        content=data,
        mimetype=raw.get("mimetype"),
        md5=raw.get("md5"),
    )


def _optional_str(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise FixtureError(f"{where}: {key} must be a string")
    return value


def _run(raw: Any, index: int, defaults: Mapping[str, Any]) -> SeedRun:
    where = f"runs[{index}]"
    if not isinstance(raw, dict):
        raise FixtureError(f"{where}: each run must be a mapping")
    raw = {**defaults, **raw}
    unknown = set(raw) - _RUN_KEYS
    if unknown:
        raise FixtureError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_RUN_KEYS)}")
    for key in ("entity", "project", "id"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise FixtureError(f"{where}: {key} is required (a non-empty string)")
    where = f"{where} ({raw['entity']}/{raw['project']}/{raw['id']})"
    state = raw.get("state", "finished")
    if state not in RUN_STATES:
        raise FixtureError(f"{where}: state {state!r} is not one of {', '.join(RUN_STATES)}")
    created = (
        to_iso(raw["created_at"], where)
        if "created_at" in raw
        else (_EPOCH + timedelta(seconds=index)).isoformat()
    )
    heartbeat = to_iso(raw["heartbeat_at"], where) if "heartbeat_at" in raw else created
    config = raw.get("config") or {}
    summary = raw.get("summary") or {}
    if not isinstance(config, dict) or not isinstance(summary, dict):
        raise FixtureError(f"{where}: config and summary must be mappings")
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise FixtureError(f"{where}: tags must be a list of strings")
    files_raw = raw.get("files") or []
    if not isinstance(files_raw, list):
        raise FixtureError(f"{where}: files must be a list")
    files = tuple(_file(f, f"{where} files[{i}]", heartbeat) for i, f in enumerate(files_raw))
    if len({f.name for f in files}) != len(files):
        raise FixtureError(f"{where}: file names must be unique within a run")
    return SeedRun(
        entity=raw["entity"],
        project=raw["project"],
        id=raw["id"],
        display_name=_optional_str(raw, "name", where) or _optional_str(raw, "display_name", where),
        state=state,
        created_at=created,
        heartbeat_at=heartbeat,
        config=wrap_config(_jsonable(config, where)),
        summary=_jsonable(summary, where),
        tags=list(tags),
        group=_optional_str(raw, "group", where),
        job_type=_optional_str(raw, "job_type", where),
        notes=_optional_str(raw, "notes", where),
        description=_optional_str(raw, "description", where),
        username=_optional_str(raw, "user", where),
        sweep=_optional_str(raw, "sweep", where),
        commit=_optional_str(raw, "commit", where),
        system_metrics=_jsonable(raw.get("system_metrics") or {}, where),
        history_line_count=int(raw.get("history_line_count", 0)),
        files=files,
        artifacts=_artifacts(raw.get("artifacts"), where, heartbeat),
    )


def _artifacts(raw: Any, where: str, default_time: str) -> tuple[SeedArtifact, ...]:
    try:
        return parse_seed_artifacts(raw, where, default_time, to_iso)
    except ArtifactFixtureError as exc:
        raise FixtureError(str(exc)) from exc


def parse_fixture(data: Any) -> Fixture:
    """Validate and normalise a fixture already loaded into Python objects."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FixtureError("a fixture must be a mapping with a `runs:` list")
    unknown = set(data) - {"runs", "projects", "viewer", "defaults"}
    if unknown:
        raise FixtureError(
            f"unknown top-level fixture keys {sorted(unknown)}; allowed: runs, projects, viewer, defaults"
        )
    runs_raw = data.get("runs") or []
    if not isinstance(runs_raw, list):
        raise FixtureError("`runs` must be a list")
    defaults = data.get("defaults") or {}
    runs = [_run(raw, i, defaults) for i, raw in enumerate(runs_raw)]
    seen: set[tuple[str, str, str]] = set()
    for run in runs:
        key = (run.entity, run.project, run.id)
        if key in seen:
            raise FixtureError(f"run {'/'.join(key)} appears twice in the fixture")
        seen.add(key)
    projects: list[tuple[str, str]] = []
    for i, proj in enumerate(data.get("projects") or []):
        entity_name = proj.get("entity") if isinstance(proj, dict) else None
        project_name = proj.get("name", proj.get("project")) if isinstance(proj, dict) else None
        if not isinstance(entity_name, str) or not isinstance(project_name, str):
            raise FixtureError(f"projects[{i}]: needs entity and name")
        projects.append((entity_name, project_name))
    viewer = data.get("viewer") or {}
    entity = viewer.get("entity") or (runs[0].entity if runs else "emulator")
    return Fixture(
        runs=runs, projects=projects, viewer_entity=entity, viewer_username=viewer.get("username") or entity
    )


def load_fixture(source: Path | str | Mapping[str, Any] | None) -> Fixture:
    """Load a fixture from a YAML/JSON file path or an in-memory dict."""
    if source is None:
        return parse_fixture({})
    if isinstance(source, Mapping):
        return parse_fixture(dict(source))
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"cannot read fixture {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FixtureError(f"fixture {path} is not valid JSON: {exc}") from exc
        return parse_fixture(data)
    # libyaml's loader when present: the pure-Python one needs minutes for 100,000 runs.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise FixtureError(f"fixture {path} is not valid YAML: {exc}") from exc
    return parse_fixture(data)


def synthetic_runs(
    count: int, *, entity: str = "acme", project: str = "bench", files_per_run: int = 0, file_size: int = 1024
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` fixture run dicts with varied config/summary/tags, for benchmarks and paging tests."""
    states = ("finished", "finished", "crashed", "failed", "killed")
    for i in range(count):
        yield {
            "entity": entity,
            "project": project,
            "id": f"run{i:07d}",
            "name": f"run-{i}",
            "state": states[i % len(states)],
            "created_at": (_EPOCH + timedelta(minutes=i)).isoformat(),
            "config": {
                "lr": [0.1, 0.01, 0.001][i % 3],
                "batch": 32 * (1 + i % 4),
                "model": ["resnet50", "vit", "mlp"][i % 3],
                "optimizer": {"name": "sgd", "momentum": 0.9},
            },
            "summary": {"val_acc": round((i * 7919 % 1000) / 1000, 3), "loss": round(1 / (1 + i), 6)},
            "tags": ["bench", f"shard-{i % 10}"],
            "group": f"g{i % 5}",
            "job_type": "train",
            "files": [{"name": f"checkpoint-{j:03d}.pt", "size": file_size} for j in range(files_per_run)],
        }
