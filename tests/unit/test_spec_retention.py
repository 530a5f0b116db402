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


ART = (
    "version: 1\ntarget: {entity: e, project: p}\nrules:\n  - name: r\n    match: {all: true}\n"
    "    artifacts:\n"
)


def test_artifacts_block_loads(tmp_path: Path) -> None:
    """type, name glob, selectors and delete_aliased reach the model."""
    path = write(
        tmp_path / "a.yaml",
        ART + "      type: model\n      name: 'ckpt-*'\n      keep_last: 3\n"
        "      keep_daily: 7\n      older_than: 30d\n      delete_aliased: [candidate]\n",
    )
    rule = load_spec([path]).rules[0].artifacts
    assert rule is not None
    assert (rule.type, rule.name, rule.keep_last, rule.keep_daily) == ("model", "ckpt-*", 3, 7)
    assert rule.older_than == timedelta(days=30)
    assert rule.delete_aliased == ("candidate",)


def test_artifacts_needs_a_type_and_never_deletes_latest(tmp_path: Path) -> None:
    """A missing type and `latest` in delete_aliased are positioned issues."""
    path = write(tmp_path / "a.yaml", ART + "      keep_last: 3\n")
    assert only_issue([path])[3] == "rules[0].artifacts"
    path = write(tmp_path / "b.yaml", ART + "      type: model\n      delete_aliased: [latest]\n")
    issue = only_issue([path])
    assert issue[3] == "rules[0].artifacts.delete_aliased"
    assert "`latest` is never deleted" in issue[4]
