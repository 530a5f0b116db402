"""Tests of file deletions in the planner: combined selectors, keep across rules, unless_top
rankings settled at finish, the delete-everything guard, file limits and needs_files."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconcile import planner
from reconcile.models import (
    ChangeKind,
    ChangeOp,
    FilesRule,
    Goal,
    Limits,
    LiveFile,
    LiveRun,
    Location,
    Match,
    Plan,
    Rule,
    Spec,
    Target,
    UnlessTop,
)

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
LOC = Location("spec.yaml", 1, 1)
TARGET = Target("acme", "vision")
URL = "http://127.0.0.1:8080"


def f(name: str, *, days: float = 100, size: int = 1000) -> LiveFile:
    """A file last updated ``days`` before NOW."""
    return LiveFile(id=f"id-{name}", name=name, size=size, updated_at=NOW - timedelta(days=days))


STANDARD = (
    f("wandb-metadata.json"),
    f("output.log"),
    f("model-best.ckpt", days=1),
    f("step-1.ckpt", days=90),
    f("step-2.ckpt", days=60),
    f("step-3.ckpt", days=2),
    f("media/images/a.png", days=40),
)


def run(run_id: str = "r1", files: tuple[LiveFile, ...] | None = STANDARD, **over: Any) -> LiveRun:
    """A finished run with files."""
    base: dict[str, Any] = {
        "entity": "acme",
        "project": "vision",
        "id": run_id,
        "storage_id": f"sid-{run_id}",
        "name": run_id,
        "state": "finished",
        "created_at": NOW - timedelta(days=200),
        "config": {},
        "summary": {},
        "tags": (),
        "files": files,
    }
    base.update(over)
    return LiveRun(**base)


def rule(name: str = "r", files: FilesRule | None = None, match: Match | None = None, **fields: Any) -> Rule:
    """A rule matching every run."""
    return Rule(name=name, location=LOC, target=TARGET, match=match or Match(all=True), files=files, **fields)


def plan_of(*rules: Rule, runs: tuple[LiveRun, ...] = (), limits: Limits | None = None) -> Plan:
    """Plan these rules against these runs."""
    spec = Spec(1, TARGET, limits or Limits(), rules, "d", ())
    return planner.plan(spec, runs or (run(),), now=NOW, base_url=URL)


def deleted(p: Plan) -> dict[str, list[str]]:
    """Run id -> names of files to delete."""
    return {rp.run_id: [c.key[0] for c in rp.file_deletions] for rp in p.runs if rp.file_deletions}


def test_plan_files_delete_change_shape() -> None:
    """A deletion is kind FILE, op DELETE, key (name,), before/file the LiveFile, a display detail."""
    p = plan_of(rule("ckpt", FilesRule(delete=("step-1.ckpt",))))
    [rp] = p.runs
    [change] = rp.changes
    target = STANDARD[3]
    assert (change.kind, change.op, change.key, change.before, change.after, change.file, change.rules) == (
        ChangeKind.FILE,
        ChangeOp.DELETE,
        ("step-1.ckpt",),
        target,
        None,
        target,
        ("ckpt",),
    )
    assert change.detail == "1000 bytes, 90 days old"
    assert ("files",) in rp.fingerprint_fields
    assert p.bytes_to_free == 1000


def test_plan_files_combined_selectors() -> None:
    """keep, older_than, larger_than and keep_last all narrow together; system files stay."""
    files = (*STANDARD, f("big-old.ckpt", days=100, size=10_000))
    rules = FilesRule(
        delete=("**",), keep=("model-best.*",), older_than=timedelta(days=30), larger_than=500, keep_last=1
    )
    p = plan_of(rule("r", rules), runs=(run(files=files),))
    # Old enough and large: step-1 (90d), step-2 (60d), media (40d), big-old (100d); keep_last spares media.
    assert deleted(p) == {"r1": ["big-old.ckpt", "step-1.ckpt", "step-2.ckpt"]}


def test_plan_files_keep_from_any_matching_rule_wins() -> None:
    """A keep glob in another matching rule protects a file; a non-matching rule's keep does not."""
    deleter = rule("deleter", FilesRule(delete=("*.ckpt",)))
    keeper = rule("keeper", FilesRule(delete=("nothing",), keep=("step-*.ckpt",)), match=Match(ids=("r1",)))
    p = plan_of(deleter, keeper, runs=(run("r1"), run("r2")))
    assert deleted(p) == {
        "r1": ["model-best.ckpt"],
        "r2": ["model-best.ckpt", "step-1.ckpt", "step-2.ckpt", "step-3.ckpt"],
    }


def test_plan_files_two_rules_one_change_crediting_both() -> None:
    """A file selected by two rules is deleted once, listing both rules in spec order."""
    p = plan_of(
        rule("b", FilesRule(delete=("step-1.ckpt",))), rule("a", FilesRule(delete=("*.ckpt",), keep_last=3))
    )
    [rp] = p.runs
    assert [(c.key[0], c.rules) for c in rp.changes] == [("step-1.ckpt", ("b", "a"))]


def test_plan_files_system_files_need_permission() -> None:
    """A catch-all keeps W&B's own files unless allow_system_files is set."""
    p = plan_of(rule("all", FilesRule(delete=("**",), allow_delete_all=True)))
    assert "wandb-metadata.json" not in deleted(p)["r1"]
    p = plan_of(rule("all", FilesRule(delete=("**",), allow_system_files=True, allow_delete_all=True)))
    assert "wandb-metadata.json" in deleted(p)["r1"]


def test_plan_files_delete_everything_guard() -> None:
    """A rule that would remove every file of every matched run is a plan error unless allowed."""
    everything = FilesRule(delete=("**",), allow_system_files=True)
    p = plan_of(rule("wipe", everything), runs=(run("a"), run("b", files=())))
    [error] = p.errors
    assert "'wipe'" in error
    assert "allow_delete_all" in error
    allowed = plan_of(rule("wipe", dataclasses.replace(everything, allow_delete_all=True)))
    assert allowed.errors == ()


def test_plan_files_guard_not_triggered_when_something_survives() -> None:
    """One surviving file in any matched run, or nothing deleted at all, passes the guard."""
    everything = FilesRule(delete=("**",), allow_system_files=True)
    assert (
        plan_of(
            rule("wipe", everything),
            runs=(run("a"), run("b", files=(f("x"), f("y")))),
        ).errors
        != ()
    )
    keep_one = dataclasses.replace(everything, keep=("x",))
    assert plan_of(rule("wipe", keep_one), runs=(run("a"), run("b", files=(f("x"), f("y"))))).errors == ()
    assert plan_of(rule("none", FilesRule(delete=("*.nothing",))), runs=(run(files=()),)).errors == ()


def test_plan_files_unless_top_spares_best_runs() -> None:
    """The rule's top runs by metric keep their files; NaN and missing rank last; ties by id."""
    summaries = {"a": {"acc": 0.5}, "b": {"acc": 0.9}, "c": {"acc": float("nan")}, "d": {}, "e": {"acc": 0.9}}
    runs = tuple(run(i, files=(f("x.ckpt"),), summary=s) for i, s in summaries.items())
    top2 = FilesRule(delete=("*.ckpt",), unless_top=UnlessTop(("acc",), Goal.MAXIMIZE, 2))
    assert sorted(deleted(plan_of(rule("r", top2), runs=runs))) == ["a", "c", "d"]
    top3 = dataclasses.replace(top2, unless_top=UnlessTop(("acc",), Goal.MINIMIZE, 3))
    assert sorted(deleted(plan_of(rule("r", top3), runs=runs))) == ["c", "d"]
    [rp] = [rp for rp in plan_of(rule("r", top2), runs=runs).runs if rp.run_id == "a"]
    assert ("summary", "acc") in rp.fingerprint_fields


def test_plan_files_unless_top_counts_only_matched_live_skips_excluded() -> None:
    """Ranking uses the rule's matched, non-skipped runs only."""
    runs = (
        run("best", files=(f("x.ckpt"),), summary={"acc": 0.99}, state="running"),
        run("mid", files=(f("x.ckpt"),), summary={"acc": 0.5}),
        run("low", files=(f("x.ckpt"),), summary={"acc": 0.1}),
        run("other", files=(f("x.ckpt"),), summary={"acc": 0.8}, group="elsewhere"),
    )
    top1 = FilesRule(delete=("*.ckpt",), unless_top=UnlessTop(("acc",), Goal.MAXIMIZE, 1))
    p = plan_of(rule("r", top1, match=Match(filters={"group": None})), runs=runs)
    assert deleted(p) == {"low": ["x.ckpt"]}
    assert p.skipped_running == 1


def test_plan_files_unless_top_keeps_other_rules_and_metadata() -> None:
    """A top run keeps only that rule's deletions; other rules' deletions and attribute changes stay."""
    runs = (run("a", summary={"acc": 1.0}), run("b", summary={"acc": 0.0}))
    ranked = rule(
        "ranked",
        FilesRule(delete=("*.ckpt",), unless_top=UnlessTop(("acc",), Goal.MAXIMIZE, 1)),
        add_tags=("seen",),
    )
    media = rule("media", FilesRule(delete=("media/**",)))
    p = plan_of(ranked, media, runs=runs)
    assert deleted(p) == {
        "a": ["media/images/a.png"],
        "b": ["media/images/a.png", "model-best.ckpt", "step-1.ckpt", "step-2.ckpt", "step-3.ckpt"],
    }
    assert all(rp.attribute_changes == 1 for rp in p.runs)


def test_plan_files_guard_with_unless_top_counts_spared_runs() -> None:
    """Top runs keep their files, so the guard does not fire for a ranked catch-all."""
    runs = (run("a", files=(f("x"),), summary={"acc": 1}), run("b", files=(f("y"),), summary={"acc": 0}))
    ranked = FilesRule(delete=("**",), unless_top=UnlessTop(("acc",), Goal.MAXIMIZE, 1))
    p = plan_of(rule("r", ranked), runs=runs)
    assert (p.errors, deleted(p)) == ((), {"b": ["y"]})


def test_plan_target_ranks_unless_top_over_every_matched_run() -> None:
    """Planning only b (a read without files, for the ranking): a is still the top run, so b's file goes
    and the guard does not fire (a keeps its files), exactly as in the plan of both."""
    a, b = run("a", files=(f("x"),), summary={"acc": 1}), run("b", files=(f("y"),), summary={"acc": 0})
    ranked = rule("r", FilesRule(delete=("**",), unless_top=UnlessTop(("acc",), Goal.MAXIMIZE, 1)))
    spec = Spec(1, TARGET, Limits(), (ranked,), "d", ())
    both = planner.plan(spec, (a, b), now=NOW, base_url=URL)
    only_b = planner.Planner(spec, now=NOW, base_url=URL, targets={("acme", "vision"): frozenset({"b"})})
    for live in (dataclasses.replace(a, files=None), b):
        only_b.add(live)
    p = only_b.finish()
    assert (p.errors, deleted(p)) == (both.errors, deleted(both)) == ((), {"b": ["y"]})
    assert [r.run_id for r in p.runs] == ["b"]


@pytest.mark.parametrize(
    ("limits", "which"),
    [
        (
            Limits(max_file_deletions=3),
            "limits.max_file_deletions is 3 but the plan has 4 files to delete (1 over)",
        ),
        (Limits(max_bytes=3500), "limits.max_bytes is 3500 but the plan has 4000 bytes to delete (500 over)"),
        (Limits(max_file_deletions=4, max_bytes=4000), None),
    ],
)
def test_plan_files_limits(limits: Limits, which: str | None) -> None:
    """File count and byte limits are plan-wide errors saying by how much."""
    p = plan_of(rule("r", FilesRule(delete=("*.ckpt",))), limits=limits)
    assert [e.split(";")[0] for e in p.errors] == ([which] if which else [])


def test_plan_limit_messages_count_one_in_the_singular() -> None:
    """Limits of 0 broken by one run, one file of one byte read "1 run", "1 file", "1 byte"."""
    one_byte = run("a", files=(f("a.ckpt", size=1), f("b.txt")))
    p = plan_of(rule("r", FilesRule(delete=("*.ckpt",))), runs=(one_byte,),
                limits=Limits(max_changed_runs=0, max_file_deletions=0, max_bytes=0))
    assert [e.split(";")[0] for e in p.errors] == [
        "limits.max_changed_runs is 0 but the plan has 1 run to change (1 over)",
        "limits.max_file_deletions is 0 but the plan has 1 file to delete (1 over)",
        "limits.max_bytes is 0 but the plan has 1 byte to delete (1 over)",
    ]


def test_plan_files_not_read_is_a_run_error() -> None:
    """Planning a files rule against a run whose files were not fetched is an error, not silence."""
    p = plan_of(rule("r", FilesRule(delete=("*",))), runs=(run(files=None),))
    [rp] = p.runs
    assert rp.errors
    assert "were not read" in rp.errors[0]


def test_needs_files_only_for_matching_files_rules() -> None:
    """needs_files is true only when a rule with files: applies to the run."""
    spec = Spec(
        1,
        TARGET,
        Limits(),
        (rule("t", add_tags=("x",)), rule("f", FilesRule(delete=("*",)), match=Match(group="g"))),
        "d",
        (),
    )
    assert planner.needs_files(spec, run(group="g"), NOW)
    assert not planner.needs_files(spec, run(group="h"), NOW)
    assert not planner.needs_files(spec, run(group="g", project="other"), NOW)
    assert not planner.needs_files(spec, run(group="g", state="running"), NOW)


def test_plan_files_guard_ignores_protected_system_files() -> None:
    """`delete: ["**"]` trips the guard even though the system files it cannot touch survive."""
    p = plan_of(rule("typo", FilesRule(delete=("**",))))
    [error] = p.errors
    assert "'typo'" in error and "allow_delete_all" in error


def test_plan_files_keep_of_a_rule_skipped_for_a_live_run_still_protects() -> None:
    """On a running run only rules naming that state change it, but every matching rule's keep wins."""
    live = run("live", state="running", files=(f("model-best.ckpt"), f("e1.ckpt")))
    p = plan_of(
        rule("clean-live", FilesRule(delete=("*.ckpt",)), match=Match(state=("running",))),
        rule("protect-best", FilesRule(delete=("tmp/*",), keep=("model-best.ckpt",))),
        runs=(live,),
    )
    assert deleted(p) == {"live": ["e1.ckpt"]}


def test_plan_files_guard_spares_a_rule_that_names_its_runs_and_files() -> None:
    """`match: {ids: [v05]}` with `delete: [train.log, metrics.json]` (literal names) is planned although it
    empties v05 of all but its system files; the same names on a broad match, or any wildcard on named
    ids (`*.log`, `?*`, `[!x]*`, `**`) that would empty the run, are still refused."""
    v05 = run("v05", files=(f("wandb-metadata.json"), f("train.log"), f("metrics.json")))
    named = rule("named", FilesRule(delete=("train.log", "metrics.json")), match=Match(ids=("v05",)))
    p = plan_of(named, runs=(v05,))
    assert p.errors == ()
    assert deleted(p) == {"v05": ["metrics.json", "train.log"]}
    broad = rule("broad", FilesRule(delete=("train.log", "metrics.json")))
    [error] = plan_of(broad, runs=(v05,)).errors
    assert "'broad'" in error and "allow_delete_all" in error
    for wildcards in (("*.log", "*.json"), ("?*",), ("**/?*",), ("[!x]*",), ("**",), ("*",), ("**/*",)):
        everything = rule("wild", FilesRule(delete=wildcards), match=Match(ids=("v05",)))
        [error] = plan_of(everything, runs=(v05,)).errors
        assert "'wild'" in error
