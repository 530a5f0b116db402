"""Checks one schema-checked document beyond the schema and builds its frozen models.

What a schema cannot say: templates, globs, durations, sizes, key paths and operations
of one rule that contradict each other.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import humanfriendly

from reconcile import templates
from reconcile.errors import SpecIssue
from reconcile.models import (
    ArtifactsRule,
    ConfigWrites,
    FilesRule,
    Goal,
    Import,
    KeyPath,
    Limits,
    Location,
    Match,
    MlflowSource,
    OrderBy,
    Rule,
    SetBlock,
    Target,
    UnlessTop,
    VersionTTL,
    WandbSource,
)
from reconcile.selection import filter_problems
from reconcile.spec.document import Document, JsonPath, Pos, render_path, short
from reconcile.spec.files import FileResult
from reconcile.spec.globs import glob_problem
from reconcile.spec.validation import schema_messages, validator

_MAX_MESSAGE = 400

CALENDAR_KEYS = ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
"""restic's calendar selectors of a ``files:`` (and ``artifacts:``) block."""

AUTO_ARTIFACT_TYPES = frozenset({"run_table", "code", "job"})
"""Artifact types W&B makes itself; its docs ("Manage artifact data retention") allow no TTL on them,
nor on any ``wandb-*`` type."""

_CONDITIONS = (
    "ids",
    "filters",
    "name",
    "tags",
    "state",
    "group",
    "job_type",
    "created_before",
    "created_after",
    "older_than",
)


class Builder:
    """Checks one schema-checked document beyond the schema and builds its models."""

    def __init__(self, document: Document, result: FileResult) -> None:
        self.doc = document
        self.result = result
        # Every prefix of every path with an issue, so "is this part clean?" is one set lookup
        # (a spec exported from 100k runs has 100k rules).
        self.error_prefixes: set[JsonPath] = set()
        for path in document.bad_paths:
            self.mark_bad(path)

    def build(self) -> None:
        data = self.doc.data
        errors = list(validator().iter_errors(data))
        # A value of the wrong type fails other keywords too (`version: "1"` is no integer and
        # not 1): say it once.
        wrong_type = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        for error in errors:
            if tuple(error.absolute_path) in wrong_type and error.validator != "type":
                continue
            for path, at_key, message in schema_messages(error):
                if any(path[:n] in self.doc.bad_paths for n in range(len(path) + 1)):
                    continue  # already reported while reading the YAML
                self.issue(path, message, at_key=at_key)
        if not isinstance(data, dict):
            return
        rules = data.get("rules")
        self.result.raw_rules = rules if isinstance(rules, list) else []
        for i, raw in enumerate(self.result.raw_rules):
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                self.result.rule_names.append((i, raw["name"], self.location(("rules", i, "name"))))
        if self.clean(("target",)) and "target" in data:
            self.result.target = (self.target(data["target"]), self.location(("target",)))
        if self.clean(("limits",)) and "limits" in data:
            self.result.limits = (self.limits(data["limits"]), self.location(("limits",)))
        for i, raw in enumerate(self.result.raw_rules):
            self.result.rules.append(self.rule(i, raw))
        imports = data.get("imports")
        self.result.raw_imports = imports if isinstance(imports, list) else []
        for i, raw in enumerate(self.result.raw_imports):
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                self.result.import_names.append((i, raw["name"], self.location(("imports", i, "name"))))
            self.result.imports.append(self.import_entry(i, raw))

    # helpers ------------------------------------------------------------------

    def pos(self, path: JsonPath, *, at_key: bool = False) -> Pos:
        if at_key and path in self.doc.key_marks:
            return self.doc.key_marks[path]
        for n in range(len(path), -1, -1):
            if path[:n] in self.doc.marks:
                return self.doc.marks[path[:n]]
        return (0, 0)

    def location(self, path: JsonPath, *, at_key: bool = False) -> Location:
        line, column = self.pos(path, at_key=at_key)
        return Location(self.result.file, line, column)

    def issue(self, path: JsonPath, message: str, *, at_key: bool = False) -> None:
        line, column = self.pos(path, at_key=at_key)
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        self.result.issues.append(SpecIssue(self.result.file, line, column, render_path(path), message))
        self.mark_bad(path)

    def mark_bad(self, path: JsonPath) -> None:
        self.error_prefixes.update(path[:n] for n in range(len(path) + 1))

    def clean(self, prefix: JsonPath) -> bool:
        """Whether nothing at or under ``prefix`` failed the schema."""
        return prefix not in self.error_prefixes

    # top level ----------------------------------------------------------------

    def target(self, raw: Mapping[str, Any]) -> Target:
        writes = raw.get("config_writes")
        return Target(
            entity=raw.get("entity"),
            project=raw.get("project"),
            config_writes=ConfigWrites(writes) if writes is not None else None,
        )

    def limits(self, raw: Mapping[str, Any]) -> Limits:
        max_bytes = self.size(("limits", "max_bytes"), raw["max_bytes"]) if "max_bytes" in raw else None
        return Limits(
            max_changed_runs=raw.get("max_changed_runs"),
            max_file_deletions=raw.get("max_file_deletions"),
            max_bytes=max_bytes,
        )

    # rules --------------------------------------------------------------------

    def get(self, raw: Any, path: JsonPath, key: str) -> Any:
        """``raw[key]`` when it is there and passed the schema, else None (so checks never see bad types)."""
        if isinstance(raw, dict) and key in raw and self.clean((*path, key)):
            return raw[key]
        return None

    def rule(self, i: int, raw: Any) -> Rule | None:
        """The rule at ``rules[i]``; every part that passed the schema is checked even if others did not."""
        if not isinstance(raw, dict):
            return None
        base: JsonPath = ("rules", i)
        schema_clean = self.clean(base)
        before = len(self.result.issues)
        unset, rename = raw.get("unset"), raw.get("rename")
        match = self.match((*base, "match"), raw.get("match"))
        set_block = self.set_block((*base, "set"), raw.get("set"))
        add_tags = self.tag_templates((*base, "add_tags"), self.get(raw, base, "add_tags") or [])
        remove_tags = self.tag_templates((*base, "remove_tags"), self.get(raw, base, "remove_tags") or [])
        unset_config = self.key_paths(
            (*base, "unset", "config"), self.get(unset, (*base, "unset"), "config") or []
        )
        unset_summary = self.key_paths(
            (*base, "unset", "summary"), self.get(unset, (*base, "unset"), "summary") or []
        )
        rename_config = self.renames(
            (*base, "rename", "config"), self.get(rename, (*base, "rename"), "config") or {}
        )
        rename_summary = self.renames(
            (*base, "rename", "summary"), self.get(rename, (*base, "rename"), "summary") or {}
        )
        files = self.files((*base, "files"), raw.get("files"))
        artifacts = self.artifacts((*base, "artifacts"), raw.get("artifacts"))
        self.conflicts(base, "config", set_block.config, unset_config, rename_config)
        self.conflicts(base, "summary", set_block.summary, unset_summary, rename_summary)
        self.tag_conflicts(base, set_block, add_tags, remove_tags)
        if not schema_clean or match is None or len(self.result.issues) > before:
            return None
        return Rule(
            name=raw["name"],
            location=self.location(base),
            target=self.target(raw.get("target", {})),
            match=match,
            set=set_block,
            add_tags=add_tags,
            remove_tags=remove_tags,
            unset_config=unset_config,
            unset_summary=unset_summary,
            rename_config=rename_config,
            rename_summary=rename_summary,
            files=files,
            artifacts=artifacts,
        )

    def import_entry(self, i: int, raw: Any) -> Import | None:
        """The import at ``imports[i]``, or None when any part of it failed a check."""
        base: JsonPath = ("imports", i)
        if not isinstance(raw, dict) or not self.clean(base):
            return None
        source: MlflowSource | WandbSource
        if "mlflow" in raw["from"]:
            mlflow = raw["from"]["mlflow"]
            source = MlflowSource(
                experiments=tuple(mlflow["experiments"]),
                tracking_uri=mlflow.get("tracking_uri"),
                filter=mlflow.get("filter"),
            )
        else:
            wandb = raw["from"]["wandb"]
            where = (*base, "from", "wandb")
            if _looks_like_a_key(wandb["api_key_env"]):  # the value itself is never repeated in the message
                self.issue((*where, "api_key_env"), "looks like an API key, not the name of a variable; "
                           "put the key in an environment variable and name that variable here")
            if "@" in wandb["base_url"].split("/")[2]:
                self.issue((*where, "base_url"), "must not carry credentials; name the variable "
                           "holding the API key in api_key_env")
            if not self.clean(base):
                return None
            source = WandbSource(
                base_url=wandb["base_url"].rstrip("/"),
                api_key_env=wandb["api_key_env"],
                entity=wandb["entity"],
                project=wandb["project"],
                filters=wandb.get("filters"),
            )
        return Import(
            name=raw["name"],
            location=self.location(base),
            source=source,
            target=self.target(raw.get("target", {})),
        )

    def match(self, path: JsonPath, raw: Any) -> Match | None:
        if not isinstance(raw, dict):
            return None
        if not raw:  # other keys are conditions, or unknown keys the schema already reported
            self.issue(
                path,
                "match has no conditions; add one ("
                + ", ".join(_CONDITIONS)
                + ") or write `all: true` to match every run",
            )
        name = self.get(raw, path, "name")
        if name is not None:
            self.glob((*path, "name"), name, file_path=False)
        before = self.instant((*path, "created_before"), self.get(raw, path, "created_before"))
        after = self.instant((*path, "created_after"), self.get(raw, path, "created_after"))
        if before is not None and after is not None and after >= before:
            self.issue(
                (*path, "created_after"),
                "created_after is not before created_before: the rule would match no run",
            )
        older_text = self.get(raw, path, "older_than")
        older = self.duration((*path, "older_than"), older_text) if older_text is not None else None
        state = self.get(raw, path, "state")
        ids, tags = self.get(raw, path, "ids"), self.get(raw, path, "tags")
        filters = self.get(raw, path, "filters")
        if filters is not None:
            for where, message in filter_problems(filters):
                self.issue((*path, "filters", *where), message, at_key=bool(where))
        return Match(
            ids=tuple(ids) if ids is not None else None,
            filters=filters,
            filters_at=self.location((*path, "filters"), at_key=True) if filters is not None else None,
            name=name,
            tags=tuple(tags) if tags is not None else None,
            state=(state,) if isinstance(state, str) else tuple(state) if state is not None else None,
            group=self.get(raw, path, "group"),
            job_type=self.get(raw, path, "job_type"),
            created_before=before,
            created_after=after,
            older_than=older,
            all=raw.get("all") is True,
        )

    def set_block(self, path: JsonPath, raw: Any) -> SetBlock:
        if not isinstance(raw, dict):
            return SetBlock()
        texts = {}
        for field in ("name", "notes", "group", "job_type"):
            texts[field] = self.get(raw, path, field)
            if texts[field] is not None:
                self.template((*path, field), texts[field])
        tags = self.get(raw, path, "tags")
        return SetBlock(
            config=_flatten(self.get(raw, path, "config") or {}),
            summary=_flatten(self.get(raw, path, "summary") or {}),
            tags=self.tag_templates((*path, "tags"), tags) if tags is not None else None,
            **texts,
        )

    def files(self, path: JsonPath, raw: Any) -> FilesRule | None:
        if not isinstance(raw, dict):
            return None
        for key in ("delete", "keep"):
            for j, pattern in enumerate(self.get(raw, path, key) or []):
                self.glob((*path, key, j), pattern, file_path=True)
        return FilesRule(
            delete=tuple(self.get(raw, path, "delete") or ()),
            keep=tuple(self.get(raw, path, "keep") or ()),
            allow_system_files=raw.get("allow_system_files") is True,
            allow_delete_all=raw.get("allow_delete_all") is True,
            **self.selectors(path, raw),
        )

    def artifacts(self, path: JsonPath, raw: Any) -> ArtifactsRule | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            return None
        name = self.get(raw, path, "name")
        if name is not None:
            self.glob((*path, "name"), name, file_path=False)
        aliased = tuple(self.get(raw, path, "delete_aliased") or ())
        if "latest" in aliased:
            self.issue((*path, "delete_aliased"), "`latest` is never deleted: W&B moves it to the newest "
                       "version, and a collection without it breaks `:latest` for every user")
        ttl = self.ttl((*path, "ttl"), raw["type"], self.get(raw, path, "ttl"))
        return ArtifactsRule(type=raw["type"], name=name, delete_aliased=aliased, ttl=ttl,
                             **self.selectors(path, raw))

    def ttl(self, path: JsonPath, artifact_type: str, text: str | None) -> VersionTTL | None:
        """``artifacts.ttl``: a duration (whole seconds, as the client sends it), ``none`` or ``inherit``."""
        if text is None:
            return None
        if artifact_type in AUTO_ARTIFACT_TYPES or artifact_type.startswith("wandb-"):
            self.issue(path, f"W&B allows no TTL on artifacts of type {short(artifact_type)}: it makes them "
                             "itself (run_table, code, job and wandb-* types)")
            return None
        if text.strip() in ("none", "inherit"):
            return VersionTTL(None, inherited=text.strip() == "inherit")
        span = self.duration(path, text)
        if span is None:
            return None
        seconds = span.total_seconds()
        if seconds < 1 or seconds != int(seconds):
            self.issue(path, f"{short(text)} is not a TTL: write whole seconds or more, such as 30d or 12h, "
                             "or `none` (never expires) or `inherit` (the team's default)")
            return None
        return VersionTTL(int(seconds))

    def selectors(self, path: JsonPath, raw: dict[str, Any]) -> dict[str, Any]:
        """The retention selectors shared by ``files:`` and ``artifacts:``."""
        top = self.get(raw, path, "unless_top")
        unless_top = None
        if top is not None:
            metric = self.key_path((*path, "unless_top", "metric"), top["metric"])
            unless_top = UnlessTop(metric=metric or (), goal=Goal(top["goal"]), count=top["count"])
        older, larger = self.get(raw, path, "older_than"), self.get(raw, path, "larger_than")
        within, order_by = self.get(raw, path, "keep_within"), self.get(raw, path, "order_by")
        return {
            "keep_last": self.get(raw, path, "keep_last"),
            **{key: self.get(raw, path, key) for key in CALENDAR_KEYS},
            "keep_within": self.duration((*path, "keep_within"), within) if within is not None else None,
            "older_than": self.duration((*path, "older_than"), older) if older is not None else None,
            "larger_than": self.size((*path, "larger_than"), larger) if larger is not None else None,
            "unless_top": unless_top,
            "order_by": OrderBy(order_by) if order_by is not None else OrderBy.UPDATED_AT,
        }

    # values -------------------------------------------------------------------

    def template(self, path: JsonPath, text: str) -> None:
        try:
            templates.parse(text)
        except templates.TemplateError as exc:
            self.issue(path, str(exc))

    def tag_templates(self, path: JsonPath, tags: Sequence[str]) -> tuple[str, ...]:
        for j, tag in enumerate(tags):
            self.template((*path, j), tag)
        return tuple(tags)

    def glob(self, path: JsonPath, pattern: str, *, file_path: bool) -> None:
        problem = glob_problem(pattern, file_path=file_path)
        if problem:
            self.issue(path, f"glob {short(pattern)} {problem}")

    def duration(self, path: JsonPath, text: str) -> timedelta | None:
        hint = "write a duration with a unit, such as 30d, 12h or 2w"
        if re.fullmatch(r"\s*[0-9.]+\s*", text):
            self.issue(path, f"{short(text)} has no unit; {hint}")
            return None
        try:
            seconds = humanfriendly.parse_timespan(text)
            span = timedelta(seconds=seconds) if math.isfinite(seconds) and seconds >= 0 else None
        except (humanfriendly.InvalidTimespan, ValueError, TypeError, ArithmeticError):
            span = None
        if span is None:
            self.issue(path, f"{short(text)} is not a duration; {hint}")
        return span

    def size(self, path: JsonPath, value: int | str) -> int | None:
        if isinstance(value, int):
            return value
        size: int | None = None
        if _SIZE.fullmatch(value):  # humanfriendly alone reads "5 parsecs" as 5 petabytes
            try:
                size = int(humanfriendly.parse_size(value))
            except (humanfriendly.InvalidSize, ValueError, TypeError, ArithmeticError):
                size = None
        if size is None or size < 0:
            self.issue(path, f"{short(value)} is not a size; write bytes or a size such as 50MB or 1.5GiB")
            return None
        return size

    def instant(self, path: JsonPath, text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
                day = date.fromisoformat(text.strip())
                return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            stamp = text.strip()
            stamp = stamp[:-1] + "+00:00" if stamp[-1:] in ("Z", "z") else stamp
            when = datetime.fromisoformat(stamp)
        except ValueError:
            self.issue(path, f"{short(text)} is not a date (2026-01-01) or a time (2026-01-01T12:00:00Z)")
            return None
        # A time without an offset is UTC, like W&B's createdAt.
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)

    def key_path(self, path: JsonPath, value: str | Sequence[str]) -> KeyPath | None:
        if isinstance(value, str):
            parts = tuple(value.split("."))
            if any(not p for p in parts):
                self.issue(
                    path,
                    f"key path {short(value)} has an empty part; write `a.b`, or a list "
                    '["a.b", "c"] for a key that contains a dot',
                )
                return None
            return parts
        return tuple(value)

    def key_paths(self, path: JsonPath, values: Sequence[str | Sequence[str]]) -> tuple[KeyPath, ...]:
        out = [self.key_path((*path, j), v) for j, v in enumerate(values)]
        return tuple(p for p in out if p is not None)

    def renames(self, path: JsonPath, raw: Mapping[str, Any]) -> tuple[tuple[KeyPath, KeyPath], ...]:
        pairs: list[tuple[KeyPath, KeyPath]] = []
        for old_text, new_text in raw.items():
            old = self.key_path((*path, old_text), old_text)
            new = self.key_path((*path, old_text), new_text)
            if old is None or new is None:
                continue
            if old == new:
                self.issue((*path, old_text), f"renames {_dotted(old)} to itself", at_key=True)
            elif any(_overlap(new, n) for _, n in pairs):
                self.issue((*path, old_text), f"two renames move a value to {_dotted(new)}", at_key=True)
            pairs.append((old, new))
        for old, new in pairs:
            for other_old, _ in pairs:
                if other_old == old and _overlap(new, old) and old != new:
                    self.issue((*path, ".".join(old)), f"moves {_dotted(old)} inside itself", at_key=True)
                elif other_old != old and _overlap(new, other_old):
                    self.issue(
                        (*path, ".".join(other_old)),
                        f"chained renames: {_dotted(new)} is renamed again; "
                        "rename each key straight to its final name",
                        at_key=True,
                    )
        return tuple(pairs)

    # conflicts ----------------------------------------------------------------

    def conflicts(
        self,
        base: JsonPath,
        namespace: str,
        desired: Mapping[KeyPath, Any],
        unset: Sequence[KeyPath],
        renames: Sequence[tuple[KeyPath, KeyPath]],
    ) -> None:
        """Operations in one rule that contradict each other on the same key."""
        for j, gone in enumerate(unset):
            for key in desired:
                if _overlap(gone, key):
                    self.issue(
                        (*base, "unset", namespace, j),
                        f"unset {namespace}.{_dotted(gone)} conflicts with "
                        f"set {namespace}.{_dotted(key)} in the same rule",
                    )
        for old, new in renames:
            where = (*base, "rename", namespace, ".".join(old))
            for verb, keys in (("set", desired), ("unset", unset)):
                for key in keys:
                    if _overlap(new, key) or _overlap(old, key):
                        self.issue(
                            where,
                            f"rename of {namespace}.{_dotted(old)} -> {_dotted(new)} conflicts with "
                            f"{verb} {namespace}.{_dotted(key)} in the same rule",
                            at_key=True,
                        )

    def tag_conflicts(
        self, base: JsonPath, set_block: SetBlock, add: Sequence[str], remove: Sequence[str]
    ) -> None:
        if set_block.tags is not None and (add or remove):
            self.issue(
                (*base, "set", "tags"),
                "set.tags is the exact set of tags; it cannot be combined with "
                "add_tags or remove_tags in one rule",
            )
        for j, tag in enumerate(remove):
            if tag in add:
                self.issue((*base, "remove_tags", j), f"tag {tag!r} is both added and removed by this rule")


def _looks_like_a_key(text: str) -> bool:
    """Whether ``text`` is an API key rather than a variable name (W&B keys are 40+ hex digits)."""
    return len(text) >= 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def _flatten(mapping: Mapping[str, Any], prefix: KeyPath = ()) -> dict[KeyPath, Any]:
    """Nested mappings descended to their leaves; keys taken literally; ``{}`` is a leaf."""
    out: dict[KeyPath, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _overlap(a: KeyPath, b: KeyPath) -> bool:
    """Whether one key path is the other or lies inside it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _dotted(path: KeyPath) -> str:
    return ".".join(path) if not any("." in p for p in path) else json.dumps(list(path))


_SIZE = re.compile(
    r"\s*\d+(\.\d+)?\s*(b|bytes?|[kmgtpe](i?b)?|(kilo|mega|giga|tera|peta|exa|kibi|mebi|gibi|tebi|pebi|exbi)"
    r"(bytes?)?)?\s*",
    re.IGNORECASE,
)
