"""W&B's MongoDB-style run filters and ``order`` strings, compiled to SQLite SQL.

The compiled SQL runs against the ``runs`` table (alias ``r``) of ``store.py``. A filter the
emulator does not understand raises :class:`FilterError`, which the resolver turns into a
GraphQL error: a wrong answer would be worse than no answer (issue 2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

SqlFragment = tuple[str, list[Any]]


class FilterError(ValueError):
    """The filter or order uses a key, operator or operand the emulator does not support."""


@dataclass(frozen=True, slots=True)
class _Field:
    """Where a filter key lives: a plain column, a JSON path inside a column, or the tag list."""

    kind: str  # "column" | "json" | "tags"
    column: str
    path: str = ""  # JSON path for kind == "json"
    is_time: bool = False

    @property
    def value_sql(self) -> str:
        if self.kind == "json":
            return f"json_extract({self.column}, '{self.path}')"
        return self.column

    @property
    def type_sql(self) -> str:
        return f"json_type({self.column}, '{self.path}')"


# Top-level keys users filter on (wandb/apis/public/api.py `runs` docstring; protocol §2).
_COLUMNS: dict[str, _Field] = {
    "name": _Field("column", "r.name"),
    "state": _Field("column", "r.state"),
    "displayName": _Field("column", "r.display_name"),
    "display_name": _Field("column", "r.display_name"),
    "group": _Field("column", "r.group_name"),
    "jobType": _Field("column", "r.job_type"),
    "job_type": _Field("column", "r.job_type"),
    "notes": _Field("column", "r.notes"),
    "description": _Field("column", "r.description"),
    "username": _Field("column", "r.username"),
    "sweep": _Field("column", "r.sweep_name"),
    "createdAt": _Field("column", "r.created_at", is_time=True),
    "created_at": _Field("column", "r.created_at", is_time=True),
    "heartbeatAt": _Field("column", "r.heartbeat_at", is_time=True),
    "heartbeat_at": _Field("column", "r.heartbeat_at", is_time=True),
    "tags": _Field("tags", "r.tags"),
}

_SUMMARY_PREFIXES = ("summary_metrics.", "summaryMetrics.")


def _json_path(segments: list[str], original: str) -> str:
    for seg in segments:
        if not seg or '"' in seg or "'" in seg:
            raise FilterError(f"filter key {original!r}: empty or quoted path segments are not supported")
    return "$" + "".join(f'."{seg}"' for seg in segments)


def _field(key: str) -> _Field:
    if key in _COLUMNS:
        return _COLUMNS[key]
    if key.startswith("config."):
        segments = key.split(".")[1:]
        # W&B stores config as {key: {value, desc}}. Users write `config.lr` (docs) or
        # `config.lr.value` (the `order` docstring); both address the stored value [INF].
        if len(segments) >= 2 and segments[1] == "value":
            path = segments
        else:
            path = [segments[0], "value", *segments[1:]]
        return _Field("json", "r.config", _json_path(path, key))
    for prefix in _SUMMARY_PREFIXES:
        if key.startswith(prefix):
            return _Field("json", "r.summary", _json_path(key[len(prefix) :].split("."), key))
    if key.startswith("summary."):
        # W&B names the summary `summary_metrics` in filters and order; `summary.X` is an error there.
        raise FilterError(
            f"unsupported filter key {key!r}: W&B filters the summary as summary_metrics.{key[8:]}"
        )
    raise FilterError(
        f"unsupported filter key {key!r}: the emulator knows {sorted(_COLUMNS)}, config.<key> and "
        "summary_metrics.<key>"
    )


def normalize_time(value: str, key: str) -> str:
    """Turn an ISO-8601 operand into the stored zone-less UTC form (``2026-01-02T03:04:05``)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FilterError(f"filter on {key!r}: {value!r} is not an ISO-8601 date or time") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed.isoformat()


def _operand(field: _Field, key: str, value: Any) -> Any:
    if field.is_time and isinstance(value, str):
        return normalize_time(value, key)
    if field.is_time and value is not None:
        # A number against a stored time would compare as SQL text-vs-integer and match every run.
        raise FilterError(
            f"filter on {key!r}: {value!r} is not a time; "
            'give an ISO-8601 string such as "2026-01-02T00:00:00"'
        )
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _eq(field: _Field, key: str, value: Any) -> SqlFragment:
    value = _operand(field, key, value)
    if isinstance(value, dict):
        raise FilterError(
            f"filter on {key!r}: matching a whole sub-document is not supported; use dotted keys "
            "(e.g. config.optimizer.name)"
        )
    if field.kind == "tags":
        if isinstance(value, str):
            return "EXISTS (SELECT 1 FROM json_each(r.tags) WHERE value = ?)", [value]
        if isinstance(value, list):
            # json() minifies the stored list, so spacing never decides the match (issue 15).
            return "json(r.tags) = ?", [_compact(value)]
        raise FilterError(f"filter on 'tags': operand {value!r} must be a string or a list of strings")
    if field.kind == "column":
        if value is None:
            return f"{field.value_sql} IS NULL", []
        if isinstance(value, (list, bool)):
            raise FilterError(f"filter on {key!r}: operand {value!r} must be a string")
        return f"{field.value_sql} = ?", [value]
    # JSON path: Mongo semantics -- a scalar also matches an array element.
    vs, ts = field.value_sql, field.type_sql
    if value is None:
        return f"{vs} IS NULL", []
    if isinstance(value, bool):
        return f"{ts} = ?", ["true" if value else "false"]
    if isinstance(value, list):
        return f"({ts} = 'array' AND {vs} = ?)", [_compact(value)]
    type_guard = f"{ts} = 'text'" if isinstance(value, str) else f"{ts} IN ('integer', 'real')"
    element = (
        f"({ts} = 'array' AND EXISTS (SELECT 1 FROM json_each({field.column}, '{field.path}') AS e "
        "WHERE e.value = ? AND e.type "
        + ("= 'text'" if isinstance(value, str) else "IN ('integer','real')")
        + "))"
    )
    return f"(({type_guard} AND {vs} = ?) OR {element})", [value, value]


_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _compare(field: _Field, key: str, op: str, value: Any) -> SqlFragment:
    value = _operand(field, key, value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FilterError(f"filter on {key!r}: {op} needs a number or a string, got {value!r}")
    sql_op = _COMPARE[op]
    if field.kind == "tags":
        raise FilterError(f"filter on 'tags': {op} is not supported")
    if field.kind == "column":
        return f"{field.value_sql} {sql_op} ?", [value]
    # Mongo compares only within a type bracket: numbers with numbers, strings with strings.
    guard = (
        f"{field.type_sql} = 'text'" if isinstance(value, str) else f"{field.type_sql} IN ('integer','real')"
    )
    return f"({guard} AND {field.value_sql} {sql_op} ?)", [value]


def _regex(field: _Field, key: str, pattern: Any, options: Any) -> SqlFragment:
    if not isinstance(pattern, str):
        raise FilterError(f"filter on {key!r}: $regex needs a string pattern")
    if options:
        if not isinstance(options, str) or set(options) - set("imsx"):
            raise FilterError(f"filter on {key!r}: $options must be made of i, m, s, x")
        pattern = f"(?{options}){pattern}"
    try:
        re.compile(pattern)
    except re.error as exc:
        raise FilterError(f"filter on {key!r}: invalid $regex {pattern!r}: {exc}") from exc
    if field.kind == "tags":
        return "EXISTS (SELECT 1 FROM json_each(r.tags) WHERE regexp(?, value))", [pattern]
    if field.kind == "json":
        return f"({field.type_sql} = 'text' AND regexp(?, {field.value_sql}))", [pattern]
    return f"regexp(?, {field.value_sql})", [pattern]


def _exists(field: _Field, key: str, value: Any) -> SqlFragment:
    if not isinstance(value, bool):
        raise FilterError(f"filter on {key!r}: $exists needs true or false")
    if field.kind == "tags":
        return ("1" if value else "0"), []
    target = field.type_sql if field.kind == "json" else field.value_sql
    return f"{target} IS {'NOT ' if value else ''}NULL", []


def _not(fragment: SqlFragment) -> SqlFragment:
    # coalesce: a NULL (unknown) comparison must count as "does not match", so NOT gives true.
    return f"NOT coalesce(({fragment[0]}), 0)", fragment[1]


def _join(parts: list[SqlFragment], glue: str, empty: str) -> SqlFragment:
    if not parts:
        return empty, []
    params: list[Any] = []
    for _, p in parts:
        params.extend(p)
    return "(" + f" {glue} ".join(f"({s})" for s, _ in parts) + ")", params


def _in(field: _Field, key: str, values: list[Any]) -> SqlFragment:
    # One SQL IN for plain string columns: apply re-reads batches of run ids as {"name": {"$in": [...]}}.
    if field.kind == "column" and not field.is_time and values and all(isinstance(v, str) for v in values):
        return f"{field.value_sql} IN ({','.join('?' * len(values))})", list(values)
    return _join([_eq(field, key, v) for v in values], "OR", "0")


def _key_condition(key: str, operand: Any) -> SqlFragment:  # noqa: PLR0912 - one branch per operator
    field = _field(key)
    if not isinstance(operand, dict):
        return _eq(field, key, operand)
    ops = list(operand)
    if not ops:
        raise FilterError(f"filter on {key!r}: an empty object matches nothing sensible; give a value")
    if not all(op.startswith("$") for op in ops):
        if any(op.startswith("$") for op in ops):
            raise FilterError(f"filter on {key!r}: do not mix operators and plain keys in {operand!r}")
        return _eq(field, key, operand)  # raises: sub-document match
    parts: list[SqlFragment] = []
    for op, value in operand.items():
        if op == "$eq":
            parts.append(_eq(field, key, value))
        elif op == "$ne":
            parts.append(_not(_eq(field, key, value)))
        elif op in _COMPARE:
            parts.append(_compare(field, key, op, value))
        elif op in ("$in", "$nin"):
            if not isinstance(value, list):
                raise FilterError(f"filter on {key!r}: {op} needs a list")
            any_of = _in(field, key, value)
            parts.append(any_of if op == "$in" else _not(any_of))
        elif op == "$exists":
            parts.append(_exists(field, key, value))
        elif op == "$regex":
            parts.append(_regex(field, key, value, operand.get("$options")))
        elif op == "$options":
            if "$regex" not in operand:
                raise FilterError(f"filter on {key!r}: $options needs $regex")
        else:
            raise FilterError(
                f"unsupported operator {op!r} on {key!r}: the emulator supports $eq $ne $gt $gte $lt $lte "
                "$in $nin $exists $regex (and $and $or $nor at the top)"
            )
    return _join(parts, "AND", "1")


def _document(doc: Any) -> SqlFragment:
    if not isinstance(doc, dict):
        raise FilterError(f"a filter must be a JSON object, got {doc!r}")
    parts: list[SqlFragment] = []
    for key, operand in doc.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(operand, list) or not operand:
                raise FilterError(f"{key} needs a non-empty list of filter objects")
            subs = [_document(sub) for sub in operand]
            if key == "$and":
                parts.append(_join(subs, "AND", "1"))
            elif key == "$or":
                parts.append(_join(subs, "OR", "0"))
            else:
                parts.append(_not(_join(subs, "OR", "0")))
        elif key.startswith("$"):
            raise FilterError(f"unsupported top-level operator {key!r}: use $and, $or or $nor")
        else:
            parts.append(_key_condition(key, operand))
    return _join(parts, "AND", "1")


def compile_filter(filters: str | dict[str, Any] | None) -> SqlFragment:
    """Compile a filter (the JSON string the client sends, or a dict) to a WHERE fragment and params."""
    if filters is None or filters == "":
        return "1", []
    if isinstance(filters, str):
        return _compile_text(filters)
    return _document(filters)


@lru_cache(maxsize=256)
def _compile_text(text: str) -> SqlFragment:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FilterError(f"filters is not valid JSON: {exc}") from exc
    sql, params = _document(doc) if doc is not None else ("1", [])
    return sql, params


@dataclass(frozen=True, slots=True)
class Order:
    """A compiled ``order``: the SQL expression to sort by and the direction."""

    expr: str
    descending: bool


_ORDER_COLUMNS = {
    "created_at": "r.created_at",
    "createdAt": "r.created_at",
    "heartbeat_at": "r.heartbeat_at",
    "heartbeatAt": "r.heartbeat_at",
    "name": "r.name",
    "display_name": "r.display_name",
    "displayName": "r.display_name",
    "state": "r.state",
}


def compile_order(order: str | None) -> Order:
    """Compile ``[+|-]created_at | heartbeat_at | config.<key>[.value] | summary_metrics.<key>``."""
    text = (order or "+created_at").strip()
    descending = text.startswith("-")
    key = text.lstrip("+-")
    if key in _ORDER_COLUMNS:
        return Order(_ORDER_COLUMNS[key], descending)
    if key.startswith("config.") or key.startswith(_SUMMARY_PREFIXES):
        return Order(_field(key).value_sql, descending)
    raise FilterError(
        f"unsupported order {order!r}: use [+|-] with created_at, heartbeat_at, name, display_name, "
        "state, config.<key>[.value] or summary_metrics.<key>"
    )
