"""Tests of the pure planner's metadata changes: every op, conflicts, templates, limits,
idempotence, the running-run skip, duplicate runs and fingerprints."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from reconcile import planner
from reconcile.errors import PlanError
from reconcile.fingerprint import fingerprint
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    Limits,
    LiveRun,
    Location,
    Match,
    Plan,
    Rule,
    SetBlock,
    Spec,
    Target,
)

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
LOC = Location("spec.yaml", 1, 1)
MERGE = Target("acme", "vision")
REPLACE = Target("acme", "vision", ConfigWrites.REPLACE)
URL = "http://127.0.0.1:8080"


def rule(name: str = "r", *, target: Target = MERGE, match: Match | None = None, **fields: Any) -> Rule:
    """A rule matching every run unless ``match`` is given."""
    if "set" in fields and isinstance(fields["set"], dict):
        fields["set"] = SetBlock(**fields["set"])
    return Rule(name=name, location=LOC, target=target, match=match or Match(all=True), **fields)


def spec(*rules: Rule, limits: Limits | None = None) -> Spec:
    """A spec of these rules."""
    return Spec(1, MERGE, limits or Limits(), rules, "sha256:digest", ("spec.yaml",))


def run(run_id: str = "abc123", **over: Any) -> LiveRun:
    """A finished run."""
    base: dict[str, Any] = {
        "entity": "acme",
        "project": "vision",
        "id": run_id,
        "storage_id": f"sid-{run_id}",
        "name": "brave-river-1",
        "state": "finished",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "config": {
            "_wandb": {"cli_version": "0.31.0"},
            "lr": 0.1,
            "model": "resnet50",
            "optimizer": {"name": "sgd"},
        },
        "summary": {"val_acc": 0.91, "loss": 0.2, "_runtime": 12},
        "tags": ("wip",),
        "group": "g1",
        "job_type": "train",
        "notes": None,
        "project_internal_id": 42,
    }
    base.update(over)
    return LiveRun(**base)


def plan_of(*rules: Rule, runs: tuple[LiveRun, ...] | None = None, limits: Limits | None = None) -> Plan:
    """Plan these rules against these runs (default: one run)."""
    return planner.plan(spec(*rules, limits=limits), runs or (run(),), now=NOW, base_url=URL)


def only_changes(p: Plan) -> tuple[Change, ...]:
    """The changes of the single planned run."""
    assert not p.errors
    [rp] = p.runs
    assert not rp.errors, rp.errors
    return rp.changes


def only_errors(p: Plan) -> tuple[str, ...]:
    """The errors of the single planned run."""
    [rp] = p.runs
    return rp.errors


# --------------------------------------------------------------------------- config and summary


def test_plan_config_set_changes_only_named_leaves() -> None:
    """A nested set manages that leaf; existing equal values and other keys are untouched."""
    changes = only_changes(plan_of(rule(set={"config": {("optimizer", "lr"): 0.01, ("lr",): 0.1}})))
    assert changes == (
        Change(ChangeKind.CONFIG, ChangeOp.SET, ("optimizer", "lr"), None, 0.01, ("r",), created=True),
    )


def test_plan_config_set_replaces_a_different_value() -> None:
    """A differing value is a set with before and after."""
    [change] = only_changes(plan_of(rule(set={"config": {("lr",): 0.2}})))
    assert (change.op, change.before, change.after, change.created) == (ChangeOp.SET, 0.1, 0.2, False)


@pytest.mark.parametrize(
    ("live", "desired", "changed"),
    [
        (1, 1.0, False),
        (1.0, 1, False),
        (True, 1, True),
        (0, False, True),
        (None, None, False),
        ([1, 2], [1.0, 2], False),
        ([1, 2], [2, 1], True),
        ({"a": True}, {"a": 1}, True),
        (float("nan"), float("nan"), False),
        ("1", 1, True),
    ],
)
def test_plan_config_equality_is_numeric_but_not_bool(live: Any, desired: Any, changed: bool) -> None:
    """int and float compare by value; bools never equal numbers; NaN equals NaN."""
    p = plan_of(rule(set={"config": {("k",): desired}}), runs=(run(config={"k": live}),))
    assert bool(p.runs) is changed


def test_plan_set_null_on_absent_key_is_a_change() -> None:
    """Setting null creates the key (the way out on merging servers)."""
    [change] = only_changes(plan_of(rule(set={"config": {("debug",): None}})))
    assert (change.op, change.after, change.created) == (ChangeOp.SET, None, True)


def test_plan_summary_set_and_unset() -> None:
    """Summary keys can be set and removed."""
    changes = only_changes(
        plan_of(rule(set={"summary": {("best", "acc"): 0.93}}, unset_summary=(("loss",), ("absent",))))
    )
    assert [(c.kind, c.op, c.key, c.before, c.after) for c in changes] == [
        (ChangeKind.SUMMARY, ChangeOp.SET, ("best", "acc"), None, 0.93),
        (ChangeKind.SUMMARY, ChangeOp.UNSET, ("loss",), 0.2, None),
    ]


def test_plan_config_unset_on_replace_target() -> None:
    """On a replacing server a config unset is planned; an absent key is no change."""
    p = plan_of(rule(target=REPLACE, unset_config=(("model",), ("nope",))))
    [change] = only_changes(p)
    assert (change.kind, change.op, change.key, change.before) == (
        ChangeKind.CONFIG,
        ChangeOp.UNSET,
        ("model",),
        "resnet50",
    )
    assert p.runs[0].config_writes is ConfigWrites.REPLACE


def test_plan_config_unset_on_merge_target_is_a_run_error() -> None:
    """W&B merges config, so a needed removal is an error naming rule, reason and the way out."""
    p = plan_of(rule("drop-model", unset_config=(("model",),)))
    [rp] = p.runs
    assert rp.changes == ()
    assert rp.config_writes is ConfigWrites.MERGE
    [error] = rp.errors
    assert "'drop-model'" in error
    assert "config.model" in error
    assert "wandb/wandb#11055" in error
    assert "null" in error
    assert "config_writes: replace" in error


def test_plan_config_unset_on_merge_target_without_change_is_fine() -> None:
    """An unset of an absent key needs no removal, so no error even when merging."""
    assert plan_of(rule(unset_config=(("nope",),))).runs == ()


def test_plan_internal_keys_are_left_alone() -> None:
    """Unnamed internal keys never appear; named ones are managed."""
    p = plan_of(rule(set={"config": {("lr",): 0.1}, "summary": {("_runtime",): 13}}))
    [change] = only_changes(p)
    assert (change.kind, change.key, change.before, change.after) == (
        ChangeKind.SUMMARY,
        ("_runtime",),
        12,
        13,
    )


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"val_acc": 0.9}, [(ChangeOp.RENAME, ("val", "accuracy"), ("val_acc",), 0.9)]),
        ({"val": {"accuracy": 0.9}}, []),
        ({}, []),
        ({"val_acc": 0.9, "val": {"accuracy": 0.9}}, [(ChangeOp.UNSET, ("val_acc",), None, 0.9)]),
    ],
)
def test_plan_summary_rename_cases(summary: dict[str, Any], expected: list[Any]) -> None:
    """Rename moves the value; done, nothing to do, or only the old copy to drop."""
    p = plan_of(rule(rename_summary=((("val_acc",), ("val", "accuracy")),)), runs=(run(summary=summary),))
    changes = [(c.op, c.key, c.from_key, c.before) for c in (only_changes(p) if p.runs else ())]
    assert changes == expected


def test_plan_rename_with_both_values_different_is_an_error() -> None:
    """A rename that would overwrite a different value is a run error."""
    p = plan_of(rule("mv", rename_summary=((("loss",), ("val_acc",)),)))
    [error] = only_errors(p)
    assert "'mv'" in error
    assert "summary.loss" in error
    assert "summary.val_acc" in error
    assert p.runs[0].changes == ()


def test_plan_config_rename_needs_replace_target() -> None:
    """The removal half of a config rename is refused on a merging server, allowed on replace."""
    r = {"rename_config": ((("lr",), ("learning_rate",)),)}
    [error] = only_errors(plan_of(rule("mv", **r)))
    assert "rename" in error
    assert "config.lr" in error
    [change] = only_changes(plan_of(rule("mv", target=REPLACE, **r)))
    assert (change.op, change.key, change.from_key, change.after) == (
        ChangeOp.RENAME,
        ("learning_rate",),
        ("lr",),
        0.1,
    )


# --------------------------------------------------------------------------- text fields and templates


def test_plan_text_fields_set_with_templates() -> None:
    """name/notes/group/job_type are set from rendered templates."""
    changes = only_changes(
        plan_of(
            rule(
                set={
                    "name": "{config.model}-lr{config.lr}",
                    "notes": "run {id} on {created_at:%Y-%m-%d}",
                    "group": "g1",
                    "job_type": "{summary.val_acc:.2f}",
                }
            )
        )
    )
    assert [(c.kind, c.before, c.after) for c in changes] == [
        (ChangeKind.NAME, "brave-river-1", "resnet50-lr0.1"),
        (ChangeKind.NOTES, None, "run abc123 on 2026-01-02"),
        (ChangeKind.JOB_TYPE, "train", "0.91"),
    ]


def test_plan_template_missing_key_is_a_run_error() -> None:
    """A missing template key is an error for that run, never an empty string."""
    p = plan_of(rule("namer", set={"name": "{config.missing}-x"}))
    [rp] = p.runs
    assert rp.changes == ()
    [error] = rp.errors
    assert "'namer'" in error
    assert "config.missing" in error


def test_plan_empty_string_equals_null_for_text_fields() -> None:
    """Clearing a null field is no change (W&B reads "" back as null or "")."""
    assert plan_of(rule(set={"notes": ""})).runs == ()


# --------------------------------------------------------------------------- tags


def test_plan_tags_add_and_remove() -> None:
    """add_tags/remove_tags become per-tag changes; templates render; absent removals are nothing."""
    changes = only_changes(plan_of(rule(add_tags=("lr-{config.lr}", "wip"), remove_tags=("wip2",))))
    assert [(c.op, c.key) for c in changes] == [(ChangeOp.ADD, ("lr-0.1",))]
    changes = only_changes(plan_of(rule(remove_tags=("wip",))))
    assert [(c.op, c.key, c.before, c.after) for c in changes] == [(ChangeOp.REMOVE, ("wip",), "wip", None)]


def test_plan_tags_exact_set() -> None:
    """set.tags adds the missing tags and removes every other tag."""
    changes = only_changes(plan_of(rule(set={"tags": ("a", "b")}), runs=(run(tags=("a", "x")),)))
    assert [(c.op, c.key) for c in changes] == [(ChangeOp.ADD, ("b",)), (ChangeOp.REMOVE, ("x",))]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"add_tags": ("t",)}, {"remove_tags": ("t",)}),
        ({"add_tags": ("t",)}, {"set": {"tags": ("other",)}}),
        ({"set": {"tags": ("a",)}}, {"set": {"tags": ("a", "t")}}),
    ],
)
def test_plan_tag_conflicts_name_both_rules(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Adding and removing one tag (also via an exact set) is an error naming both rules and the run."""
    p = plan_of(rule("one", **first), rule("two", **second))
    [rp] = p.runs
    assert any("'one'" in e and "'two'" in e and "acme/vision/abc123" in e and "'t'" in e for e in rp.errors)
    assert not any(c.key == ("t",) for c in rp.changes)


# --------------------------------------------------------------------------- conflicts


def test_plan_conflicting_values_name_both_rules_and_run() -> None:
    """Two rules setting one field differently is a run error."""
    p = plan_of(rule("a", set={"config": {("lr",): 0.2}}), rule("b", set={"config": {("lr",): 0.3}}))
    [error] = only_errors(p)
    assert "'a'" in error
    assert "'b'" in error
    assert "acme/vision/abc123" in error
    assert "config.lr" in error
    assert p.runs[0].changes == ()


def test_plan_conflicting_names() -> None:
    """Two different display names for one run is a run error."""
    [error] = only_errors(plan_of(rule("a", set={"name": "x"}), rule("b", set={"name": "y"})))
    assert "'a' and 'b'" in error


def test_plan_set_and_unset_conflict() -> None:
    """Setting and unsetting one key is a conflict."""
    p = plan_of(rule("a", set={"summary": {("loss",): 1}}), rule("b", unset_summary=(("loss",),)))
    [error] = only_errors(p)
    assert "'a' and 'b'" in error


def test_plan_nested_overlap_conflict() -> None:
    """Unsetting a parent while setting a child is a conflict."""
    p = plan_of(rule("a", unset_summary=(("best",),)), rule("b", set={"summary": {("best", "acc"): 1}}))
    [error] = only_errors(p)
    assert "'a' and 'b'" in error


def test_plan_rename_conflicts_with_setting_the_old_key() -> None:
    """A rule setting the key another rule renames away would flip-flop: a conflict."""
    p = plan_of(
        rule("mv", rename_summary=((("old",), ("new",)),)),
        rule("setter", set={"summary": {("old",): 1}}),
        runs=(run(summary={"new": 1}),),
    )
    [error] = only_errors(p)
    assert "'mv'" in error
    assert "'setter'" in error


def test_plan_same_value_twice_lists_both_rules() -> None:
    """Agreeing rules are fine and both are credited."""
    changes = only_changes(
        plan_of(
            rule("a", set={"config": {("lr",): 0.5}}, add_tags=("x",)),
            rule("b", set={"config": {("lr",): 0.5}, "tags": ("x", "wip")}),
        )
    )
    assert [(c.kind, c.rules) for c in changes] == [
        (ChangeKind.CONFIG, ("a", "b")),
        (ChangeKind.TAGS, ("a", "b")),
    ]


# --------------------------------------------------------------------------- runs, skips, limits


def test_plan_idempotent_when_run_already_matches() -> None:
    """A run that already looks like the spec gives no RunPlan."""
    r = rule(
        set={
            "config": {("lr",): 0.1},
            "summary": {("val_acc",): 0.91},
            "tags": ("wip",),
            "name": "brave-river-1",
            "group": "g1",
            "job_type": "train",
        },
        add_tags=("wip",),
        remove_tags=("old",),
        unset_summary=(("gone",),),
        rename_summary=((("x",), ("loss",)),),
    )
    p = plan_of(r)
    assert p.runs == ()
    assert not p.has_changes
    assert p.runs_read == 1


@pytest.mark.parametrize("state", ["running", "pending", "preempting"])
def test_plan_skips_live_runs_unless_named(state: str) -> None:
    """Running/pending runs are skipped and counted unless the rule names that state."""
    live = run(state=state)
    p = plan_of(rule(set={"config": {("lr",): 1}}), runs=(live,))
    assert (p.runs, p.skipped_running) == ((), 1)
    named = rule(match=Match(state=(state, "finished")), set={"config": {("lr",): 1}})
    p = plan_of(named, runs=(live,))
    assert (len(p.runs), p.skipped_running) == (1, 0)


def test_plan_live_run_only_gets_rules_that_name_its_state() -> None:
    """On a running run, a rule that does not name `running` contributes nothing."""
    p = plan_of(
        rule("blanket", set={"config": {("lr",): 1}}),
        rule("explicit", match=Match(state=("running",)), add_tags=("live",)),
        runs=(run(state="running"),),
    )
    assert [c.kind for c in only_changes(p)] == [ChangeKind.TAGS]


def test_plan_unmatched_runs_are_not_listed() -> None:
    """Only matching runs are planned; others are just read."""
    p = plan_of(rule(match=Match(ids=("other",)), set={"config": {("lr",): 1}}))
    assert (p.runs, p.runs_read) == ((), 1)


def test_plan_duplicate_runs_across_pages_planned_once() -> None:
    """A run repeated by pagination (wandb/wandb#6614) is planned once."""
    runs = (run("a"), run("b"), run("a"), run("a", project="other"))
    p = plan_of(rule(set={"config": {("lr",): 1}}), runs=runs)
    assert [rp.path for rp in p.runs] == ["acme/vision/a", "acme/vision/b"]
    assert p.runs_read == 3


def test_plan_runs_sorted_by_path_and_changes_by_kind() -> None:
    """Output is deterministic: runs by path, changes by kind then key."""
    r = rule(set={"summary": {("b",): 1, ("a",): 1}, "config": {("z",): 1}, "name": "n"}, add_tags=("t",))
    p = plan_of(r, runs=(run("c"), run("a"), run("b")))
    assert [rp.run_id for rp in p.runs] == ["a", "b", "c"]
    assert [(c.kind, c.key) for c in p.runs[0].changes] == [
        (ChangeKind.CONFIG, ("z",)),
        (ChangeKind.SUMMARY, ("a",)),
        (ChangeKind.SUMMARY, ("b",)),
        (ChangeKind.TAGS, ("t",)),
        (ChangeKind.NAME, ()),
    ]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            Limits(max_changed_runs=2),
            "limits.max_changed_runs is 2 but the plan has 3 runs to change (1 over)",
        ),
        (Limits(max_changed_runs=3), None),
    ],
)
def test_plan_limit_max_changed_runs(limits: Limits, message: str | None) -> None:
    """Exceeding max_changed_runs is a plan-wide error saying by how much."""
    p = plan_of(rule(set={"config": {("lr",): 1}}), runs=(run("a"), run("b"), run("c")), limits=limits)
    assert p.limits == limits
    assert [e.split(";")[0] for e in p.errors] == ([message] if message else [])


def test_plan_streams_and_keeps_only_changed_runs() -> None:
    """Runs are consumed one at a time; unchanged runs are not kept."""
    consumed: list[str] = []

    def stream() -> Iterator[LiveRun]:
        for i in range(1000):
            consumed.append(str(i))
            yield run(str(i), config={"lr": 0.5 if i == 7 else 0.1})

    builder = planner.Planner(spec(rule(set={"config": {("lr",): 0.1}})), now=NOW, base_url=URL)
    for live in stream():
        builder.add(live)
        assert len(builder._runs) <= 1  # only the changed run is held
    p = builder.finish()
    assert [rp.run_id for rp in p.runs] == ["7"]
    assert (p.runs_read, len(consumed), p.created_at, p.base_url, p.spec_digest) == (
        1000,
        1000,
        NOW,
        URL,
        "sha256:digest",
    )


def test_plan_bad_filter_is_a_plan_error() -> None:
    """A filter reconcile cannot check is reported, and that rule plans nothing."""
    bad = rule("bad", match=Match(filters={"username": "me"}), set={"config": {("lr",): 1}})
    p = plan_of(bad)
    assert p.runs == ()
    [error] = p.errors
    assert "'bad'" in error


def test_plan_missing_target_raises() -> None:
    """A rule with no entity/project cannot be planned."""
    with pytest.raises(PlanError, match="WANDB_ENTITY"):
        planner.plan(spec(rule(target=Target())), [], now=NOW, base_url=URL)


# --------------------------------------------------------------------------- fingerprints


def test_plan_fingerprint_covers_exactly_the_fields_read() -> None:
    """Changed keys, both rename paths, template inputs and state are fingerprinted; nothing else."""
    r = rule(
        target=REPLACE,
        set={"config": {("optimizer", "lr"): 1}, "name": "{config.model}-{summary.val_acc}"},
        rename_config=((("lr",), ("learning_rate",)),),
        add_tags=("t",),
    )
    live = run()
    [rp] = plan_of(r, runs=(live,)).runs
    assert set(rp.fingerprint_fields) == {
        ("config", "optimizer", "lr"),
        ("config", "lr"),
        ("config", "learning_rate"),
        ("config", "model"),
        ("summary", "val_acc"),
        ("name",),
        ("tags",),
        ("state",),
    }
    assert rp.fingerprint == fingerprint(live, rp.fingerprint_fields)
    assert rp.project_internal_id == 42
    assert rp.storage_id == "sid-abc123"
    # A change to an unread field leaves the fingerprint alone; a read field changes it.
    assert fingerprint(dataclasses.replace(live, notes="x"), rp.fingerprint_fields) == rp.fingerprint
    assert fingerprint(dataclasses.replace(live, tags=("u",)), rp.fingerprint_fields) != rp.fingerprint


def test_plan_set_under_a_scalar_is_an_error_not_a_silent_overwrite() -> None:
    """Setting summary.b.c where summary.b is a number would destroy b: an error naming it."""
    p = plan_of(rule("deep", set={"summary": {("val_acc", "top1"): 1}}))
    [rp] = p.runs
    assert rp.changes == ()
    [error] = rp.errors
    assert "summary.val_acc is 0.91, not a mapping" in error


def test_plan_config_empty_mapping_on_merge_target_is_refused() -> None:
    """Replacing a config mapping by {} cannot converge on a merging server (wandb/wandb#11055)."""
    p = plan_of(rule("empty", set={"config": {("optimizer",): {}}}))
    [rp] = p.runs
    assert rp.changes == ()
    assert "11055" in rp.errors[0]
    ok = plan_of(rule("empty", target=REPLACE, set={"config": {("optimizer",): {}}}))
    [rp] = ok.runs
    assert [(c.key, c.after) for c in rp.changes] == [(("optimizer",), {})]


def test_plan_remove_tags_are_templates() -> None:
    """remove_tags items are rendered against the run like add_tags."""
    p = plan_of(rule("drop-lr", remove_tags=("lr-{config.lr}",)), runs=(run(tags=("lr-0.1", "x")),))
    [rp] = p.runs
    assert [(c.op, c.key) for c in rp.changes] == [(ChangeOp.REMOVE, ("lr-0.1",))]


def test_plan_fingerprint_covers_the_fields_a_rule_matched_on() -> None:
    """A run that stops matching (tags, name, group, a config filter) since the plan is stale."""
    matcher = Match(tags=("wip",), name="brave-*", group="g1", filters={"config.model": "resnet50"})
    p = plan_of(rule("m", match=matcher, set={"notes": "hi"}))
    [rp] = p.runs
    assert {("tags",), ("name",), ("group",), ("config", "model"), ("state",)} <= set(rp.fingerprint_fields)


def test_plan_rename_with_equal_copies_fingerprints_the_new_key() -> None:
    """Dropping the old copy of a renamed key is safe only while the new key holds the value."""
    r = run(summary={"val_acc": 0.9, "acc": 0.9})
    p = plan_of(rule("mv", rename_summary=((("val_acc",), ("acc",)),)), runs=(r,))
    [rp] = p.runs
    assert ("summary", "acc") in rp.fingerprint_fields
    assert fingerprint(dataclasses.replace(r, summary={"val_acc": 0.9, "acc": 0.1}),
                       rp.fingerprint_fields) != rp.fingerprint


@pytest.mark.parametrize("value", [None, {"a": 1}, [1, 2]])
def test_plan_template_of_a_null_or_structured_value_is_an_error(value: Any) -> None:
    """A template never renders 'None' or a dict repr: the run gets an error."""
    p = plan_of(rule("t", set={"name": "lr-{config.lr}"}), runs=(run(config={"lr": value}),))
    [rp] = p.runs
    assert rp.changes == ()
    assert "config.lr" in rp.errors[0]
