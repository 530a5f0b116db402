"""The saved-plan file: a ``Plan`` as JSON (``format_version`` 1) and back, exactly.

``plan_to_dict`` / ``plan_from_dict`` are an exact round trip of every field of ``Plan``,
``RunPlan``, ``Change`` and ``LiveFile``: datetimes as ISO 8601 UTC (``...Z``), enums as
their values, key paths as JSON lists. ``write_plan`` replaces the file atomically;
``read_plan`` refuses another format version (``StalePlanError``) and names the file in
every error. ``open_plan`` (apply) checks a saved plan the same way in one streamed pass, then
hands its runs out one at a time (``SavedPlan``): apply never holds the whole plan.

A saved plan is a promise, so reading one refuses a plan that contradicts itself: a
``content_digest`` (the document's last field, sha256 over its canonical content) that does
not match, a run listed twice, summary counts that disagree with the runs, a file deletion
whose key, ``before`` and ``file`` disagree. What can only be checked against W&B (a file id
that is not the run's, a fingerprint of another run) apply checks on the live run.

Config and summary values may hold NaN or +/-Infinity (W&B stores them; a diverged
loss is common). JSON has no literal for them, so the file uses Python's ``allow_nan``
encoding (``NaN``, ``Infinity``, ``-Infinity``), which Python's json reads back exactly
(strict JSON parsers may not). Tagging them as objects instead could collide with real
config values, and a plan without such values is plain JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from reconcile import jsonstream
from reconcile.errors import PlanError, StalePlanError
from reconcile.models import (
    FORMAT_VERSION,
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    CountedRuns,
    KeepReason,
    KeptArtifact,
    KeptFile,
    Limits,
    LiveArtifact,
    LiveFile,
    MlflowSource,
    Plan,
    RunAction,
    RunPlan,
    Totals,
    VersionTTL,
    WandbSource,
)

# --------------------------------------------------------------------------- to JSON


def _time_to_json(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def file_to_dict(file: LiveFile) -> dict[str, Any]:
    """A ``LiveFile`` as JSON; ``url`` and ``md5`` only when known."""
    out: dict[str, Any] = {"id": file.id, "name": file.name, "size": file.size,
                           "updated_at": _time_to_json(file.updated_at)}
    if file.url is not None:
        out["url"] = file.url
    if file.md5 is not None:
        out["md5"] = file.md5
    return out


def artifact_to_dict(artifact: LiveArtifact) -> dict[str, Any]:
    """A ``LiveArtifact`` (an artifact version) as JSON."""
    return {"id": artifact.id, "name": artifact.name, "collection": artifact.collection,
            "type": artifact.type,
            "version_index": artifact.version_index, "size": artifact.size,
            "created_at": _time_to_json(artifact.created_at), "aliases": list(artifact.aliases),
            "ttl": None if artifact.ttl is None else str(artifact.ttl)}


def _value_to_json(value: Any) -> Any:
    # A file (artifact) deletion's ``before`` is the LiveFile (LiveArtifact) itself (see Change's docstring).
    if isinstance(value, LiveFile):
        return file_to_dict(value)
    return artifact_to_dict(value) if isinstance(value, LiveArtifact) else value


def change_to_dict(change: Change) -> dict[str, Any]:
    """A ``Change`` as JSON; ``from_key``, ``created``, ``source``, ``detail``, ``file``, ``checksum`` only
    when set."""
    out: dict[str, Any] = {
        "kind": change.kind.value,
        "op": change.op.value,
        "path": change.path,
        "key": list(change.key),
        "before": _value_to_json(change.before),
        "after": _value_to_json(change.after),
        "rules": list(change.rules),
    }
    if change.from_key is not None:
        out["from_key"] = list(change.from_key)
    if change.created:
        out["created"] = True
    if change.source is not None:
        out["source"] = change.source
    if change.detail is not None:
        out["detail"] = change.detail
    if change.file is not None:
        out["file"] = file_to_dict(change.file)
    if change.artifact is not None:
        out["artifact"] = artifact_to_dict(change.artifact)
    if change.checksum is not None:
        out["checksum"] = change.checksum
    if change.original_updated_at is not None:
        out["original_updated_at"] = _time_to_json(change.original_updated_at)
    return out


def kept_to_dict(kept: KeptFile) -> dict[str, Any]:
    """A surviving retention candidate: the file's fields and ``reasons`` (rule, selector, detail), and
    ``original_updated_at`` when retention ranked it by the original upload time an undo recorded."""
    out = {**file_to_dict(kept.file), "reasons": _reasons_to_list(kept.reasons)}
    if kept.original_updated_at is not None:
        out["original_updated_at"] = _time_to_json(kept.original_updated_at)
    return out


def kept_artifact_to_dict(kept: KeptArtifact) -> dict[str, Any]:
    """A surviving artifact version: the version's fields and ``reasons`` (rule, selector, detail)."""
    return {**artifact_to_dict(kept.artifact), "reasons": _reasons_to_list(kept.reasons)}


def _reasons_to_list(reasons: tuple[KeepReason, ...]) -> list[dict[str, Any]]:
    return [{"rule": r.rule, "selector": r.selector, "detail": r.detail} for r in reasons]


ROWS_FIELD = "source_rows"
"""The member of an import run that carries its history rows to apply."""


def run_to_dict(run: RunPlan) -> dict[str, Any]:
    """A ``RunPlan`` as JSON."""
    return {
        "path": run.path,
        "name": run.name,
        "storage_id": run.storage_id,
        "project_internal_id": run.project_internal_id,
        "config_writes": run.config_writes.value,
        "fingerprint": run.fingerprint,
        "fingerprint_fields": [list(f) for f in run.fingerprint_fields],
        **({"field_digests": list(run.field_digests)} if run.field_digests else {}),
        "errors": list(run.errors),
        "action": run.action.value,
        **({"import": run.source, "source_fingerprint": run.source_fingerprint} if run.source else {}),
        **({"source_revision": run.source_revision} if run.source_revision is not None else {}),
        "changes": [change_to_dict(c) for c in run.changes],
        "kept": [kept_to_dict(k) for k in run.kept],
        "kept_artifacts": [kept_artifact_to_dict(k) for k in run.kept_artifacts],
        # Last: written one row per line (``_run_json``).
        **({ROWS_FIELD: [dict(r) for r in run.source_rows]} if run.source_rows is not None else {}),
    }


def _header_to_dict(plan: Plan, totals: Totals | None = None) -> dict[str, Any]:
    """Everything of the plan's JSON document but its runs (``totals``: of runs not in ``plan``)."""
    return {
        "format_version": plan.format_version,
        "spec_digest": plan.spec_digest,
        "created_at": _time_to_json(plan.created_at),
        "base_url": plan.base_url,
        "summary": (totals or plan.totals).summary(),
        "errors": list(plan.errors),
        "warnings": list(plan.warnings),
        "skipped_running": plan.skipped_running,
        "runs_read": plan.runs_read,
        "limits": {
            "max_changed_runs": plan.limits.max_changed_runs,
            "max_file_deletions": plan.limits.max_file_deletions,
            "max_bytes": plan.limits.max_bytes,
        },
        **({"imports": {name: source_to_dict(source) for name, source in plan.sources}}
           if plan.sources else {}),
    }


def source_to_dict(source: MlflowSource | WandbSource) -> dict[str, Any]:
    """Where an import reads its runs (``{"mlflow": {...}}`` / ``{"wandb": {...}}``); for W&B only
    the *name* of the variable holding the key, never the key."""
    if isinstance(source, MlflowSource):
        return {"mlflow": {"tracking_uri": source.tracking_uri, "experiments": list(source.experiments),
                           "filter": source.filter}}
    return {"wandb": {"base_url": source.base_url, "api_key_env": source.api_key_env,
                      "entity": source.entity, "project": source.project,
                      "filters": dict(source.filters) if source.filters is not None else None}}


def source_from_dict(data: Any, where: str) -> MlflowSource | WandbSource:
    """Inverse of ``source_to_dict``."""
    f = _Fields(data, where)
    if "mlflow" in f.data:
        m = _Fields(f.get("mlflow", dict), f"{where}.mlflow")
        return MlflowSource(experiments=m.strings("experiments"),
                            tracking_uri=m.get("tracking_uri", str, nullable=True, default=None),
                            filter=m.get("filter", str, nullable=True, default=None))
    w = _Fields(f.get("wandb", dict), f"{where}.wandb")
    return WandbSource(base_url=w.get("base_url", str), api_key_env=w.get("api_key_env", str),
                       entity=w.get("entity", str), project=w.get("project", str),
                       filters=w.get("filters", dict, nullable=True, default=None))


DIGEST_FIELD = "content_digest"
"""The saved plan's last field: sha256 over the canonical JSON of everything before it."""


class _Digest:
    """``content_digest``: the header (every field but ``runs`` and the digest), then each run, each
    as canonical JSON (sorted keys, no spaces), fed one at a time so a big plan is never held twice."""

    def __init__(self, header: Mapping[str, Any]) -> None:
        self._hash = hashlib.sha256()
        self.add({k: v for k, v in header.items() if k not in ("runs", DIGEST_FIELD)})

    def add(self, item: Any) -> bytes:
        """Feed ``item``; returns its own sha256 (to recognise it when it is read again)."""
        data = self._line(item)
        self._hash.update(data)
        return hashlib.sha256(data).digest()

    @staticmethod
    def _line(item: Any) -> bytes:
        blob = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
        return blob.encode("utf-8", "surrogatepass") + b"\n"

    @staticmethod
    def item_hash(item: Any) -> bytes:
        """The sha256 ``add`` returns for ``item``."""
        return hashlib.sha256(_Digest._line(item)).digest()

    def hexdigest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The whole plan as the JSON document ``-o`` writes and ``--format json`` prints."""
    header = _header_to_dict(plan)
    digest = _Digest(header)
    runs = [run_to_dict(r) for r in plan.runs]
    for run in runs:
        digest.add(run)
    return {**header, "runs": runs, DIGEST_FIELD: digest.hexdigest()}


def _run_dicts(plan: Plan) -> Iterable[Mapping[str, Any]]:
    """The plan's runs as JSON objects, one at a time: as the planner's spool holds them, or converted."""
    if isinstance(plan.runs, CountedRuns):
        return plan.runs.run_dicts()
    return (run_to_dict(r) for r in plan.runs)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=True)


def _run_json(run: Mapping[str, Any]) -> str:
    """A run's indented JSON; the history rows an import carries (its last member), one row per line:
    indented, 500 rows of 3 metrics would take 4,000 lines."""
    rows = run.get(ROWS_FIELD)
    if not rows or not isinstance(rows, list) or list(run)[-1] != ROWS_FIELD:
        return _json(run)
    head = _json({k: v for k, v in run.items() if k != ROWS_FIELD})
    lines = ",\n    ".join(json.dumps(row, ensure_ascii=False, allow_nan=True) for row in rows)
    return f'{head[:head.rindex("}")].rstrip()},\n  "{ROWS_FIELD}": [\n    {lines}\n  ]\n}}'


def dump(plan: Plan, stream: TextIO) -> None:
    """Write the plan's indented JSON (exactly ``dumps``) one run at a time.

    Never holds the whole document in memory: a 100,000-run plan would otherwise need its
    dict and its text at once on top of the plan itself.
    """
    dump_runs(plan, _run_dicts(plan), plan.totals, stream)


def dump_runs(header: Plan, runs: Iterable[Mapping[str, Any]], totals: Totals, stream: TextIO) -> None:
    """Write a plan whose runs (as JSON objects) come from ``runs``, one at a time, after ``header``'s
    fields (its own ``runs`` are ignored); ``totals`` are those runs' (the summary comes first)."""
    head_fields = _header_to_dict(header, totals)
    digest = _Digest(head_fields)
    head = _json(head_fields)
    stream.write(head[: head.rindex("}")].rstrip() + ',\n  "runs": [')
    empty = True
    for data in runs:
        digest.add(data)
        stream.write("\n" if empty else ",\n")
        # As textwrap.indent(text, "    "), which is 3x slower: indented JSON has no blank line.
        stream.write("    " + _run_json(data).replace("\n", "\n    "))
        empty = False
    closing = "]" if empty else "\n  ]"
    stream.write(f'{closing},\n  "{DIGEST_FIELD}": {_json(digest.hexdigest())}\n}}\n')


def dumps(plan: Plan) -> str:
    """The plan as indented JSON text (NaN/Infinity allowed, see the module docstring)."""
    buffer = io.StringIO()
    dump(plan, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- from JSON

_MISSING = object()


class _Fields:
    """Typed access to one JSON object; every problem is a ``PlanError`` naming the JSON path."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise PlanError(f"{where or 'the document'}: expected a JSON object, got {type(data).__name__}")
        self.data = data
        self.where = where

    def _at(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...] | None = None, *, nullable: bool = False,
            default: Any = _MISSING) -> Any:
        """The field ``name``, checked against ``kind``; missing is an error unless a default is given."""
        if name not in self.data:
            if default is not _MISSING:
                return default
            raise PlanError(f"missing field {self._at(name)!r}")
        value = self.data[name]
        if value is None and nullable:
            return None
        if kind is not None:
            kinds = kind if isinstance(kind, tuple) else (kind,)
            # bool is an int subclass in Python, but never a valid count or size here.
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                names = " or ".join(k.__name__ for k in kinds)
                raise PlanError(f"field {self._at(name)!r} should be {names}, got {json.dumps(value)[:60]}")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        """A list of strings as a tuple."""
        return _string_tuple(self.get(name, list), self._at(name))

    def time(self, name: str) -> datetime:
        """An ISO 8601 timestamp with a timezone."""
        text = self.get(name, str)
        try:
            # Python 3.10's fromisoformat does not take a trailing Z.
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError as exc:
            raise PlanError(f"field {self._at(name)!r} is not an ISO 8601 time: {text!r}") from exc
        if value.tzinfo is None:
            raise PlanError(f"field {self._at(name)!r} has no timezone: {text!r}")
        return value.astimezone(timezone.utc)

    def enum(self, name: str, enum_type: Any) -> Any:
        """An enum member from its value."""
        value = self.get(name, str)
        try:
            return enum_type(value)
        except ValueError as exc:
            allowed = ", ".join(m.value for m in enum_type)
            raise PlanError(f"field {self._at(name)!r} is {value!r}; expected one of {allowed}") from exc


def _string_tuple(items: Any, where: str) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise PlanError(f"field {where!r} should be a list of strings")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise PlanError(f"field '{where}[{i}]' should be a string, got {json.dumps(item)[:60]}")
    return tuple(items)


def _fast_time(text: Any) -> datetime | None:
    """``_Fields.time`` of a well-formed timestamp; None for anything else (the checked path says why)."""
    if type(text) is not str:
        return None
    try:
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return None if value.tzinfo is None else value.astimezone(timezone.utc)


def _optional_str(value: Any) -> bool:
    return value is None or type(value) is str


def _str_list(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _fast_file(data: Any) -> LiveFile | None:
    """``file_from_dict`` of a well-formed file (exact types only); None for anything else."""
    if type(data) is not dict:
        return None
    file_id, name, size, url, md5 = (data.get(k) for k in ("id", "name", "size", "url", "md5"))
    if type(file_id) is not str or type(name) is not str or type(size) is not int \
            or not _optional_str(url) or not _optional_str(md5):
        return None
    updated_at = _fast_time(data.get("updated_at"))
    if updated_at is None:
        return None
    return LiveFile(id=file_id, name=name, size=size, updated_at=updated_at, url=url, md5=md5)


def file_from_dict(data: Any, where: str) -> LiveFile:
    """A ``LiveFile`` from JSON."""
    fast = _fast_file(data)  # a saved plan holds thousands: the checked path below only for errors
    if fast is not None:
        return fast
    f = _Fields(data, where)
    return LiveFile(id=f.get("id", str), name=f.get("name", str), size=f.get("size", int),
                    updated_at=f.time("updated_at"), url=f.get("url", str, nullable=True, default=None),
                    md5=f.get("md5", str, nullable=True, default=None))


def artifact_from_dict(data: Any, where: str) -> LiveArtifact:
    """A ``LiveArtifact`` from JSON."""
    f = _Fields(data, where)
    return LiveArtifact(id=f.get("id", str), collection=f.get("collection", str), type=f.get("type", str),
                        version_index=f.get("version_index", int), size=f.get("size", int),
                        created_at=f.time("created_at"), aliases=f.strings("aliases"),
                        ttl=_ttl(f.get("ttl", str, nullable=True, default=None), f"{where}.ttl"))


def _ttl(text: str | None, where: str) -> VersionTTL | None:
    if text is None:
        return None
    try:
        return VersionTTL.parse(text)
    except ValueError:
        raise PlanError(f"field '{where}' should be a TTL (30d, none, inherit), got {text!r}") from None


_KINDS = {kind.value: kind for kind in ChangeKind}
_OPS = {op.value: op for op in ChangeOp}


def _fast_change(data: Any) -> Change | None:
    """``change_from_dict`` of a well-formed rule change (exact types; no artifact, no file other than
    a deletion's own); None for anything else, which the checked path reads."""
    if type(data) is not dict or "before" not in data or "after" not in data or "artifact" in data:
        return None
    raw_kind, raw_op = data.get("kind"), data.get("op")
    if type(raw_kind) is not str or type(raw_op) is not str:
        return None
    kind, op = _KINDS.get(raw_kind), _OPS.get(raw_op)
    key, rules, from_key = data.get("key"), data.get("rules"), data.get("from_key")
    created = data.get("created", False)
    source, detail, checksum = data.get("source"), data.get("detail"), data.get("checksum")
    if kind is None or op is None or kind is ChangeKind.ARTIFACT or type(created) is not bool:
        return None
    if not _str_list(key) or not _str_list(rules) or (from_key is not None and not _str_list(from_key)):
        return None
    if not (_optional_str(source) and _optional_str(detail) and _optional_str(checksum)):
        return None
    before, raw_file, file = data["before"], data.get("file"), None
    if raw_file is not None:
        file = _fast_file(raw_file)
        if file is None:
            return None
    if kind is ChangeKind.FILE and isinstance(before, Mapping):
        if file is None or before != raw_file:
            return None
        before = file  # one object for both (see change_from_dict)
    original = None
    if data.get("original_updated_at") is not None:
        original = _fast_time(data["original_updated_at"])
        if original is None:
            return None
    return Change(kind=kind, op=op, key=tuple(key), before=before, after=data["after"],  # type: ignore[arg-type]
                  rules=tuple(rules), from_key=None if from_key is None else tuple(from_key), file=file,  # type: ignore[arg-type]
                  created=created, source=source, detail=detail, checksum=checksum,
                  original_updated_at=original)


def change_from_dict(data: Any, where: str) -> Change:
    """A ``Change`` from JSON."""
    fast = _fast_change(data)  # a saved plan holds tens of thousands: the checked path below for the rest
    if fast is not None:
        return fast
    f = _Fields(data, where)
    kind = f.enum("kind", ChangeKind)
    before, after = f.get("before"), f.get("after")
    raw_from = f.get("from_key", list, nullable=True, default=None)
    raw_file = f.get("file", dict, nullable=True, default=None)
    file = None if raw_file is None else file_from_dict(raw_file, f"{where}.file")
    if kind is ChangeKind.FILE and isinstance(before, Mapping):
        # A deletion's before is its file: one object for both keeps big plans small in memory.
        shared = file is not None and before == raw_file
        before = file if shared else file_from_dict(before, f"{where}.before")
    raw_artifact = f.get("artifact", dict, nullable=True, default=None)
    artifact = None if raw_artifact is None else artifact_from_dict(raw_artifact, f"{where}.artifact")
    if kind is ChangeKind.ARTIFACT and artifact is not None and before == raw_artifact:
        before = artifact
    return Change(
        kind=kind,
        op=f.enum("op", ChangeOp),
        key=f.strings("key"),
        before=before,
        after=after,
        rules=f.strings("rules"),
        from_key=None if raw_from is None else f.strings("from_key"),
        file=file,
        artifact=artifact,
        created=f.get("created", bool, default=False),
        source=f.get("source", str, nullable=True, default=None),
        detail=f.get("detail", str, nullable=True, default=None),
        checksum=f.get("checksum", str, nullable=True, default=None),
        original_updated_at=_original_time(data, where),
    )


def _reasons_from_dict(data: Any, where: str) -> tuple[KeepReason, ...]:
    reasons = []
    for i, raw in enumerate(_Fields(data, where).get("reasons", list)):
        r = _Fields(raw, f"{where}.reasons[{i}]")
        reasons.append(KeepReason(r.get("rule", str), r.get("selector", str),
                                  r.get("detail", str, nullable=True, default=None)))
    return tuple(reasons)


def kept_from_dict(data: Any, where: str) -> KeptFile:
    """A ``KeptFile`` from JSON."""
    return KeptFile(file_from_dict(data, where), _reasons_from_dict(data, where), _original_time(data, where))


def _original_time(data: Any, where: str) -> datetime | None:
    """The optional ``original_updated_at`` of a file deletion or a surviving file."""
    f = _Fields(data, where)
    return None if f.get("original_updated_at", str, nullable=True, default=None) is None \
        else f.time("original_updated_at")


def kept_artifact_from_dict(data: Any, where: str) -> KeptArtifact:
    """A ``KeptArtifact`` from JSON."""
    return KeptArtifact(artifact_from_dict(data, where), _reasons_from_dict(data, where))


def run_from_dict(data: Any, where: str) -> RunPlan:
    """A ``RunPlan`` from JSON."""
    f = _Fields(data, where)
    path = f.get("path", str)
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise PlanError(f"field '{where}.path' should be ENTITY/PROJECT/RUN_ID, got {path!r}")
    raw_fields = f.get("fingerprint_fields", list)
    fingerprint_fields = tuple(
        _string_tuple(item, f"{where}.fingerprint_fields[{i}]") for i, item in enumerate(raw_fields))
    raw_changes = f.get("changes", list)
    return RunPlan(
        entity=parts[0],
        project=parts[1],
        run_id=parts[2],
        storage_id=f.get("storage_id", str),
        name=f.get("name", str, nullable=True),
        fingerprint=f.get("fingerprint", str),
        fingerprint_fields=fingerprint_fields,
        changes=tuple(change_from_dict(c, f"{where}.changes[{i}]") for i, c in enumerate(raw_changes)),
        config_writes=f.enum("config_writes", ConfigWrites),
        project_internal_id=f.get("project_internal_id", int, nullable=True),
        errors=f.strings("errors"),
        kept=tuple(kept_from_dict(k, f"{where}.kept[{i}]")
                   for i, k in enumerate(f.get("kept", list, default=[]))),
        kept_artifacts=tuple(kept_artifact_from_dict(k, f"{where}.kept_artifacts[{i}]")
                             for i, k in enumerate(f.get("kept_artifacts", list, default=[]))),
        action=f.enum("action", RunAction) if "action" in data else RunAction.UPDATE,
        source=f.get("import", str, nullable=True, default=None),
        source_fingerprint=f.get("source_fingerprint", str, nullable=True, default=None),
        field_digests=f.strings("field_digests") if "field_digests" in data else (),
        source_rows=_rows_from_dict(f),
        source_revision=f.get("source_revision", str, nullable=True, default=None),
    )


def _rows_from_dict(f: _Fields) -> tuple[dict[str, Any], ...] | None:
    """The history rows an import run carries (None: apply reads them from the source), each an object
    with an integer ``_step``, in ascending steps, and only beside the ``source_revision`` they go with."""
    raw = f.get(ROWS_FIELD, list, nullable=True, default=None)
    if raw is None:
        return None
    if not isinstance(f.get("source_revision", str, nullable=True, default=None), str):
        raise PlanError(f"field {f._at(ROWS_FIELD)!r} comes without 'source_revision'; the plan was edited "
                        "or is corrupt. Make a new plan with `reconcile plan -o`.")
    last = None
    for index, row in enumerate(raw):
        step = row.get("_step") if isinstance(row, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or (last is not None and step <= last):
            raise PlanError(f"field '{f._at(ROWS_FIELD)}[{index}]' should be a history row with an integer "
                            "_step after the row before it")
        last = step
    return tuple(raw)


def _header_from_dict(f: _Fields) -> Plan:
    """The plan's fields but its runs (``runs=()``); ``StalePlanError`` for another format version."""
    version = f.get("format_version")
    if version != FORMAT_VERSION:
        raise StalePlanError(
            f"the plan has format_version {json.dumps(version)} but this reconcile reads version "
            f"{FORMAT_VERSION}; make a new plan with `reconcile plan -o PLAN.json`")
    limits = _Fields(f.get("limits", dict), "limits")
    return Plan(
        spec_digest=f.get("spec_digest", str),
        created_at=f.time("created_at"),
        base_url=f.get("base_url", str),
        runs=(),
        errors=f.strings("errors"),
        warnings=f.strings("warnings") if "warnings" in f.data else (),
        skipped_running=f.get("skipped_running", int),
        runs_read=f.get("runs_read", int),
        limits=Limits(
            max_changed_runs=limits.get("max_changed_runs", int, nullable=True),
            max_file_deletions=limits.get("max_file_deletions", int, nullable=True),
            max_bytes=limits.get("max_bytes", int, nullable=True),
        ),
        format_version=version,
        sources=tuple((name, source_from_dict(source, f"imports.{name}"))
                      for name, source in f.get("imports", dict, default={}).items()),
    )


def plan_from_dict(data: Any) -> Plan:
    """A ``Plan`` from the JSON ``plan_to_dict`` wrote; ``StalePlanError`` for another format version."""
    f = _Fields(data, "")
    header = _header_from_dict(f)
    raw_runs = f.get("runs", list)
    runs = tuple(run_from_dict(r, f"runs[{i}]") for i, r in enumerate(raw_runs))
    plan = dataclasses.replace(header, runs=runs)
    seen: set[str] = set()
    for index, run in enumerate(plan.runs):
        _check_run(index, run, seen)
    _check_summary(plan.totals, _Fields(f.get("summary", dict), "summary"))
    return plan


def _check_run(index: int, run: RunPlan, seen: set[str]) -> None:
    """A plan is a promise: refuse a run that contradicts itself or is listed twice (``seen``: so far).

    Besides the digest (which catches accidents and truncation, not an editor who recomputes it), a
    run's own lists must agree: a file it deletes is neither one it keeps nor deleted twice, an
    artifact version likewise, and no tag is both added and removed."""
    if run.path in seen:
        raise PlanError(f"runs[{index}]: the run {run.path} is listed twice")
    seen.add(run.path)
    kept_files = {k.file.id for k in run.kept} | {k.file.name for k in run.kept}
    kept_versions = {k.artifact.id for k in run.kept_artifacts}
    deleted: set[tuple[str, str]] = set()
    tags: dict[str, ChangeOp] = {}
    for number, change in enumerate(run.changes):
        where = f"runs[{index}].changes[{number}]"
        if change.kind is ChangeKind.TAGS:
            tag = str(change.key[0]) if change.key else ""
            if tags.setdefault(tag, change.op) is not change.op:
                raise PlanError(f"{where}: the tag {tag!r} of {run.path} is both added and removed")
            continue
        if change.op is not ChangeOp.DELETE:
            continue
        if change.kind is ChangeKind.ARTIFACT and change.artifact is not None:
            version = change.artifact.id
            if version in kept_versions:
                raise PlanError(f"{where}: it deletes the artifact version {version} of {run.path} that the "
                                "same plan lists as kept")
            if ("artifact", version) in deleted:
                raise PlanError(f"{where}: it deletes the artifact version {version} of {run.path} twice")
            deleted.add(("artifact", version))
            continue
        if change.kind is not ChangeKind.FILE:
            continue
        if change.file is None or change.key != (change.file.name,) or change.before != change.file:
            raise PlanError(f"{where}: the deletion's key, before and file name different files")
        if change.file.id in kept_files or change.file.name in kept_files:
            raise PlanError(f"{where}: it deletes {change.file.name} of {run.path}, which the same plan "
                            "lists as kept")
        if ("file", change.file.id) in deleted or ("name", change.file.name) in deleted:
            raise PlanError(f"{where}: it deletes {change.file.name} of {run.path} twice")
        deleted |= {("file", change.file.id), ("name", change.file.name)}


def _check_summary(totals: Totals, summary: _Fields) -> None:
    """The summary says what the runs hold (edited by hand, or corrupt, otherwise)."""
    for name in ("runs_to_create", "runs_to_change", "attribute_changes", "files_to_delete", "bytes_to_free"):
        stated, value = summary.get(name, int), getattr(totals, name)
        if stated != value:
            raise PlanError(f"summary.{name} says {stated} but the runs hold {value}")


def content_digest_of(plan: Plan) -> str:
    """The ``content_digest`` the saved file of ``plan`` carries, computed one run at a time."""
    digest = _Digest(_header_to_dict(plan))
    for run in plan.runs:
        digest.add(run_to_dict(run))
    return digest.hexdigest()


def content_digest(data: Mapping[str, Any]) -> str:
    """The ``content_digest`` of a plan's JSON document (its ``content_digest`` field left out)."""
    runs = data.get("runs")
    digest = _Digest(data)
    for run in runs if isinstance(runs, list) else ():
        digest.add(run)
    return digest.hexdigest()


def check_digest(data: Any) -> None:
    """The saved plan's ``content_digest`` matches its content (``PlanError`` otherwise)."""
    if not isinstance(data, Mapping) or not isinstance(data.get(DIGEST_FIELD), str):
        raise PlanError(f"it has no {DIGEST_FIELD} (written by hand or by an older reconcile)")
    if content_digest(data) != data[DIGEST_FIELD]:
        raise PlanError(f"its {DIGEST_FIELD} does not match its content: it was changed after it was "
                        "written")


# --------------------------------------------------------------------------- files


def write_plan(plan: Plan, path: Path) -> None:
    """Write ``plan`` to ``path`` atomically: a temporary file beside it, fsync, then rename.

    A reader (or an apply started at the same moment) sees the old file or the new one,
    never half of one. The file is created 0600: config values may be private.
    """
    write_plan_runs(plan, _run_dicts(plan), plan.totals, path)


def write_plan_runs(header: Plan, runs: Iterable[Mapping[str, Any]], totals: Totals, path: Path) -> None:
    """``write_plan`` of a plan whose runs (JSON objects with these ``totals``) come one at a time."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            dump_runs(header, runs, totals, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable (best effort where unsupported)."""
    # The rename itself is durable only once the directory entry is flushed (POSIX).
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_plan(path: Path) -> Plan:
    """Read a saved plan; every error names the file and says what to do next."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PlanError(f"plan file {path} does not exist; make one with "
                        f"`reconcile plan -f SPEC -o {path}`") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan file {path}: {exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        raise PlanError(f"{path} looks like a spec, not a saved plan: apply it with "
                        f"`reconcile apply -f {path}`, or save a plan first with "
                        f"`reconcile plan -f {path} -o plan.json`")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"plan file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg}); make a new one with `reconcile plan -f SPEC -o {path}`") from exc
    except RecursionError:
        raise PlanError(_too_deep(path, "it")) from None
    if isinstance(data, dict) and _too_deep_document(data):
        raise PlanError(_too_deep(path, "a value"))
    try:
        plan = plan_from_dict(data)
        check_digest(data)
    except RecursionError:
        raise PlanError(_too_deep(path, "a value")) from None
    except StalePlanError as exc:
        raise StalePlanError(f"plan file {path}: {exc}") from exc
    except PlanError as exc:
        raise PlanError(f"plan file {path} is not a valid reconcile plan: {exc}; "
                        f"make a new one with `reconcile plan -f SPEC -o {path}`") from exc
    return plan


# --------------------------------------------------------------------------- streamed (apply)


def _open_text(path: Path) -> TextIO:
    """The saved plan at ``path`` opened for reading; errors name the file and say what to do."""
    if path.suffix.lower() in (".yaml", ".yml"):
        raise PlanError(f"{path} looks like a spec, not a saved plan: apply it with "
                        f"`reconcile apply -f {path}`, or save a plan first with "
                        f"`reconcile plan -f {path} -o plan.json`")
    try:
        return path.open(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PlanError(f"plan file {path} does not exist; make one with "
                        f"`reconcile plan -f SPEC -o {path}`") from exc
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc}") from exc


class SavedPlan:
    """A saved plan on disk: checked whole when opened, then read run by run, never held in memory.

    Opening reads the file once (every field, every run, the counts, ``content_digest``);
    ``iter_runs`` reads it again from the same open file (a plan replaced on disk meanwhile is not
    seen) and refuses a run that differs from the one checked. It offers what apply needs of a
    ``Plan`` (``models.PlanLike``); what it keeps is the header, the totals and 32 bytes per run.
    """

    def __init__(self, path: Path, fh: TextIO, header: Plan, totals: Totals, digest: str,
                 run_hashes: bytes, checked: tuple[Callable[[RunPlan], None], ...]) -> None:
        self.path, self._fh, self.header, self.totals = path, fh, header, totals
        self.digest = digest
        """The plan's ``content_digest`` (checked): what a journal belongs to."""
        self._run_hashes = run_hashes
        self.checked = checked
        """The per-run checks every run passed when the plan was opened."""

    @property
    def spec_digest(self) -> str:
        """The header's."""
        return self.header.spec_digest

    @property
    def created_at(self) -> datetime:
        """The header's."""
        return self.header.created_at

    @property
    def base_url(self) -> str:
        """The header's."""
        return self.header.base_url

    @property
    def errors(self) -> tuple[str, ...]:
        """Plan-wide errors (the header's)."""
        return self.header.errors

    @property
    def limits(self) -> Limits:
        """The header's."""
        return self.header.limits

    @property
    def format_version(self) -> int:
        """The header's."""
        return self.header.format_version

    @property
    def changed_count(self) -> int:
        """Runs with at least one change (to create or to update)."""
        return self.totals.runs_to_create + self.totals.runs_to_change

    @property
    def file_deletions(self) -> int:
        """Total files to delete."""
        return self.totals.files_to_delete

    @property
    def bytes_to_free(self) -> int:
        """Total size of the files to delete."""
        return self.totals.bytes_to_free

    @property
    def artifact_deletions(self) -> int:
        """Total artifact versions to delete."""
        return self.totals.artifact_versions_to_delete

    @property
    def artifact_bytes_to_free(self) -> int:
        """Total size of the artifact versions to delete."""
        return self.totals.artifact_bytes_to_free

    @property
    def error_count(self) -> int:
        """Plan-wide errors plus every run's."""
        return len(self.header.errors) + self.totals.run_errors

    @property
    def has_errors(self) -> bool:
        """Whether the plan (or any run in it) has errors; such a plan is not applied."""
        return self.error_count > 0

    @property
    def sources(self) -> tuple[tuple[str, MlflowSource | WandbSource], ...]:
        """The imports planned (the header's)."""
        return self.header.sources

    def iter_runs(self) -> Iterator[RunPlan]:
        """The runs again, in file order, each the same as when the plan was checked."""
        self._fh.seek(0)
        index = 0
        for key, value in _members(self.path, self._fh):
            if key != "runs" or value is jsonstream.STREAM_START:
                continue
            if _Digest.item_hash(value) != self._run_hashes[32 * index:32 * (index + 1)]:
                raise PlanError(f"plan file {self.path} changed while it was being applied (runs[{index}]); "
                                "apply it again: the journal skips what is done")
            yield run_from_dict(value, f"runs[{index}]")
            index += 1

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


MAX_DEPTH = 200
"""Deepest nesting of a change's value in a plan: far above any real config (a spec allows 100), and low
enough that nothing reading a plan's values runs out of stack."""


def _too_deeply_nested(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` lists/objects deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep_member(key: str, value: Any) -> bool:
    """Whether a member of a plan nests too deeply. Of a run only its metadata changes' values are
    free-form (everything else has a fixed shape that ``run_from_dict`` checks), so only they are walked: a
    plan is read at the speed of its parse. Anything deep elsewhere ends in a RecursionError, which the
    callers turn into the same error."""
    if key != "runs":
        return _too_deeply_nested(value, MAX_DEPTH)
    changes = value.get("changes") if isinstance(value, dict) else None
    for change in changes if isinstance(changes, list) else ():
        if isinstance(change, dict) and change.get("kind") not in ("file", "artifact"):  # those are typed
            for part in (change.get("before"), change.get("after")):
                if isinstance(part, dict | list) and _too_deeply_nested(part, MAX_DEPTH):
                    return True
    return False


def _too_deep_document(data: dict[str, Any]) -> bool:
    """``_too_deep_member`` over a whole plan document (``runs`` element by element)."""
    runs = data.get("runs")
    return (any(_too_deep_member(key, value) for key, value in data.items() if key != "runs")
            or (isinstance(runs, list) and any(_too_deep_member("runs", run) for run in runs)))


def _too_deep(path: Path, what: str) -> str:
    return (f"plan file {path} is not a valid reconcile plan: {what} is nested more than {MAX_DEPTH} levels "
            f"deep (no plan reconcile writes is); make a new one with `reconcile plan -f SPEC -o {path}`")


def _members(path: Path, fh: TextIO) -> Iterator[tuple[str, Any]]:
    """The plan file's members (``runs`` streamed); a JSON error names the file, line and column, and a
    value nested too deeply is refused before anything walks it."""
    try:
        for key, value in jsonstream.members(fh, "runs"):
            if _too_deep_member(key, value):
                raise PlanError(_too_deep(path, f"a value under {key!r}"))
            yield key, value
    except json.JSONDecodeError as exc:
        raise PlanError(f"plan file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg}); make a new one with `reconcile plan -f SPEC -o {path}`") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc}") from exc


def open_plan(path: Path, *, checks: Sequence[Callable[[RunPlan], None]] = ()) -> SavedPlan:
    """Open a saved plan for applying: every run read and checked (also by ``checks``), the counts and
    ``content_digest`` verified, in one pass that holds one run at a time."""
    path = Path(path)
    fh = _open_text(path)
    try:
        return _check_saved(path, fh, tuple(checks))
    except BaseException:
        fh.close()
        raise


_HEADER_FIELDS = frozenset({"format_version", "spec_digest", "created_at", "base_url", "summary", "errors",
                            "warnings", "skipped_running", "runs_read", "limits", "imports"})


def _check_saved(path: Path, fh: TextIO, checks: tuple[Callable[[RunPlan], None], ...]) -> SavedPlan:
    fields: dict[str, Any] = {}
    totals, seen, hashes = Totals(), set[str](), bytearray()
    digest: _Digest | None = None
    runs_found = late_header = False
    try:
        for key, value in _members(path, fh):
            if key != "runs":
                fields[key] = value
                late_header = late_header or (runs_found and key in _HEADER_FIELDS)
                continue
            if value is jsonstream.STREAM_START:
                runs_found = True
                if "format_version" in fields:
                    _header_from_dict(_Fields(fields, ""))  # another version: say so before its runs
                digest = _Digest(fields)
                continue
            index = len(hashes) // 32
            run = run_from_dict(value, f"runs[{index}]")
            _check_run(index, run, seen)
            for check in checks:
                check(run)
            totals = totals.plus(run)
            hashes += digest.add(value) if digest is not None else b""
        if not runs_found:
            raise PlanError("missing field 'runs'")
        f = _Fields(fields, "")
        header = _header_from_dict(f)
        _check_summary(totals, _Fields(f.get("summary", dict), "summary"))
        stated = _check_digest(path, fh, fields, None if late_header else digest)
    except RecursionError:  # a member nested too deeply where no walk looked (the parser's own limit)
        raise PlanError(_too_deep(path, "a value")) from None
    except StalePlanError as exc:
        raise StalePlanError(f"plan file {path}: {exc}") from exc
    except PlanError as exc:
        if str(exc).startswith(f"plan file {path} ") or str(exc).startswith(f"cannot read plan file {path}"):
            raise
        raise PlanError(f"plan file {path} is not a valid reconcile plan: {exc}; "
                        f"make a new one with `reconcile plan -f SPEC -o {path}`") from exc
    return SavedPlan(path, fh, header, totals, stated, bytes(hashes), checks)


def _check_digest(path: Path, fh: TextIO, fields: Mapping[str, Any], digest: _Digest | None) -> str:
    """The stated ``content_digest``, if ``digest`` (of the runs read; None: read them again) matches it."""
    stated = fields.get(DIGEST_FIELD)
    if not isinstance(stated, str):
        raise PlanError(f"it has no {DIGEST_FIELD} (written by hand or by an older reconcile)")
    if digest is None:  # header fields after the runs: the digest needs them first
        digest = _Digest(fields)
        fh.seek(0)
        for key, value in _members(path, fh):
            if key == "runs" and value is not jsonstream.STREAM_START:
                digest.add(value)
    if digest.hexdigest() != stated:
        raise PlanError(f"its {DIGEST_FIELD} does not match its content: it was changed after it was "
                        "written")
    return stated
