"""Retention policy selectors with restic's ``forget`` semantics, for any dated, named items.

Used for run files (``files:``) and artifact versions (``artifacts:``). Given the
candidates that may be deleted, ``survivors`` says for each which selectors keep it:

- ``keep_last N``: the N newest candidates.
- ``keep_hourly/daily/weekly/monthly/yearly N``: for each of the last N hours, days, ISO
  weeks (Monday to Sunday), months or years *that have candidates*, the newest candidate
  of that period. Periods are calendar periods in UTC, never relative to now.
- ``keep_within D``: every candidate updated less than D before the newest candidate
  (restic measures from the latest snapshot, not from now, so a run whose uploads stopped
  never loses everything to the clock); candidates dated in the future are kept too.

A candidate kept by any selector survives (restic ORs them). "Newest" follows ``order_by``:
the update time (ties broken by name), or the natural order of the name
(``step-900`` < ``step-1000``); calendar periods always come from the update time.
Unlike restic >= 0.17, an extra "oldest" candidate is not kept when a count is left over:
the contract asks for exactly the newest candidate of each of the last N periods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from natsort import natsort_keygen

from reconcile.models import KeepReason, OrderBy

T = TypeVar("T")

PERIODS: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("keep_hourly", lambda t: t.strftime("%Y-%m-%dT%H")),
    ("keep_daily", lambda t: t.strftime("%Y-%m-%d")),
    ("keep_weekly", lambda t: "{:04d}-W{:02d}".format(*t.isocalendar()[:2])),
    ("keep_monthly", lambda t: t.strftime("%Y-%m")),
    ("keep_yearly", lambda t: f"{t.year:04d}"),
)
"""Selector name -> the UTC period label of a time; labels sort in time order."""

_natural = natsort_keygen()


class HasPolicy(Protocol):
    """A rule block that carries the policy selectors (``files:`` or ``artifacts:``)."""

    @property
    def keep_last(self) -> int | None: ...
    @property
    def keep_hourly(self) -> int | None: ...
    @property
    def keep_daily(self) -> int | None: ...
    @property
    def keep_weekly(self) -> int | None: ...
    @property
    def keep_monthly(self) -> int | None: ...
    @property
    def keep_yearly(self) -> int | None: ...
    @property
    def keep_within(self) -> timedelta | None: ...
    @property
    def order_by(self) -> OrderBy: ...
    @property
    def older_than(self) -> timedelta | None: ...
    @property
    def larger_than(self) -> int | None: ...


def duration_text(value: timedelta) -> str:
    """A duration in the spec's own units, largest exact one: ``30d``, ``12h``, ``90m``, ``45s``."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def newest_first(
    items: Sequence[T], order_by: OrderBy, *, when: Callable[[T], datetime], name: Callable[[T], str],
    natural_ties: bool = False,
) -> list[int]:
    """Indexes of ``items``, newest first by ``order_by``.

    By time, equal times rank by name (as restic's stable sort), or with ``natural_ties`` the
    naturally larger name first (artifact versions: v10 was logged after v9 in the same second).
    """
    if order_by is OrderBy.NAME:
        return sorted(range(len(items)), key=lambda i: _natural(name(items[i])), reverse=True)
    if natural_ties:
        by_name = sorted(range(len(items)), key=lambda i: _natural(name(items[i])), reverse=True)
        return sorted(by_name, key=lambda i: -when(items[i]).timestamp())  # stable: ties keep that order
    return sorted(range(len(items)), key=lambda i: (-when(items[i]).timestamp(), name(items[i])))


def survivors(
    items: Sequence[T],
    policy: HasPolicy,
    *,
    when: Callable[[T], datetime],
    name: Callable[[T], str],
    now: datetime,
    natural_ties: bool = False,
) -> list[list[tuple[str, str | None]]]:
    """For each item, the ``(selector, detail)`` pairs that keep it; an empty list means delete it.

    ``detail`` is the rank (``2 of 3``), the period (``2026-05-03``, ``2026-W18``) or the duration.
    """
    reasons: list[list[tuple[str, str | None]]] = [[] for _ in items]
    if not items:
        return reasons
    order = newest_first(items, policy.order_by, when=when, name=name, natural_ties=natural_ties)
    if policy.keep_last:
        for rank, i in enumerate(order[: policy.keep_last], start=1):
            reasons[i].append(("keep_last", f"{rank} of {policy.keep_last}"))
    for selector, period in PERIODS:
        count = getattr(policy, selector)
        if not count:
            continue
        newest_in: dict[str, int] = {}
        for i in order:
            newest_in.setdefault(period(when(items[i])), i)
        for label in sorted(newest_in, reverse=True)[:count]:
            reasons[newest_in[label]].append((selector, label))
    if policy.keep_within is not None:
        past = [when(item) for item in items if when(item) <= now]
        latest = max(past, default=None)
        for i, item in enumerate(items):
            t = when(item)
            if t > now or (latest is not None and t > latest - policy.keep_within):
                reasons[i].append(("keep_within", duration_text(policy.keep_within)))
    return reasons


@dataclass(slots=True)
class Sorted(Generic[T]):
    """What one rule decides for a group of candidates: those it deletes, and each survivor's reasons."""

    delete: list[T] = field(default_factory=list)
    kept: list[tuple[T, tuple[KeepReason, ...]]] = field(default_factory=list)


def sort_out(
    rule_name: str,
    policy: HasPolicy,
    candidates: Iterable[T],
    *,
    protection: Callable[[T], list[KeepReason]],
    when: Callable[[T], datetime],
    name: Callable[[T], str],
    now: datetime,
    natural_ties: bool = False,
) -> Sorted[T]:
    """The one retention pass shared by run files and artifact versions.

    A candidate with a ``protection`` reason (a keep glob, an alias, ``older_than`` or
    ``larger_than`` not met, ...) survives for that reason; the selectors then rank only the
    rest (so they can only spare more), and a candidate no selector picks is deleted.
    """
    out: Sorted[T] = Sorted()
    ranked: list[T] = []
    for candidate in candidates:
        reasons = protection(candidate)
        if reasons:
            out.kept.append((candidate, tuple(reasons)))
        else:
            ranked.append(candidate)
    chosen = survivors(ranked, policy, when=when, name=name, now=now, natural_ties=natural_ties)
    for candidate, picked in zip(ranked, chosen, strict=True):
        if picked:
            out.kept.append((candidate, tuple(KeepReason(rule_name, s, d) for s, d in picked)))
        else:
            out.delete.append(candidate)
    return out
