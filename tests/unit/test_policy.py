"""Calendar retention against restic's documented ``forget`` examples, plus order_by and keep_within.

restic's docs ("Removing snapshots according to a policy", doc/060_forget.rst) give two
examples; both are reproduced here with file update times in place of snapshot times.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconcile import policy
from reconcile.models import FilesRule, KeepReason, OrderBy


def Policy(**selectors: object) -> FilesRule:
    """A files block carrying only these selectors (the policy's input)."""
    return FilesRule(delete=(), **selectors)  # type: ignore[arg-type]

UTC = timezone.utc
Item = tuple[str, datetime]


def t(text: str) -> datetime:
    """A UTC time from ``YYYY-MM-DD HH:MM``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def kept(items: list[Item], pol: Policy, now: datetime | None = None) -> dict[str, list[str]]:
    """Name -> the reasons that keep it (kept items only)."""
    now = now or max(when for _, when in items) + timedelta(hours=1)
    out = policy.survivors(items, pol, when=lambda x: x[1], name=lambda x: x[0], now=now)
    return {items[i][0]: [f"{s} {d}" for s, d in reasons] for i, reasons in enumerate(out) if reasons}


# restic docs: backups every weekday for two weeks, an extra one on Fridays, the Wednesday of the
# second week missed. Times are the docs' (shown as 2025-04-21 11:00:00 and so on).
RESTIC_DOCS = [
    ("60e5c031", t("2025-04-21 11:00")),
    ("1dccffe9", t("2025-04-22 11:00")),
    ("90a5c949", t("2025-04-23 11:00")),
    ("79580708", t("2025-04-24 11:00")),
    ("8a603ddf", t("2025-04-25 11:00")),
    ("ae33bf10", t("2025-04-25 23:00")),
    ("fb8b1418", t("2025-04-28 11:00")),
    ("1db188b4", t("2025-04-29 11:00")),
    ("7baa4f28", t("2025-05-01 11:00")),
    ("05c48af3", t("2025-05-02 11:00")),
    ("ad72e262", t("2025-05-02 23:00")),
]


def test_restic_docs_keep_daily_5() -> None:
    """`forget --keep-daily 5`: one per day for the last five days that had a snapshot.

    The docs keep the snapshots of 04-25 23:00, 04-28, 04-29, 05-01 and 05-02 23:00 (their
    kept table prints the 04-25 23:00 snapshot under the id of the 11:00 one, which their
    remove table also lists: a typo in the docs; the times are unambiguous).
    """
    result = kept(RESTIC_DOCS, Policy(keep_daily=5))
    assert result == {
        "ae33bf10": ["keep_daily 2025-04-25"],
        "fb8b1418": ["keep_daily 2025-04-28"],
        "1db188b4": ["keep_daily 2025-04-29"],
        "7baa4f28": ["keep_daily 2025-05-01"],
        "ad72e262": ["keep_daily 2025-05-02"],
    }


def test_restic_docs_keep_daily_5_removes_the_other_six() -> None:
    """The docs' "remove 6 snapshots": the first week's four weekdays, the Friday morning ones."""
    result = kept(RESTIC_DOCS, Policy(keep_daily=5))
    removed = [name for name, _ in RESTIC_DOCS if name not in result]
    assert removed == ["60e5c031", "1dccffe9", "90a5c949", "79580708", "8a603ddf", "05c48af3"]


def test_restic_docs_one_backup_a_day_for_100_years() -> None:
    """`--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75` over a daily backup for
    100 years keeps 7 dailies, 4 more last-days-of-the-week, 12 or 11 last-days-of-the-month and
    75 or 74 last-days-of-the-year (the newest of each period may already be kept)."""
    start = t("1926-01-01 03:00")
    count = 365 * 100 + 24
    while (start + timedelta(days=count - 1)).isoweekday() != 7:  # the docs' count assumes a full last week
        count += 1
    items = [(f"day-{n:05d}", start + timedelta(days=n)) for n in range(count)]
    last = items[-1][1]
    result = kept(items, Policy(keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=75))
    days = dict(items)
    dailies = [n for n, r in result.items() if any(x.startswith("keep_daily") for x in r)]
    assert sorted(dailies) == [name for name, _ in items[-7:]]
    weekly = [
        n
        for n, r in result.items()
        if any(x.startswith("keep_weekly") for x in r) and not any(x.startswith("keep_daily") for x in r)
    ]
    assert len(weekly) == 4  # the 7 dailies already include 1 weekly
    assert all(days[n].isoweekday() == 7 for n in weekly)  # the last day of its ISO week
    monthly = [n for n, r in result.items() if any(x.startswith("keep_monthly") for x in r)]
    assert len(monthly) == 12
    assert all((days[n] + timedelta(days=1)).month != days[n].month or days[n] == last for n in monthly)
    yearly = [n for n, r in result.items() if any(x.startswith("keep_yearly") for x in r)]
    assert len(yearly) == 75
    assert all((days[n].month, days[n].day) == (12, 31) or days[n] == last for n in yearly)
    # The docs' "12 or 11" and "75 or 74": a period's newest may already be kept by a finer selector.
    assert len(result) == len({*dailies, *weekly, *monthly, *yearly}) <= 7 + 4 + 12 + 75


def test_periods_count_only_periods_with_candidates() -> None:
    """keep_monthly 2 over January and April keeps one of each: empty months are not counted."""
    items = [("a", t("2026-01-03 10:00")), ("b", t("2026-01-20 10:00")), ("c", t("2026-04-02 10:00"))]
    assert kept(items, Policy(keep_monthly=2)) == {
        "b": ["keep_monthly 2026-01"],
        "c": ["keep_monthly 2026-04"],
    }


def test_hourly_buckets_are_natural_hours() -> None:
    """Hours run :00 to :59 (not 60 minutes before now)."""
    items = [("a", t("2026-01-01 10:05")), ("b", t("2026-01-01 10:55")), ("c", t("2026-01-01 11:01"))]
    assert kept(items, Policy(keep_hourly=2)) == {
        "b": ["keep_hourly 2026-01-01T10"],
        "c": ["keep_hourly 2026-01-01T11"],
    }


def test_weeks_are_iso_weeks_monday_to_sunday_across_new_year() -> None:
    """2025-12-29 (Monday) to 2026-01-04 (Sunday) is one ISO week, 2026-W01."""
    items = [
        ("mon", t("2025-12-29 08:00")),
        ("sun", t("2026-01-04 20:00")),
        ("next-mon", t("2026-01-05 01:00")),
        ("prev-sun", t("2025-12-28 23:59")),
    ]
    assert kept(items, Policy(keep_weekly=3)) == {
        "next-mon": ["keep_weekly 2026-W02"],
        "sun": ["keep_weekly 2026-W01"],
        "prev-sun": ["keep_weekly 2025-W52"],
    }


def test_periods_are_utc() -> None:
    """A time given with an offset is bucketed by its UTC day."""
    plus2 = timezone(timedelta(hours=2))
    early = datetime(2026, 3, 2, 1, 0, tzinfo=plus2).astimezone(UTC)  # 2026-03-01 23:00 UTC
    items = [("early", early), ("later", t("2026-03-01 12:00"))]
    assert kept(items, Policy(keep_daily=1)) == {"early": ["keep_daily 2026-03-01"]}


def test_yearly_keeps_newest_of_each_year() -> None:
    """keep_yearly 2 keeps the newest of the two latest years that have candidates."""
    items = [
        ("a", t("2023-06-01 00:00")),
        ("b", t("2024-02-01 00:00")),
        ("c", t("2024-11-30 00:00")),
        ("d", t("2025-01-01 00:00")),
    ]
    assert kept(items, Policy(keep_yearly=2)) == {"c": ["keep_yearly 2024"], "d": ["keep_yearly 2025"]}


def test_selectors_are_ored_and_reasons_accumulate() -> None:
    """The newest item is kept by every selector at once; each reason is listed."""
    items = [("a", t("2026-05-01 10:00")), ("b", t("2026-05-02 10:00")), ("c", t("2026-05-03 10:00"))]
    result = kept(items, Policy(keep_last=1, keep_daily=2, keep_monthly=1))
    assert result == {
        "c": ["keep_last 1 of 1", "keep_daily 2026-05-03", "keep_monthly 2026-05"],
        "b": ["keep_daily 2026-05-02"],
    }


def test_keep_within_is_relative_to_the_newest_candidate() -> None:
    """restic's --keep-within measures from the latest snapshot, not from now."""
    items = [("old", t("2026-01-01 00:00")), ("mid", t("2026-01-20 00:00")), ("new", t("2026-02-01 00:00"))]
    now = t("2026-12-31 00:00")  # long after the last upload: keep_within still keeps recent work
    assert kept(items, Policy(keep_within=timedelta(days=30)), now=now) == {
        "mid": ["keep_within 30d"],
        "new": ["keep_within 30d"],
    }


def test_keep_within_is_strict_and_keeps_future_items() -> None:
    """Exactly the duration before the newest is not within; a time after now is always kept."""
    now = t("2026-02-01 00:00")
    items = [
        ("edge", t("2026-01-02 00:00")),
        ("newest", t("2026-01-31 00:00")),
        ("future", t("2027-01-01 00:00")),
    ]
    assert kept(items, Policy(keep_within=timedelta(days=29)), now=now) == {
        "newest": ["keep_within 29d"],
        "future": ["keep_within 29d"],
    }


def test_order_by_name_sorts_naturally() -> None:
    """order_by: name ranks step-1000 above step-900, whatever the upload times say."""
    same_time = t("2026-01-01 00:00")
    items = [
        ("step-900.pt", same_time),
        ("step-1000.pt", same_time - timedelta(days=3)),
        ("step-80.pt", same_time + timedelta(days=1)),
    ]
    assert kept(items, Policy(keep_last=1, order_by=OrderBy.NAME)) == {"step-1000.pt": ["keep_last 1 of 1"]}
    assert kept(items, Policy(keep_last=1)) == {"step-80.pt": ["keep_last 1 of 1"]}


def test_order_by_name_picks_the_newest_by_name_within_a_period() -> None:
    """After an undo re-uploads files on one day, the daily keeper is still the latest step."""
    day = t("2026-01-01 00:00")
    items = [("step-1000.pt", day), ("step-900.pt", day + timedelta(hours=1))]
    assert kept(items, Policy(keep_daily=1, order_by=OrderBy.NAME)) == {
        "step-1000.pt": ["keep_daily 2026-01-01"]
    }
    assert kept(items, Policy(keep_daily=1)) == {"step-900.pt": ["keep_daily 2026-01-01"]}


def test_equal_times_break_by_name() -> None:
    """Ties in update time rank by name (stable, as restic's sort)."""
    same = t("2026-01-01 00:00")
    assert kept([("b", same), ("a", same)], Policy(keep_last=1)) == {"a": ["keep_last 1 of 1"]}


def test_no_selector_keeps_nothing() -> None:
    """An empty policy spares nothing (the planner's guards catch delete-everything)."""
    assert kept([("a", t("2026-01-01 00:00"))], Policy()) == {}
    assert (
        policy.survivors([], Policy(keep_last=3), when=lambda x: x, name=str, now=t("2026-01-01 00:00")) == []
    )


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=30), "30d"),
        (timedelta(weeks=2), "2w"),
        (timedelta(hours=12), "12h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=45), "45s"),
    ],
)
def test_duration_text(delta: timedelta, text: str) -> None:
    """Durations print in the spec's largest exact unit."""
    assert policy.duration_text(delta) == text


def test_sort_out_ranks_only_unprotected_candidates_and_names_every_reason() -> None:
    """The shared pass: a protected candidate survives for its protection and takes no selector
    slot, so keep_last 1 picks the newest of the rest; the others are deleted."""
    items = [("a", t("2026-01-01 10:00")), ("b", t("2026-01-02 10:00")), ("c", t("2026-01-03 10:00")),
             ("d", t("2026-01-04 10:00"))]
    protected = {"d": [KeepReason("r", "alias", "best")]}
    out = policy.sort_out(
        "r", Policy(keep_last=1), items, protection=lambda x: protected.get(x[0], []),
        when=lambda x: x[1], name=lambda x: x[0], now=t("2026-02-01 00:00"),
    )
    assert [name for name, _ in out.delete] == ["a", "b"]
    assert {item[0]: [str(r) for r in reasons] for item, reasons in out.kept} == {
        "d": ["alias best"], "c": ["keep_last 1 of 1"]}
    assert {r.rule for _, reasons in out.kept for r in reasons} == {"r"}
