"""Spec loading of the retention additions: calendar selectors, keep_within and order_by."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from reconcile.models import OrderBy
from reconcile.spec import load_spec
from tests.unit.test_spec import only_issue, write

HEAD = (
    "version: 1\ntarget: {entity: e, project: p}\nrules:\n  - name: r\n    match: {all: true}\n    files:\n"
)


def test_calendar_selectors_keep_within_and_order_by_load(tmp_path: Path) -> None:
    """Every selector reaches the model; order_by defaults to updated_at."""
    path = write(
        tmp_path / "s.yaml",
        HEAD + "      delete: ['*.pt']\n      keep_hourly: 24\n      keep_daily: 7\n"
        "      keep_weekly: 4\n      keep_monthly: 12\n      keep_yearly: 3\n      keep_within: 30d\n"
        "      order_by: name\n",
    )
    files = load_spec([path]).rules[0].files
    assert files is not None
    assert (
        files.keep_hourly,
        files.keep_daily,
        files.keep_weekly,
        files.keep_monthly,
        files.keep_yearly,
    ) == (24, 7, 4, 12, 3)
    assert files.keep_within == timedelta(days=30)
    assert files.order_by is OrderBy.NAME
    plain = load_spec([write(tmp_path / "t.yaml", HEAD + "      delete: ['*.pt']\n")]).rules[0].files
    assert plain is not None and plain.order_by is OrderBy.UPDATED_AT and plain.keep_daily is None


def test_bad_calendar_count_is_a_positioned_issue(tmp_path: Path) -> None:
    """keep_daily: 0 is refused with the file, line and field."""
    path = write(tmp_path / "s.yaml", HEAD + "      delete: ['*.pt']\n      keep_daily: 0\n")
    file, line, _column, where, _message = only_issue([path])
    assert (file, line, where) == (str(path), 8, "rules[0].files.keep_daily")


def test_bad_keep_within_and_order_by_are_issues(tmp_path: Path) -> None:
    """A duration without a unit and an unknown order are issues naming the field."""
    path = write(tmp_path / "s.yaml", HEAD + "      delete: ['*.pt']\n      keep_within: 30\n")
    assert only_issue([path])[3] == "rules[0].files.keep_within"
    path = write(tmp_path / "t.yaml", HEAD + "      delete: ['*.pt']\n      order_by: size\n")
    assert only_issue([path])[3] == "rules[0].files.order_by"
