"""Tests of file retention selectors: globs, keep, system files, age, size, keep_last, ranking."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconcile import retention
from reconcile.models import FilesRule, Goal, LiveFile, LiveRun, UnlessTop

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def f(name: str, *, days: float = 100, size: int = 1000) -> LiveFile:
    """A file last updated ``days`` before NOW."""
    return LiveFile(id=f"id-{name}", name=name, size=size, updated_at=NOW - timedelta(days=days))


def names(files: list[LiveFile]) -> list[str]:
    """The names of files."""
    return [x.name for x in files]


def select(rule: FilesRule, files: list[LiveFile], keep: tuple[str, ...] = ()) -> list[str]:
    """Names the rule would delete."""
    return names(retention.select(rule, files, keep=keep, now=NOW))


def test_select_globs_star_within_segment_globstar_across() -> None:
    """`*` stays inside one path segment; `**` crosses segments."""
    files = [f("a.ckpt"), f("ckpt/b.ckpt"), f("media/images/x/y.png"), f("media/c.png")]
    assert select(FilesRule(delete=("*.ckpt",)), files) == ["a.ckpt"]
    assert select(FilesRule(delete=("**/*.ckpt",)), files) == ["a.ckpt", "ckpt/b.ckpt"]
    assert select(FilesRule(delete=("media/images/**",)), files) == ["media/images/x/y.png"]


def test_select_keep_protects() -> None:
    """Keep globs (from any matching rule) win over delete."""
    files = [f("model-best.ckpt"), f("a.ckpt")]
    assert select(FilesRule(delete=("*.ckpt",), keep=("model-best.*",)), files) == ["a.ckpt"]
    assert select(FilesRule(delete=("*.ckpt",)), files, keep=("a.*",)) == ["model-best.ckpt"]


@pytest.mark.parametrize(
    "name",
    [
        "wandb-metadata.json",
        "wandb-summary.json",
        "config.yaml",
        "requirements.txt",
        "output.log",
        "diff.patch",
        "code/train.py",
        "code/src/model.py",
    ],
)
def test_select_protects_system_files(name: str) -> None:
    """W&B's own files survive a catch-all delete unless allow_system_files is set."""
    files = [f(name)]
    assert select(FilesRule(delete=("**",)), files) == []
    assert select(FilesRule(delete=("**",), allow_system_files=True), files) == [name]


def test_select_older_than_and_larger_than_narrow() -> None:
    """Only old enough and large enough candidates are deleted (strictly)."""
    files = [
        f("old-big", days=40, size=2000),
        f("new-big", days=10, size=2000),
        f("old-small", days=40, size=10),
        f("edge", days=30, size=1000),
    ]
    rule = FilesRule(delete=("*",), older_than=timedelta(days=30), larger_than=1000)
    assert select(rule, files) == ["old-big"]


def test_select_keep_last_keeps_newest_with_name_ties() -> None:
    """keep_last spares the N newest candidates; equal times break by name."""
    files = [f("c", days=1), f("b", days=1), f("a", days=5), f("d", days=9)]
    assert select(FilesRule(delete=("*",), keep_last=2), files) == ["a", "d"]
    assert select(FilesRule(delete=("*",), keep_last=1), files) == ["a", "c", "d"]
    assert select(FilesRule(delete=("*",), keep_last=10), files) == []


def test_select_keep_last_counts_only_remaining_candidates() -> None:
    """keep_last ranks what survives protection and narrowing, so it only spares more."""
    files = [f("best.ckpt", days=0), f("new.ckpt", days=1), f("a.ckpt", days=50), f("b.ckpt", days=60)]
    rule = FilesRule(delete=("*.ckpt",), keep=("best.*",), older_than=timedelta(days=30), keep_last=1)
    assert select(rule, files) == ["b.ckpt"]


def run_with(summary: dict[str, Any]) -> LiveRun:
    """A run with this summary."""
    return LiveRun("e", "p", "r", "s", None, "finished", NOW, {}, summary, ())


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"acc": 0.5}, 0.5),
        ({"acc": 3}, 3.0),
        ({"acc": float("nan")}, None),
        ({"acc": True}, None),
        ({"acc": "0.5"}, None),
        ({}, None),
    ],
)
def test_metric_value_numbers_only(summary: dict[str, Any], expected: float | None) -> None:
    """Missing, NaN, bool and string metrics count as missing."""
    assert retention.metric_value(run_with(summary), ("acc",)) == expected


def test_metric_value_nested() -> None:
    """Nested metrics are looked up by key path."""
    assert retention.metric_value(run_with({"val": {"acc": 0.7}}), ("val", "acc")) == 0.7


def test_top_runs_ranks_by_goal_missing_last_ties_by_id() -> None:
    """Maximize/minimize, missing last, ties by run id."""
    scores = [("d", None), ("b", 0.9), ("a", 0.9), ("c", 0.1), ("e", None)]
    assert retention.top_runs(scores, Goal.MAXIMIZE, 2) == {"a", "b"}
    assert retention.top_runs(scores, Goal.MINIMIZE, 2) == {"c", "a"}
    assert retention.top_runs(scores, Goal.MAXIMIZE, 4) == {"a", "b", "c", "d"}
    assert retention.top_runs(scores, Goal.MAXIMIZE, 0) == frozenset()


def test_describe_shows_size_and_age() -> None:
    """Display detail has a human size and an age in days."""
    assert retention.describe(f("x", days=320, size=120_000_000), NOW) == "114.44 MiB, 320 days old"
    assert retention.describe(f("x", days=1, size=10), NOW) == "10 bytes, 1 day old"
    assert retention.describe(f("x", days=0.5, size=10), NOW) == "10 bytes, 0 days old"
    assert retention.describe(f("x", days=-3, size=10), NOW) == "10 bytes, 0 days old"  # server clock ahead


def test_each_narrowing_boundary_is_kept_on_its_own() -> None:
    """Exactly `older_than` old is not older (kept); exactly `larger_than` bytes is not larger (kept): each
    edge alone, the other condition met."""
    rule = FilesRule(delete=("*",), older_than=timedelta(days=30), larger_than=1000)
    files = [f("age-edge", days=30, size=2000), f("size-edge", days=40, size=1000),
             f("just-older", days=30.001, size=1001)]
    assert select(rule, files) == ["just-older"]


def test_decide_says_which_rule_and_selector_kept_each_file() -> None:
    """Every surviving candidate carries the rule's name, the selector's own word and its detail."""
    rule = FilesRule(delete=("**",), keep=("best.*",), older_than=timedelta(days=30), larger_than=1000,
                     keep_last=1)
    files = [f("best.pt", days=90, size=5000), f("wandb-summary.json", days=90, size=5000),
             f("young.pt", days=3, size=5000), f("small.pt", days=90, size=10),
             f("old-1.pt", days=60, size=5000), f("old-2.pt", days=70, size=5000),
             f("future.pt", days=-2, size=5000), f("other.txt", days=90, size=5000)]
    decision = retention.decide("prune", rule, files, keep=("other.*",), now=NOW)
    assert names(decision.delete) == ["old-2.pt"]
    kept = {k.file.name: [(r.rule, r.selector, r.detail) for r in k.reasons] for k in decision.kept}
    assert kept == {
        "best.pt": [("prune", "keep", '"best.*"')],
        "other.txt": [("prune", "keep", '"other.*"')],
        "wandb-summary.json": [("prune", "system_file", None)],
        "young.pt": [("prune", "older_than", "30d not reached (3 days old)")],
        "future.pt": [("prune", "older_than", "30d not reached (less than a day old)")],
        "small.pt": [("prune", "larger_than", "1000 bytes not exceeded (10 bytes)")],
        "old-1.pt": [("prune", "keep_last", "1 of 1")],
    }
    assert [k.file.name for k in decision.kept] == sorted(kept)


def test_spare_top_keeps_every_deletion_naming_the_metric() -> None:
    """A top run's would-be deletions all survive, each saying the rank it is in, next to the others."""
    rule = FilesRule(delete=("*.pt",), keep=("best.*",))
    decision = retention.decide("prune", rule, [f("b.pt"), f("a.pt"), f("best.pt")], keep=(), now=NOW)
    spared = retention.spare_top("prune", decision, UnlessTop(metric=("val", "acc"), goal=Goal.MAXIMIZE,
                                                               count=3))
    assert spared.delete == []
    assert [(k.file.name, [(r.rule, r.selector, r.detail) for r in k.reasons]) for k in spared.kept] == [
        ("a.pt", [("prune", "unless_top", "top 3 by val.acc (maximize)")]),
        ("b.pt", [("prune", "unless_top", "top 3 by val.acc (maximize)")]),
        ("best.pt", [("prune", "keep", '"best.*"')]),
    ]


def test_merge_kept_drops_what_another_rule_deletes_and_joins_reasons() -> None:
    """A candidate one rule keeps but another deletes is not kept; one kept by two rules lists both."""
    one = retention.decide("one", FilesRule(delete=("*",), keep=("a", "b")), [f("a"), f("b"), f("c")],
                           keep=(), now=NOW)
    two = retention.decide("two", FilesRule(delete=("*",), keep_last=1), [f("b", days=1), f("a", days=2)],
                           keep=(), now=NOW)
    merged = retention.merge_kept([one, two], deleted={"id-a", "id-c"})
    assert [(k.file.name, [(r.rule, r.selector) for r in k.reasons]) for k in merged] == [
        ("b", [("one", "keep"), ("two", "keep_last")]),
    ]


def test_select_is_decide_s_deletions() -> None:
    """select() deletes what decide() does."""
    rule = FilesRule(delete=("*",), keep_last=1)
    files = [f("a", days=1), f("b", days=2), f("c", days=3)]
    assert retention.select(rule, files, keep=(), now=NOW) == retention.decide("x", rule, files, keep=(),
                                                                               now=NOW).delete


def _restored_run(records: Any) -> LiveRun:
    """A run whose summary holds ``records`` where an undo remembers restored files' upload times."""
    return LiveRun("acme", "vision", "r1", "S1", None, "finished", NOW, {}, {"_reconcile": {
        "restored_files": records}}, ())


def test_upload_times_give_a_restored_file_its_original_time_only_if_it_is_that_file() -> None:
    """A file an undo re-uploaded ranks by its original upload time when its name, size and md5 (where
    both are known) are the recorded ones; any other file, or a record that does not fit, keeps W&B's."""
    record = {"updated_at": "2025-08-05T00:00:00Z", "size": 1000, "md5": "m1"}
    files = [
        f("other-size"), f("other-md5"), f("not-a-record"), f("bad-time"), f("no-time"), f("unlisted"),
        LiveFile("id-restored", "restored", 1000, NOW, md5="m1"),
        LiveFile("id-no-md5-listed", "no-md5-listed", 1000, NOW),
        f("no-md5-recorded"),
    ]
    files[1] = LiveFile("id-other-md5", "other-md5", 1000, NOW, md5="m2")
    records = {"other-size": {**record, "size": 999}, "other-md5": record, "not-a-record": "2025-08-05",
               "bad-time": {**record, "updated_at": "yesterday"}, "no-time": {"size": 1000},
               "restored": record, "no-md5-listed": record,
               "no-md5-recorded": {"updated_at": record["updated_at"], "size": 1000}}
    times = retention.upload_times(_restored_run(records), files)
    original = datetime(2025, 8, 5, tzinfo=timezone.utc)
    assert times == {**{x.id: x.updated_at for x in files}, "id-restored": original,
                     "id-no-md5-listed": original, "id-no-md5-recorded": original}


@pytest.mark.parametrize("summary", [{}, {"_reconcile": "x"}, {"_reconcile": {"restored_files": ["a"]}},
                                     {"_reconcile": {"other": {"a": {}}}}])
def test_upload_times_without_usable_records_are_w_and_b_s(summary: dict[str, Any]) -> None:
    """No record, or a summary key of that name that is not a mapping: every file keeps W&B's time."""
    run = LiveRun("acme", "vision", "r1", "S1", None, "finished", NOW, {}, summary, ())
    files = [f("a", days=3), f("b", days=1)]
    assert retention.upload_times(run, files) == {"id-a": files[0].updated_at, "id-b": files[1].updated_at}


def test_decide_ranks_by_the_times_given_and_by_w_and_b_s_without_them() -> None:
    """keep_last keeps the newest by ``times`` (a restored file's original time) when given, else by
    each file's own update time."""
    files = [f("restored", days=0), f("newer", days=10)]
    rule = FilesRule(delete=("*",), keep_last=1)
    by_wandb = retention.decide("r", rule, files, keep=(), now=NOW)
    assert names(by_wandb.delete) == ["newer"]
    by_original = retention.decide("r", rule, files, keep=(), now=NOW,
                                   times={"id-restored": NOW - timedelta(days=300)})
    assert names(by_original.delete) == ["restored"]


def test_a_restored_file_carries_its_original_upload_time_through_every_decision() -> None:
    """The original upload time a restored file was ranked by travels with it for the plan to show: on a
    deleted file (``original``), on a survivor, through ``unless_top`` sparing the run and through merging
    several rules' survivors; a file ranked by W&B's own time carries none."""
    kept, deleted, plain = f("restored-kept", days=0), f("restored-deleted", days=0), f("plain", days=5)
    old, older = NOW - timedelta(days=300), NOW - timedelta(days=400)
    times = {kept.id: old, deleted.id: older, plain.id: plain.updated_at}
    decision = retention.decide("r", FilesRule(delete=("*",), keep_last=2), [kept, deleted, plain], keep=(),
                                now=NOW, times=times)
    assert names(decision.delete) == ["restored-deleted"]
    assert decision.original == {kept.id: old, deleted.id: older}
    assert [(k.file.name, k.original_updated_at) for k in decision.kept] == [("plain", None),
                                                                              ("restored-kept", old)]
    spared = retention.spare_top("r", decision, UnlessTop(metric=("acc",), goal=Goal.MAXIMIZE, count=1))
    everything = [("plain", None), ("restored-deleted", older), ("restored-kept", old)]
    assert spared.delete == [] and spared.original == decision.original
    assert [(k.file.name, k.original_updated_at) for k in spared.kept] == everything
    merged = retention.merge_kept([decision, spared], deleted=set())
    assert [(k.file.name, k.original_updated_at) for k in merged] == everything


def test_describe_counts_a_restored_file_s_age_from_its_original_upload_and_says_so() -> None:
    """With the original upload time, the age is counted from it and the text names it."""
    assert retention.describe(f("x", days=1, size=10), NOW, NOW - timedelta(days=300)) == (
        "10 bytes, 300 days old by its original upload (2025-08-05 00:00 UTC; an undo re-uploaded it since)")
