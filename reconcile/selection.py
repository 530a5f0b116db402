"""Which runs a rule selects: the server-side filter W&B can evaluate, and the full
client-side check that is always re-applied (so the server filter is only an optimisation).

W&B's run filter is MongoDB-style and passed through opaquely by the client
(``../shared/wandb-protocol.md`` §2). Its documented operators are
``$and $or $nor $eq $ne $gt $gte $lt $lte $in $nin $exists $regex``; ``$all`` is not
documented, so tag conditions become one ``$in`` per tag under ``$and``.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from wcmatch import fnmatch

from reconcile.errors import BackendError, PlanError
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


def refused_filter(error: BackendError, rules: Sequence[Rule], now: datetime,
                   probe: Callable[[Mapping[str, Any]], None],
                   sent: Mapping[str, Any] | None = None) -> BackendError:
    """The error to report when the server refused a project's listing: one line per rule whose own
    filter ``probe`` finds refused, each at the file and line of its ``match.filters``.

    ``probe(filter)`` asks the server for one page with that filter and raises what it raises;
    ``sent`` is the filter the refused listing sent (the rules' union). Only a refusal the server
    answered (``BackendError.refusal``) can be a filter's fault: transport, auth and not-found
    errors, and a refusal no probe reproduces, are returned unchanged.
    """
    if type(error) is not BackendError or error.refusal is None:
        return error
    refused = rule_refusals(rules, now, probe)
    if refused is None:
        return error  # the server is failing now, not the filter: say what happened first
    if refused:
        refused.status = error.status
        return refused
    refusal = _refusal(probe, sent) if sent is not None else None
    if not isinstance(refusal, str):
        return error  # not reproduced by any filter: something else was refused
    named = ", ".join(f"{r.name!r} ({_where(r)})" for r in rules if server_filter(r, now) is not None)
    return BackendError(f"W&B refused the filter built from rules {named} together, though it accepts each "
                        f"rule's alone: {refusal}. Plan those rules from separate specs, or report this.",
                        status=error.status)


def rule_refusals(rules: Sequence[Rule], now: datetime, probe: Callable[[Mapping[str, Any]], None], *,
                  only_written: bool = False) -> BackendError | Literal[False] | None:
    """Ask the server with each rule's own filter (``probe``, as in ``refused_filter``): the error naming
    each rule it refuses, at the file and line of its ``match.filters``; False if it refuses none; None
    if it is failing (the probe's error is not a refusal). ``only_written``: only the rules whose
    ``match.filters`` the spec writes (the rest of a filter is built by reconcile from ``match``).
    """
    blamed: list[tuple[Rule, str]] = []
    for rule in rules:
        flt = server_filter(rule, now)
        if flt is None or (only_written and rule.match.filters is None):
            continue
        answer = _refusal(probe, flt)
        if answer is _FAILING:
            return None
        if isinstance(answer, str):
            blamed.append((rule, answer))
    if not blamed:
        return False
    lines = [f"{_where(rule)}: rule {rule.name!r}: W&B refused "
             f"{'its match.filters' if rule.match.filters_at else 'the filter built from its match'} "
             f"while listing runs of {rule.target.entity}/{rule.target.project}: {said}"
             for rule, said in blamed]
    lines.append("Fix the filters and plan again (`reconcile validate` checks the operators W&B "
                 "documents, not every value a server refuses).")
    return BackendError("\n".join(lines))


_FAILING = object()


def _refusal(probe: Callable[[Mapping[str, Any]], None], flt: Mapping[str, Any]) -> str | object | None:
    """What the server says to ``flt``: None if it accepts it, its refusal, or ``_FAILING``."""
    try:
        probe(flt)
    except BackendError as exc:
        return exc.refusal if type(exc) is BackendError and exc.refusal is not None else _FAILING
    return None


def _where(rule: Rule) -> str:
    """Where a rule's filter was written: its ``match.filters`` if it has one, else the rule."""
    return str(rule.match.filters_at or rule.location)


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


FilterPath = tuple[str | int, ...]


def filter_problems(flt: Any, at: FilterPath = ()) -> list[tuple[FilterPath, str]]:
    """Every problem of a ``match.filters`` value, offline: operators W&B does not document, keys
    reconcile cannot check on the runs it reads, operands of the wrong shape, a bad ``$regex``.

    Each problem comes with its path inside the filter (``("config.lr", "$gtt")``), so the spec
    checker can point at its line and the planner can name it.
    """
    if not isinstance(flt, Mapping):
        return [(at, f"a filter is a mapping of keys to conditions, got {json.dumps(flt, default=str)}")]
    problems: list[tuple[FilterPath, str]] = []
    for key, cond in flt.items():
        where = (*at, key)
        if key in _LOGICAL:
            if not isinstance(cond, Sequence) or isinstance(cond, str) or not cond:
                problems.append((where, f"{key} takes a non-empty list of filters"))
                continue
            for i, sub in enumerate(cond):
                problems.extend(filter_problems(sub, (*where, i)))
        elif str(key).startswith("$"):
            problems.append((where, _unknown("operator", str(key), _LOGICAL, "at the top of a filter")))
        elif not _known_key(str(key)):
            problems.append((where, f"reconcile cannot check the key {key!r} on the runs it reads; use "
                                    f"{', '.join(sorted(_SIMPLE_KEYS))}, config.KEY or summary_metrics.KEY"))
        elif isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
            if not all(str(k).startswith("$") for k in cond):
                problems.append((where, f"the condition on {key!r} mixes operators with plain keys; W&B "
                                        "refuses that: use operators only"))
            else:
                problems.extend(_condition_problems(str(key), where, cond))
        elif isinstance(cond, Mapping):
            problems.append((where, f"an empty condition on {key!r} matches nothing W&B can evaluate; give a "
                                    "value or an operator" if not cond else
                                    f"W&B does not match a whole sub-document ({key!r}); use a dotted key "
                                    f"per field (e.g. {key}.{next(iter(cond))})"))
        else:
            problems.extend((where, message) for message in _operand_problems(str(key), "$eq", cond))
    return problems


def _condition_problems(key: str, where: FilterPath, cond: Mapping[str, Any]) -> list[tuple[FilterPath, str]]:
    """The problems of one key's ``{"$op": operand, ...}`` condition."""
    problems: list[tuple[FilterPath, str]] = []
    for op, operand in cond.items():
        at = (*where, op)
        if op not in _OPERATORS:
            problems.append((at, _unknown("operator", str(op), _OPERATORS, "on a key")))
        elif op in ("$in", "$nin") and (not isinstance(operand, Sequence) or isinstance(operand, str)):
            problems.append((at, f"{op} takes a list of values"))
        elif op in ("$in", "$nin"):
            problems.extend((at, message) for item in operand
                            for message in _operand_problems(key, "$eq", item))
        elif op == "$exists" and not isinstance(operand, bool):
            problems.append((at, "$exists takes true or false"))
        elif op == "$regex":
            try:
                re.compile(str(operand))
            except re.error as exc:
                problems.append((at, f"bad $regex: {exc}"))
        else:
            problems.extend((at, message) for message in _operand_problems(key, op, operand))
    return problems


_TIME_KEYS = frozenset({"createdAt"})
_TEXT_KEYS = _SIMPLE_KEYS - _TIME_KEYS - {"tags"}


def _operand_problems(key: str, op: str, operand: Any) -> list[str]:
    """What W&B refuses in the operand of ``$eq``/``$ne``/``$gt``/... on ``key`` (the emulator refuses the
    same), where reconcile's own check would quietly evaluate it: it re-checks every run client-side,
    and a read that sends no filter (another rule with ``all: true``) never asks the server."""
    ordered = op in _ORDER
    if key == "tags" and ordered:
        return [f"W&B does not order tags ({op}): tags are compared only by $eq, $ne, $in, $nin, $regex "
                "and $exists"]
    if key in _TIME_KEYS and operand is not None and _as_time(operand) is None:
        return [f"{key} is compared with an ISO-8601 date or time (e.g. \"2026-01-02T00:00:00\"), not "
                f"{json.dumps(operand, default=str)}"]
    if ordered and (isinstance(operand, bool) or not isinstance(operand, int | float | str)):
        return [f"{op} takes a number or a string, not {json.dumps(operand, default=str)}"]
    if isinstance(operand, Mapping):
        return [f"W&B does not match a whole sub-document ({key!r}); use a dotted key per field"]
    if key in _TEXT_KEYS and isinstance(operand, list | bool):
        return [f"{key} takes one string, not {json.dumps(operand)}"]
    if key == "tags" and not (isinstance(operand, str)
                              or (isinstance(operand, list) and all(isinstance(t, str) for t in operand))):
        return [f"tags are matched by a string or a list of strings, not {json.dumps(operand, default=str)}"]
    return []


def _unknown(what: str, name: str, allowed: frozenset[str], where: str) -> str:
    close = difflib.get_close_matches(name, sorted(_LOGICAL | _OPERATORS), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"{name!r} is not a filter {what} W&B documents {where}; {hint}"
            f"use {', '.join(sorted(allowed))}")


def _known_key(key: str) -> bool:
    head, _, rest = key.partition(".")
    return key in _SIMPLE_KEYS or (head in ("config", "summary_metrics") and bool(rest))


def _validate(rule: Rule, flt: Any) -> None:
    """Raise PlanError naming the rule for the first problem of its filter (see ``filter_problems``)."""
    problems = filter_problems(flt)
    if problems:
        path, message = problems[0]
        where = ".".join(str(p) for p in ("match.filters", *path))
        raise PlanError(f"rule {rule.name!r} ({rule.location}): {where}: {message}")


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
    raise PlanError(f"rule {rule.name!r}: match.filters: reconcile cannot check the key {key!r}")


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
