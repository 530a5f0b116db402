"""Tests of run selection: the server-side W&B filter and the full client-side check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconcile import selection
from reconcile.errors import AuthError, BackendError, PlanError, RetryableError
from reconcile.models import Limits, LiveRun, Location, Match, Rule, Spec, Target

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
LOC = Location("spec.yaml", 1, 1)
TARGET = Target("acme", "vision")


def rule(name: str = "r", target: Target = TARGET, /, **match: Any) -> Rule:
    """A rule with the given match conditions."""
    return Rule(name=name, location=LOC, target=target, match=Match(**match))


def run(**over: Any) -> LiveRun:
    """A finished run with a small config and summary."""
    base: dict[str, Any] = {
        "entity": "acme",
        "project": "vision",
        "id": "abc123",
        "storage_id": "UnVuOnYx",
        "name": "baseline-7",
        "state": "finished",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "config": {"model": "resnet50", "lr": 0.1, "optimizer": {"name": "sgd"}, "flag": True, "a.b": 1},
        "summary": {"val_acc": 0.91, "loss": 0.2},
        "tags": ("sweep-3", "wip"),
        "group": "g1",
        "job_type": "train",
    }
    base.update(over)
    return LiveRun(**base)


def test_server_filter_combines_every_pushable_condition() -> None:
    """Filters, ids, state, tags, group, job_type and dates become one $and."""
    r = rule(
        filters={"config.model": "resnet50"},
        ids=("a", "b"),
        state=("finished",),
        tags=("x", "y"),
        group="g1",
        job_type="train",
        created_after=datetime(2026, 1, 1, tzinfo=timezone.utc),
        older_than=timedelta(days=30),
    )
    assert selection.server_filter(r, NOW) == {
        "$and": [
            {"config.model": "resnet50"},
            {"name": {"$in": ["a", "b"]}},
            {"state": {"$in": ["finished"]}},
            {"tags": {"$in": ["x"]}},
            {"tags": {"$in": ["y"]}},
            {"group": "g1"},
            {"jobType": "train"},
            {"createdAt": {"$lt": "2026-05-02T12:00:00"}},
            {"createdAt": {"$gt": "2026-01-01T00:00:00"}},
        ]
    }


def test_server_filter_single_condition_is_not_wrapped() -> None:
    """One condition is sent as it is."""
    assert selection.server_filter(rule(group="g"), NOW) == {"group": "g"}


def test_server_filter_none_when_nothing_pushable() -> None:
    """`all: true` and name globs cannot be filtered by the server."""
    assert selection.server_filter(rule(all=True), NOW) is None
    assert selection.server_filter(rule(name="base*"), NOW) is None


def test_server_filter_leaves_many_ids_to_the_client() -> None:
    """More than 1,000 ids are not sent to the server."""
    ids = tuple(f"r{i}" for i in range(1001))
    assert selection.server_filter(rule(ids=ids), NOW) is None
    assert selection.server_filter(rule(ids=ids[:1000]), NOW) == {"name": {"$in": list(ids[:1000])}}


def test_server_filter_rounds_dates_outwards() -> None:
    """Sub-second bounds round so the server never drops a run the client check keeps."""
    moment = datetime(2026, 1, 1, 0, 0, 0, 500, tzinfo=timezone.utc)
    assert selection.server_filter(rule(created_before=moment), NOW) == {
        "createdAt": {"$lt": "2026-01-01T00:00:01"}
    }
    assert selection.server_filter(rule(created_after=moment), NOW) == {
        "createdAt": {"$gt": "2026-01-01T00:00:00"}
    }


def test_server_filter_uses_the_tighter_upper_bound() -> None:
    """created_before and older_than together keep the earlier bound."""
    r = rule(created_before=datetime(2026, 5, 20, tzinfo=timezone.utc), older_than=timedelta(days=1))
    assert selection.server_filter(r, NOW) == {"createdAt": {"$lt": "2026-05-20T00:00:00"}}


def test_project_filter_ors_rules_and_gives_up_on_all() -> None:
    """Several rules are OR-ed; one rule needing every run disables the filter."""
    a, b = rule("a", group="g"), rule("b", job_type="t")
    assert selection.project_filter([a, b], NOW) == {"$or": [{"group": "g"}, {"jobType": "t"}]}
    assert selection.project_filter([a], NOW) == {"group": "g"}
    assert selection.project_filter([a, rule("c", all=True)], NOW) is None


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"all": True}, True),
        ({}, False),
        ({"ids": ("abc123",)}, True),
        ({"ids": ("zzz",)}, False),
        ({"name": "baseline-*"}, True),
        ({"name": "Baseline-*"}, False),
        ({"tags": ("wip",)}, True),
        ({"tags": ("wip", "other")}, False),
        ({"state": ("finished", "crashed")}, True),
        ({"state": ("crashed",)}, False),
        ({"group": "g1"}, True),
        ({"group": "g2"}, False),
        ({"job_type": "train"}, True),
        ({"job_type": "eval"}, False),
        ({"created_before": datetime(2026, 1, 3, tzinfo=timezone.utc)}, True),
        ({"created_before": datetime(2026, 1, 2, tzinfo=timezone.utc)}, False),
        ({"created_after": datetime(2026, 1, 2, tzinfo=timezone.utc)}, True),
        ({"created_after": datetime(2026, 1, 3, tzinfo=timezone.utc)}, False),
        ({"older_than": timedelta(days=100)}, True),
        ({"older_than": timedelta(days=200)}, False),
        ({"group": "g1", "job_type": "eval"}, False),
    ],
)
def test_matches_each_condition(match: dict[str, Any], expected: bool) -> None:
    """Every match condition is checked client-side, and all must hold."""
    assert selection.matches(rule(**match), run(), NOW) is expected


def test_matches_name_glob_needs_a_display_name() -> None:
    """A run without a display name never matches a name glob."""
    assert not selection.matches(rule(name="*"), run(name=None), NOW)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"config.model": "resnet50"}, True),
        ({"config.model": "vit"}, False),
        ({"config.model.value": "resnet50"}, True),
        ({"config.optimizer.name": {"$in": ["sgd", "adam"]}}, True),
        ({"config.optimizer.name": {"$nin": ["sgd"]}}, False),
        ({"config.a.b": 1}, True),
        ({"config.lr": {"$gt": 0.05, "$lte": 0.1}}, True),
        ({"config.lr": {"$gte": 0.2}}, False),
        ({"config.lr": {"$lt": "x"}}, False),
        ({"config.flag": True}, True),
        ({"config.flag": 1}, False),
        ({"config.missing": None}, True),
        ({"config.missing": {"$exists": False}}, True),
        ({"config.model": {"$exists": True}}, True),
        ({"config.missing": {"$ne": 3}}, True),
        ({"summary_metrics.val_acc": {"$gt": 0.9}}, True),
        ({"state": "finished"}, True),
        ({"name": "abc123"}, True),
        ({"displayName": {"$regex": "^base"}}, True),
        ({"display_name": {"$regex": "^x"}}, False),
        ({"tags": "wip"}, True),
        ({"tags": {"$in": ["nope", "sweep-3"]}}, True),
        ({"tags": {"$nin": ["wip"]}}, False),
        ({"tags": {"$regex": "^sweep"}}, True),
        ({"group": {"$eq": "g1"}}, True),
        ({"jobType": {"$ne": "train"}}, False),
        ({"createdAt": {"$lt": "2026-01-03T00:00:00"}}, True),
        ({"createdAt": {"$gt": "2026-01-03T00:00:00Z"}}, False),
        ({"$or": [{"group": "nope"}, {"jobType": "train"}]}, True),
        ({"$and": [{"group": "g1"}, {"jobType": "eval"}]}, False),
        ({"$nor": [{"group": "nope"}]}, True),
    ],
)
def test_matches_evaluates_filters_client_side(flt: dict[str, Any], expected: bool) -> None:
    """The Mongo-style filter is re-checked on the run with MongoDB semantics."""
    assert selection.matches(rule(filters=flt), run(), NOW) is expected


@pytest.mark.parametrize(
    "flt",
    [
        {"username": "me"},
        {"config.x": {"$all": [1]}},
        {"$where": "1"},
        {"summary.x": 1},
        {"tags": {"$in": "a"}},
    ],
)
def test_matches_refuses_filters_it_cannot_check(flt: dict[str, Any]) -> None:
    """An unknown key or operator is a PlanError naming the rule."""
    with pytest.raises(PlanError, match="rule 'bad'"):
        selection.matches(rule("bad", filters=flt), run(), NOW)


def test_targets_groups_rules_by_project() -> None:
    """Rules are grouped by (entity, project) in spec order."""
    a, b, c = rule("a", all=True), rule("b", Target("acme", "other"), all=True), rule("c", all=True)
    spec = Spec(1, TARGET, Limits(), (a, b, c), "sha256:x", ("spec.yaml",))
    assert selection.targets(spec) == {("acme", "vision"): [a, c], ("acme", "other"): [b]}


def test_targets_requires_entity_and_project() -> None:
    """A rule with no project says how to set one."""
    spec = Spec(1, Target(), Limits(), (rule("a", Target("acme", None), all=True),), "d", ())
    with pytest.raises(PlanError, match="WANDB_PROJECT"):
        selection.targets(spec)


def test_refused_filter_names_the_rule_the_server_refuses() -> None:
    """Each rule's filter is probed alone; only the refused one is named, at its filters' location,
    with what the server said to that filter."""
    good = rule("good", state=("finished",))
    bad = Rule(name="bad", location=LOC, target=TARGET, add_tags=("x",),
               match=Match(filters={"createdAt": {"$gt": "yesterday"}}, filters_at=Location("s.yaml", 9, 7)))
    refused = BackendError("W&B refused the request while trying to list runs of acme/vision: union",
                           refusal="union")

    def probe(flt: Any) -> None:
        if "createdAt" in str(flt):
            raise BackendError("W&B refused the request: bad date", refusal="bad date")

    error = selection.refused_filter(refused, [good, bad], NOW, probe)
    first, hint = str(error).split("\n")
    assert first == ("s.yaml:9:7: rule 'bad': W&B refused its match.filters while listing runs of "
                     "acme/vision: bad date")
    assert "reconcile validate" in hint
    assert type(error) is BackendError


def test_refused_filter_leaves_other_failures_alone() -> None:
    """A transport or auth failure, or a refusal the server did not word (no ``refusal``), is not a
    filter's fault: it is returned as it is, nothing probed."""
    probed: list[Any] = []
    for failure in (RetryableError("W&B failed (HTTP 500)", status=500), AuthError("rejected", status=401),
                    BackendError("the server did not answer like W&B's API")):
        rules = [rule("r", state=("finished",))]
        assert selection.refused_filter(failure, rules, NOW, probed.append) is failure
    assert probed == []


def test_refused_filter_stops_probing_when_the_server_fails() -> None:
    """A probe that fails for another reason (a 500) leaves the original error as it is."""
    refused = BackendError("refused", refusal="no")

    def probe(flt: Any) -> None:
        raise RetryableError("W&B failed (HTTP 500)", status=500)

    assert selection.refused_filter(refused, [rule("a", state=("finished",))], NOW, probe) is refused


def test_refused_filter_without_a_single_culprit_names_every_rule_that_sent_one() -> None:
    """Each filter alone passes but the union sent is refused again: every rule that contributed is named."""
    refused = BackendError("refused", refusal="too big")
    union = {"$or": [{"state": "x"}]}

    def probe(flt: Any) -> None:
        if flt is union:
            raise BackendError("refused", refusal="too big")

    error = selection.refused_filter(refused, [rule("a", state=("finished",)), rule("b", group="g")], NOW,
                                     probe, union)
    assert str(error).startswith("W&B refused the filter built from rules 'a' (spec.yaml:1:1), "
                                 "'b' (spec.yaml:1:1) together, though it accepts each rule's alone: too big")


def test_refused_filter_that_no_probe_reproduces_is_left_alone() -> None:
    """A refusal that neither any rule's filter nor the union reproduces (a later page's files, say) is
    not blamed on the rules."""
    refused = BackendError("refused", refusal="something else")
    rules = [rule("a", state=("finished",))]
    assert selection.refused_filter(refused, rules, NOW, lambda flt: None, {"state": "finished"}) is refused
