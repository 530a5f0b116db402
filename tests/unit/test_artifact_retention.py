"""Artifact version retention in the planner: candidates by type and name glob, alias protection,
delete_aliased (never latest), selectors per collection, unless_top by the logging run's metric."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from reconcile import planner
from reconcile.models import (
    ArtifactsRule,
    ChangeKind,
    Goal,
    Limits,
    LiveArtifact,
    LiveRun,
    Location,
    Match,
    OrderBy,
    Plan,
    Rule,
    Spec,
    Target,
    UnlessTop,
)

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
TARGET = Target("acme", "vision")


def version(
    collection: str,
    index: int,
    *,
    aliases: tuple[str, ...] = (),
    days: float = 10,
    size: int = 100,
    type_: str = "model",
) -> LiveArtifact:
    """Version ``index`` of ``collection``, created ``days`` before NOW minus the index in hours."""
    return LiveArtifact(
        id=f"{collection}-{index}",
        collection=collection,
        type=type_,
        version_index=index,
        size=size,
        created_at=NOW - timedelta(days=days) + timedelta(hours=index),
        aliases=aliases,
    )


def run(run_id: str, artifacts: list[LiveArtifact] | None, **summary: Any) -> LiveRun:
    """A finished run that logged ``artifacts``."""
    return LiveRun(
        "acme",
        "vision",
        run_id,
        f"sid-{run_id}",
        run_id,
        "finished",
        NOW - timedelta(days=30),
        {},
        summary,
        (),
        artifacts=tuple(artifacts) if artifacts is not None else None,
    )


def plan_of(rule: ArtifactsRule, *runs: LiveRun, targets: planner.Targets | None = None) -> Plan:
    """Plan one artifacts rule matching every run (only ``targets``, if given)."""
    spec = Spec(
        1,
        TARGET,
        Limits(),
        (Rule("r", Location("s.yaml", 1, 1), TARGET, Match(all=True), artifacts=rule),),
        "d",
        (),
    )
    plans = planner.Planner(spec, now=NOW, base_url="http://127.0.0.1:1", targets=targets)
    for live in runs:
        plans.add(live)
    return plans.finish()


def deleted(plan: Plan) -> dict[str, list[str]]:
    """Run id -> names of the versions the plan deletes."""
    return {
        r.run_id: [c.key[0] for c in r.changes if c.kind is ChangeKind.ARTIFACT]
        for r in plan.runs
        if r.changes
    }


def test_aliased_versions_survive_and_keep_last_counts_the_rest() -> None:
    """latest and best survive; keep_last 2 keeps the newest two unaliased; the rest go, oldest first."""
    versions = [
        version("ckpt", i, aliases=("latest",) if i == 5 else ("best",) if i == 1 else ()) for i in range(6)
    ]
    p = plan_of(ArtifactsRule(type="model", keep_last=2), run("r1", versions))
    assert deleted(p) == {"r1": ["ckpt:v0", "ckpt:v2"]}
    [change] = [c for c in p.runs[0].changes if c.key == ("ckpt:v0",)]
    assert change.detail == "100 bytes, aliases: none"
    assert change.artifact is not None and change.artifact.id == "ckpt-0"


def test_delete_aliased_lets_named_aliases_go_but_never_latest() -> None:
    """delete_aliased: [candidate] deletes versions whose only aliases are named there."""
    versions = [
        version("ckpt", 0, aliases=("candidate",)),
        version("ckpt", 1, aliases=("candidate", "prod")),
        version("ckpt", 2, aliases=("latest",)),
    ]
    p = plan_of(ArtifactsRule(type="model", delete_aliased=("candidate", "latest")), run("r1", versions))
    assert deleted(p) == {"r1": ["ckpt:v0"]}


def test_type_and_name_glob_select_collections_and_selectors_rank_per_collection() -> None:
    """keep_last 1 applies to each collection; other types and names are not candidates."""
    versions = (
        [version("ckpt-a", i) for i in range(3)]
        + [version("ckpt-b", i) for i in range(2)]
        + [version("data", 0, type_="dataset"), version("other", 0)]
    )
    p = plan_of(ArtifactsRule(type="model", name="ckpt-*", keep_last=1), run("r1", versions))
    assert deleted(p) == {"r1": ["ckpt-a:v0", "ckpt-a:v1", "ckpt-b:v0"]}


def test_versions_of_one_collection_from_several_runs_rank_together() -> None:
    """A collection fed by two runs keeps its newest version overall; each deletion sits on its run."""
    p = plan_of(
        ArtifactsRule(type="model", keep_last=1),
        run("r1", [version("shared", 0), version("shared", 1)]),
        run("r2", [version("shared", 2)]),
    )
    assert deleted(p) == {"r1": ["shared:v0", "shared:v1"]}


def test_a_target_plans_its_run_with_the_collection_ranked_over_every_matched_run() -> None:
    """--target r1: r1's versions are ranked with r2's (keep_last 1 keeps r2's newer v2, so both of r1's
    go, as without --target); r2 is read only for the ranking and plans nothing."""
    runs = (run("r1", [version("shared", 0), version("shared", 1)]), run("r2", [version("shared", 2)]))
    rule = ArtifactsRule(type="model", keep_last=1)
    everything = plan_of(rule, *runs)
    targeted = plan_of(rule, *runs, targets={("acme", "vision"): frozenset({"r1"})})
    assert deleted(targeted) == deleted(everything) == {"r1": ["shared:v0", "shared:v1"]}
    assert [r.run_id for r in targeted.runs] == ["r1"]


def test_a_target_keeps_unless_top_over_every_matched_run() -> None:
    """--target bad: good (outside the target) is still the top run, so bad's version goes; --target
    good plans no change."""
    rule = ArtifactsRule(type="model", unless_top=UnlessTop(("val_acc",), Goal.MAXIMIZE, 1))
    runs = (run("good", [version("g", 0)], val_acc=0.9), run("bad", [version("b", 0)], val_acc=0.1))
    only = {("acme", "vision"): frozenset({"bad"})}
    assert deleted(plan_of(rule, *runs, targets=only)) == {"bad": ["b:v0"]}
    good = plan_of(rule, *runs, targets={("acme", "vision"): frozenset({"good"})})
    assert not good.has_changes  # listed only for its surviving version, and why
    assert kept(good) == {"good": {"g:v0": ["r: unless_top top 1 by val_acc (maximize)"]}}


def test_older_than_larger_than_and_calendar() -> None:
    """Only old, large versions are candidates; keep_daily keeps the newest of each day."""
    versions = [
        version("c", 0, days=40, size=500),
        version("c", 1, days=40, size=10),
        version("c", 2, days=1),
        version("c", 3, days=39, size=500),
        version("c", 4, days=39, size=500),
    ]
    rule = ArtifactsRule(type="model", older_than=timedelta(days=30), larger_than=100, keep_daily=1)
    # v0 (day -40) and v3, v4 (day -39, v4 newest): keep_daily 1 keeps v4 only.
    assert deleted(plan_of(rule, run("r1", versions))) == {"r1": ["c:v0", "c:v3"]}


def test_order_by_name_ranks_by_version_index() -> None:
    """order_by: name keeps the highest version even if another was created later."""
    versions = [version("c", 9, days=5), version("c", 10, days=6)]
    assert deleted(
        plan_of(ArtifactsRule(type="model", keep_last=1, order_by=OrderBy.NAME), run("r1", versions))
    ) == {"r1": ["c:v9"]}
    assert deleted(plan_of(ArtifactsRule(type="model", keep_last=1), run("r1", versions))) == {
        "r1": ["c:v10"]
    }


def test_unless_top_spares_the_best_runs_versions() -> None:
    """The top run by val_acc keeps all its versions."""
    rule = ArtifactsRule(type="model", unless_top=UnlessTop(("val_acc",), Goal.MAXIMIZE, 1))
    p = plan_of(rule, run("good", [version("g", 0)], val_acc=0.9), run("bad", [version("b", 0)], val_acc=0.1))
    assert deleted(p) == {"bad": ["b:v0"]}


def test_artifacts_not_read_is_an_error_and_no_version_is_a_warning() -> None:
    """Planning without the versions would be a lie; a rule finding nothing says so."""
    p = plan_of(ArtifactsRule(type="model"), run("r1", None))
    assert p.runs[0].errors == (
        "the artifacts of acme/vision/r1 were not read, so its artifacts rules cannot be planned",
    )
    p = plan_of(ArtifactsRule(type="model", name="nope-*"), run("r1", [version("c", 0)]))
    assert p.warnings == (
        "rule 'r': artifacts of type 'model' named 'nope-*' match no version logged by the runs it matches",
    )


def test_summary_counts_artifact_versions_apart_from_attributes() -> None:
    """Artifact deletions are not attribute changes; the plan counts them and their bytes."""
    p = plan_of(
        ArtifactsRule(type="model"),
        run("r1", [version("c", 0, size=7), version("c", 1, size=5, aliases=("latest",))]),
    )
    assert (p.attribute_changes, p.artifact_deletions, p.artifact_bytes_to_free) == (0, 1, 7)


def test_versions_logged_in_the_same_second_rank_by_version_index() -> None:
    """Equal creation times (the SDK logs a version per epoch, often within one second): v10 is newer
    than v9, not older because "v10" < "v9" as text."""
    same = NOW - timedelta(days=1)
    versions = [
        LiveArtifact(id=f"c-{i}", collection="c", type="model", version_index=i, size=1, created_at=same)
        for i in (8, 9, 10, 11)
    ]
    assert deleted(plan_of(ArtifactsRule(type="model", keep_last=2), run("r1", versions))) == {
        "r1": ["c:v8", "c:v9"]
    }


def kept(plan: Plan) -> dict[str, dict[str, list[str]]]:
    """Run id -> version name -> the reasons it survives (``rule: selector detail``)."""
    return {
        r.run_id: {k.artifact.name: [f"{x.rule}: {x}" for x in k.reasons] for k in r.kept_artifacts}
        for r in plan.runs
        if r.kept_artifacts
    }


def test_kept_versions_carry_their_reasons() -> None:
    """Every candidate that survives is listed on the run that logged it, with each reason; versions
    of another type are not candidates and are not listed."""
    versions = [version("ckpt", i, aliases=("latest",) if i == 4 else ()) for i in range(5)]
    versions.append(version("data", 0, type_="dataset"))
    rule = ArtifactsRule(type="model", keep_last=1, keep_daily=1)
    day = (NOW - timedelta(days=10)).strftime("%Y-%m-%d")  # all five were created that day
    assert kept(plan_of(rule, run("r1", versions))) == {
        "r1": {"ckpt:v3": ["r: keep_last 1 of 1", f"r: keep_daily {day}"], "ckpt:v4": ["r: alias latest"]},
    }


def test_unless_top_survivors_are_kept_and_a_run_with_only_survivors_is_listed() -> None:
    """A top run's versions survive with the unless_top reason; it is in the plan without changes."""
    rule = ArtifactsRule(type="model", unless_top=UnlessTop(("val_acc",), Goal.MAXIMIZE, 1))
    p = plan_of(rule, run("good", [version("g", 0)], val_acc=0.9), run("bad", [version("b", 0)], val_acc=0.1))
    assert kept(p) == {"good": {"g:v0": ["r: unless_top top 1 by val_acc (maximize)"]}}
    [good] = [r for r in p.runs if r.run_id == "good"]
    assert good.changes == ()


def test_a_version_one_rule_deletes_is_not_listed_as_kept_by_another() -> None:
    """Deleted by any rule means deleted: it is never also shown as a survivor."""
    spec = Spec(
        1, TARGET, Limits(),
        (Rule("keeper", Location("s.yaml", 1, 1), TARGET, Match(all=True),
              artifacts=ArtifactsRule(type="model", keep_last=2)),
         Rule("pruner", Location("s.yaml", 9, 1), TARGET, Match(all=True),
              artifacts=ArtifactsRule(type="model", keep_last=1))),
        "d", (),
    )
    p = planner.plan(spec, [run("r1", [version("c", i) for i in range(3)])], now=NOW, base_url="http://x")
    assert deleted(p) == {"r1": ["c:v0", "c:v1"]}
    assert kept(p) == {"r1": {"c:v2": ["keeper: keep_last 1 of 2", "pruner: keep_last 1 of 1"]}}


def test_kept_versions_survive_the_plan_file() -> None:
    """kept_artifacts is written to the JSON plan and read back exactly."""
    from reconcile.planfile import dumps, plan_from_dict

    p = plan_of(ArtifactsRule(type="model", keep_last=1), run("r1", [version("c", i) for i in range(3)]))
    back = plan_from_dict(json.loads(dumps(p)))
    assert back.runs[0].kept_artifacts == p.runs[0].kept_artifacts != ()


def test_a_runs_versions_are_listed_in_version_order() -> None:
    """The plan lists v2, v9, v10 in that order (not v10 before v2 as text sorts)."""
    versions = [version("c", i) for i in (10, 2, 9)] + [version("c", 11, aliases=("latest",))]
    planned = plan_of(ArtifactsRule(type="model"), run("r1", versions))
    assert deleted(planned) == {"r1": ["c:v2", "c:v9", "c:v10"]}
