"""Which runs a rule selects: the server-side filter W&B can evaluate, and the full
client-side check that is always re-applied (so the server filter is only an optimisation).

W&B's run filter is MongoDB-style and passed through opaquely by the client
(``../shared/wandb-protocol.md`` §2). Its documented operators are
``$and $or $nor $eq $ne $gt $gte $lt $lte $in $nin $exists $regex``; ``$all`` is not
documented, so tag conditions become one ``$in`` per tag under ``$and``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from wcmatch import fnmatch

from reconcile.errors import PlanError
from reconcile.models import LiveRun, Rule, Spec

MAX_SERVER_IDS = 1000
"""Above this many ``ids`` the ``$in`` list is not sent (request size); they are checked client-side."""

_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex"})
_LOGICAL = frozenset({"$and", "$or", "$nor"})
_SIMPLE_KEYS = frozenset(
    {"state", "name", "displayName", "display_name", "tags", "group", "jobType", "createdAt"}
)
_MISSING = object()


# --------------------------------------------------------------------------- server side


def _wandb_time(moment: datetime, *, round_up: bool) -> str:
    """Zone-less ISO UTC to whole seconds, the format W&B is believed to use (protocol §13.9).

    Rounded outwards so the server filter never excludes a run the exact client-side
    check would select.
    """
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    whole = utc.replace(microsecond=0)
    if round_up and whole != utc:
        whole += timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%S")


def server_filter(rule: Rule, now: datetime) -> dict[str, Any] | None:
    """One W&B filter for the conditions of ``rule`` the server can evaluate, or None."""
    m = rule.match
    clauses: list[dict[str, Any]] = []
    if m.filters:
        clauses.append(dict(m.filters))
    if m.ids is not None and len(m.ids) <= MAX_SERVER_IDS:
        clauses.append({"name": {"$in": list(m.ids)}})
    if m.state:
        clauses.append({"state": {"$in": list(m.state)}})
    clauses.extend({"tags": {"$in": [tag]}} for tag in m.tags or ())
    if m.group is not None:
        clauses.append({"group": m.group})
    if m.job_type is not None:
        clauses.append({"jobType": m.job_type})
    before = _created_before(rule, now)
    if before is not None:
        clauses.append({"createdAt": {"$lt": _wandb_time(before, round_up=True)}})
    if m.created_after is not None:
        clauses.append({"createdAt": {"$gt": _wandb_time(m.created_after, round_up=False)}})
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


def project_filter(rules: Sequence[Rule], now: datetime) -> dict[str, Any] | None:
    """The union of the rules' server filters (one project), or None if any rule needs every run."""
    filters: list[dict[str, Any]] = []
    for rule in rules:
        one = server_filter(rule, now)
        if one is None:
            return None
        filters.append(one)
    if not filters:
        return None
    if len(filters) == 1:
        return filters[0]
    return {"$or": filters}


def targets(spec: Spec) -> dict[tuple[str, str], list[Rule]]:
    """The spec's rules grouped by (entity, project), in spec order."""
    grouped: dict[tuple[str, str], list[Rule]] = {}
    for rule in spec.rules:
        entity, project = rule.target.entity, rule.target.project
        if not entity or not project:
            missing = "entity" if not entity else "project"
            raise PlanError(
                f"rule {rule.name!r} ({rule.location}) has no {missing}: set target.{missing} in the spec "
                f"or the WANDB_{missing.upper()} environment variable"
            )
        grouped.setdefault((entity, project), []).append(rule)
    return grouped


# --------------------------------------------------------------------------- client side


def _created_before(rule: Rule, now: datetime) -> datetime | None:
    """The tighter of ``created_before`` and ``now - older_than``."""
    m = rule.match
    bounds = [b for b in (m.created_before, now - m.older_than if m.older_than else None) if b is not None]
    return min(bounds) if bounds else None


def _has_condition(rule: Rule) -> bool:
    m = rule.match
    return any(
        v is not None
        for v in (m.ids, m.filters, m.name, m.tags, m.state, m.group, m.job_type, m.created_before,
                  m.created_after, m.older_than)
    )


def validate_filters(rule: Rule) -> None:
    """Raise PlanError naming the rule if its ``match.filters`` cannot be checked client-side."""
    if rule.match.filters is not None:
        _validate(rule, rule.match.filters)


def matches(rule: Rule, run: LiveRun, now: datetime) -> bool:
    """Whether ``run`` meets every condition of ``rule.match``; PlanError for a filter we cannot check."""
    m = rule.match
    validate_filters(rule)
    if not m.all and not _has_condition(rule):
        return False  # an empty match selects nothing: `all: true` is the only way to match every run
    before = _created_before(rule, now)
    checks: tuple[Callable[[], bool], ...] = (
        lambda: m.ids is None or run.id in m.ids,
        lambda: m.state is None or run.state in m.state,
        lambda: m.tags is None or set(m.tags) <= set(run.tags),
        lambda: m.group is None or run.group == m.group,
        lambda: m.job_type is None or run.job_type == m.job_type,
        lambda: before is None or run.created_at < before,
        lambda: m.created_after is None or run.created_at > m.created_after,
        lambda: m.name is None
        or (run.name is not None and fnmatch.fnmatch(run.name, m.name, flags=fnmatch.CASE)),
        lambda: m.filters is None or _eval(rule, run, m.filters),
    )
    return all(check() for check in checks)


# ---- the Mongo-style filter, evaluated on a LiveRun


def _validate(rule: Rule, flt: Any) -> None:
    """Raise PlanError if the filter uses a key or operator reconcile cannot check client-side."""
    if not isinstance(flt, Mapping):
        raise PlanError(f"rule {rule.name!r}: match.filters must be a mapping, got {flt!r}")
    for key, cond in flt.items():
        if key in _LOGICAL:
            if not isinstance(cond, Sequence) or isinstance(cond, str):
                raise PlanError(f"rule {rule.name!r}: match.filters {key} takes a list of filters")
            for sub in cond:
                _validate(rule, sub)
            continue
        if key.startswith("$"):
            raise PlanError(_unsupported(rule, f"operator {key}"))
        _field_getter(rule, key)
        if isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
            for op, operand in cond.items():
                if op not in _OPERATORS:
                    raise PlanError(_unsupported(rule, f"operator {op} (on {key})"))
                if op in ("$in", "$nin") and (not isinstance(operand, Sequence) or isinstance(operand, str)):
                    raise PlanError(f"rule {rule.name!r}: match.filters {key}: {op} takes a list")
                if op == "$regex":
                    try:
                        re.compile(str(operand))
                    except re.error as exc:
                        raise PlanError(
                            f"rule {rule.name!r}: match.filters {key}: bad $regex: {exc}"
                        ) from exc


def _unsupported(rule: Rule, what: str) -> str:
    return (
        f"rule {rule.name!r}: match.filters uses {what}, which reconcile cannot check on the runs it reads; "
        f"use keys {', '.join(sorted(_SIMPLE_KEYS))}, config.KEY or summary_metrics.KEY with "
        f"{', '.join(sorted(_LOGICAL | _OPERATORS))}"
    )


def _lookup(node: Any, parts: Sequence[str]) -> Any:
    """Walk a dotted path, preferring the longest key that exists (keys may contain dots)."""
    if not parts:
        return node
    if not isinstance(node, Mapping):
        return _MISSING
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            found = _lookup(node[key], parts[cut:])
            if found is not _MISSING:
                return found
    return _MISSING


def _field_getter(rule: Rule, key: str) -> Any:
    head, _, rest = key.partition(".")
    if key in _SIMPLE_KEYS:
        return lambda run: _simple_value(run, key)
    if head in ("config", "summary_metrics") and rest:
        parts = rest.split(".")

        def get(run: LiveRun) -> Any:
            found = _lookup(run.config if head == "config" else run.summary, parts)
            # Users copy filters written against the stored form {"key": {"value": ...}}.
            if found is _MISSING and head == "config" and len(parts) > 1 and parts[-1] == "value":
                found = _lookup(run.config, parts[:-1])
            return found

        return get
    raise PlanError(_unsupported(rule, f"key {key!r}"))


def _simple_value(run: LiveRun, key: str) -> Any:
    value: Any = {
        "state": run.state,
        "name": run.id,
        "displayName": run.name,
        "display_name": run.name,
        "tags": list(run.tags),
        "group": run.group,
        "jobType": run.job_type,
        "createdAt": run.created_at,
    }[key]
    return _MISSING if value is None else value


def _eval(rule: Rule, run: LiveRun, flt: Mapping[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            ok = all(_eval(rule, run, sub) for sub in cond)
        elif key == "$or":
            ok = any(_eval(rule, run, sub) for sub in cond)
        elif key == "$nor":
            ok = not any(_eval(rule, run, sub) for sub in cond)
        else:
            value = _field_getter(rule, key)(run)
            if isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
                ok = all(_apply_op(op, operand, value) for op, operand in cond.items())
            else:
                ok = _apply_op("$eq", cond, value)
        if not ok:
            return False
    return True


def _candidates(value: Any) -> list[Any]:
    """Mongo semantics: a condition on an array field holds if it holds for an element."""
    if isinstance(value, list):
        return [value, *value]
    return [value]


def _apply_op(op: str, operand: Any, value: Any) -> bool:
    if op in _NEGATED:
        return not _apply_op(_NEGATED[op], operand, value)
    if op == "$exists":
        return (value is not _MISSING) == bool(operand)
    if op == "$eq":
        return any(_equal(v, operand) for v in _candidates(value))
    if op == "$in":
        return any(_apply_op("$eq", item, value) for item in operand)
    if op == "$regex":
        pattern = re.compile(str(operand))
        return any(isinstance(v, str) and pattern.search(v) is not None for v in _candidates(value))
    return any(_compare(op, v, operand) for v in _candidates(value))


_NEGATED = {"$ne": "$eq", "$nin": "$in"}


def _equal(value: Any, operand: Any) -> bool:
    if value is _MISSING:
        return operand is None  # {"key": null} matches a missing key, as in MongoDB
    if isinstance(value, datetime):
        parsed = _as_time(operand)
        return parsed is not None and value == parsed
    if isinstance(value, bool) or isinstance(operand, bool):
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    return bool(value == operand)


def _as_time(operand: Any) -> datetime | None:
    if isinstance(operand, datetime):
        moment = operand
    elif isinstance(operand, str):
        try:
            moment = datetime.fromisoformat(operand.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    # W&B's createdAt strings are zone-less UTC (protocol §13.9).
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _is_number(x: Any) -> bool:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return not (isinstance(x, float) and math.isnan(x))


_ORDER = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _compare(op: str, value: Any, operand: Any) -> bool:
    if isinstance(value, datetime):
        operand = _as_time(operand)
        comparable = operand is not None
    else:
        # MongoDB compares only within one type: numbers with numbers, strings with strings.
        comparable = (_is_number(value) and _is_number(operand)) or (
            isinstance(value, str) and isinstance(operand, str)
        )
    return comparable and bool(_ORDER[op](value, operand))
