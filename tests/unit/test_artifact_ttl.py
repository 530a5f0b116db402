"""A desired ``ttl`` for artifact versions: which versions get it (the candidates that survive and
have no protecting alias), the change the plan shows (current -> desired), disagreeing rules, how it
is written and read back from a saved plan, and the spec's checks (file:line)."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from reconcile import planner
from reconcile.errors import SpecError
from reconcile.models import (
    ArtifactsRule,
    ChangeKind,
    ChangeOp,
    Limits,
    LiveArtifact,
    Location,
    Match,
    Plan,
    Rule,
    Spec,
    VersionTTL,
)
from reconcile.planfile import dumps, plan_from_dict
from reconcile.render import render
from reconcile.spec import load_spec
from tests.unit.test_artifact_retention import NOW, TARGET, plan_of, run, version

DAY = 86_400


def ttl_changes(plan: Plan) -> dict[str, list[tuple[str, str | None, str]]]:
    """Run id -> (version, before, after) of each TTL the plan sets."""
    return {
        r.run_id: [(c.key[0], c.before, c.after) for c in r.changes
                   if c.kind is ChangeKind.ARTIFACT and c.op is ChangeOp.SET]
        for r in plan.runs if r.artifact_ttl_changes
    }


def with_ttl(index: int, ttl: VersionTTL | None, aliases: tuple[str, ...] = ()) -> LiveArtifact:
    """Version ``index`` of ``ckpt`` whose TTL W&B reports as ``ttl``."""
    return dataclasses.replace(version("ckpt", index, aliases=aliases), ttl=ttl)


def test_ttl_alone_sets_the_ttl_of_unaliased_versions_and_deletes_nothing() -> None:
    """A block with only ttl manages TTLs: no deletion; an aliased version keeps its own TTL; a version
    already at the TTL is no change; before and after read in the spec's words."""
    versions = [
        with_ttl(0, VersionTTL(None)),
        with_ttl(1, VersionTTL(30 * DAY)),
        with_ttl(2, VersionTTL(7 * DAY)),
        with_ttl(3, VersionTTL(None, inherited=True)),
        with_ttl(4, VersionTTL(None), aliases=("best",)),
        with_ttl(5, VersionTTL(None), aliases=("latest",)),
    ]
    plan = plan_of(ArtifactsRule(type="model", ttl=VersionTTL(30 * DAY)), run("r1", versions))
    assert plan.artifact_deletions == 0
    assert ttl_changes(plan) == {"r1": [("ckpt:v0", "none", "30d"), ("ckpt:v2", "1w", "30d"),
                                        ("ckpt:v3", "inherit", "30d")]}
    assert plan.runs[0].attribute_changes == 0
    [first] = [c for c in plan.runs[0].changes if c.key[0] == "ckpt:v0"]
    created = version("ckpt", 0).created_at
    assert first.detail == f"W&B deletes it after {created + timedelta(days=30):%Y-%m-%d %H:%M} UTC"
    assert first.rules == ("r",)


def test_versions_the_plan_deletes_get_no_ttl_and_survivors_do() -> None:
    """With selectors, the rule deletes as before; the TTL goes on the survivors without an alias."""
    versions = [with_ttl(i, VersionTTL(None)) for i in range(4)]
    rule = ArtifactsRule(type="model", keep_last=2, ttl=VersionTTL(None, inherited=True))
    plan = plan_of(rule, run("r1", versions))
    assert [c.key for c in plan.runs[0].artifact_deletions] == [("ckpt:v0",), ("ckpt:v1",)]
    assert ttl_changes(plan) == {"r1": [("ckpt:v2", "none", "inherit"), ("ckpt:v3", "none", "inherit")]}


def test_inherit_is_met_by_any_inherited_ttl_and_none_by_no_ttl() -> None:
    """W&B reports an inherited TTL with the team default's seconds: that is inheriting."""
    team_default = VersionTTL.from_wire(90 * DAY, True)
    assert VersionTTL(None, inherited=True).satisfied_by(team_default)
    assert not VersionTTL(90 * DAY).satisfied_by(team_default)
    assert VersionTTL(None).satisfied_by(VersionTTL.from_wire(-2, False))
    assert not VersionTTL(None).satisfied_by(None)
    assert str(team_default) == "inherit (90d)"


@pytest.mark.parametrize(("ttl", "wire"), [(VersionTTL(3600), 3600), (VersionTTL(None), -2),
                                           (VersionTTL(None, inherited=True), -1)])
def test_the_wire_value_is_the_clients(ttl: VersionTTL, wire: int) -> None:
    """Seconds, -1 to inherit, -2 for none: ``Artifact._ttl_duration_seconds_to_gql``; text reads back."""
    assert ttl.to_wire() == wire
    assert VersionTTL.parse(str(ttl)) == ttl


def test_two_rules_wanting_different_ttls_is_an_error_and_the_same_ttl_is_one_change() -> None:
    """Disagreeing rules are a plan error naming both and the version; agreeing ones share a change."""
    def spec(second: VersionTTL) -> Spec:
        rules = tuple(
            Rule(name, Location("s.yaml", line, 1), TARGET, Match(all=True),
                 artifacts=ArtifactsRule(type="model", ttl=ttl))
            for name, line, ttl in (("a", 1, VersionTTL(30 * DAY)), ("b", 9, second))
        )
        return Spec(1, TARGET, Limits(), rules, "d", ())

    live = run("r1", [with_ttl(0, VersionTTL(None))])
    bad = planner.plan(spec(VersionTTL(None)), [live], now=NOW, base_url="http://x")
    assert bad.runs[0].errors == (
        "rules 'a' and 'b' disagree on the TTL of artifact version ckpt:v0 logged by acme/vision/r1: "
        "30d vs none",
    )
    assert bad.runs[0].artifact_ttl_changes == ()
    good = planner.plan(spec(VersionTTL(30 * DAY)), [live], now=NOW, base_url="http://x")
    [change] = good.runs[0].artifact_ttl_changes
    assert change.rules == ("a", "b")


def test_a_ttl_shorter_than_the_versions_age_says_w_and_b_deletes_it_at_once() -> None:
    """W&B counts a TTL from creation: a 1-day TTL on a 10-day-old version expires it right away."""
    plan = plan_of(ArtifactsRule(type="model", ttl=VersionTTL(DAY)),
                   run("r1", [with_ttl(0, VersionTTL(None))]))
    [change] = plan.runs[0].artifact_ttl_changes
    assert change.detail is not None and "W&B deletes it shortly after apply" in change.detail


def test_plan_text_and_json_show_the_ttl_change() -> None:
    """Text: one `~` line current -> desired and its expiry; the summary counts TTLs apart; JSON:
    kind artifact, op set, the version under `artifact`, read back exactly."""
    plan = plan_of(ArtifactsRule(type="model", ttl=VersionTTL(30 * DAY)),
                   run("r1", [with_ttl(0, VersionTTL(None))]))
    out = io.StringIO()
    render(plan, out, "text")
    text = out.getvalue()
    assert '~ artifact version "ckpt:v0" ttl = "none" -> "30d"  # r' in text
    assert "# W&B deletes it after " in text
    assert text.rstrip().splitlines()[-1] == (
        "Plan: 1 run to change (0 attribute changes), 0 files to delete (0 bytes), "
        "1 artifact version TTL to set.")
    doc = json.loads(dumps(plan))
    [change] = doc["runs"][0]["changes"]
    assert (change["kind"], change["op"], change["key"], change["before"], change["after"]) == (
        "artifact", "set", ["ckpt:v0", "ttl"], "none", "30d")
    assert change["artifact"]["ttl"] == "none"
    assert doc["summary"]["artifact_ttls_to_set"] == 1
    assert plan_from_dict(doc).runs[0].changes == plan.runs[0].changes
    md = io.StringIO()
    render(plan, md, "markdown")
    assert '| ~ artifact version "ckpt:v0" ttl | "none" | "30d" |' in md.getvalue()


def _spec(tmp_path: Path, block: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\ntarget: {entity: a, project: b}\nrules:\n  - name: r\n"
                    f"    match: {{all: true}}\n    artifacts:\n{block}")
    return path


@pytest.mark.parametrize(("block", "expected"), [
    ("      type: model\n      ttl: 30d\n", VersionTTL(30 * DAY)),
    ("      type: model\n      ttl: none\n", VersionTTL(None)),
    ("      type: model\n      ttl: inherit\n", VersionTTL(None, inherited=True)),
])
def test_the_spec_reads_a_ttl(tmp_path: Path, block: str, expected: VersionTTL) -> None:
    """A duration, `none` or `inherit`; the block deletes nothing without a selector."""
    rule = load_spec([_spec(tmp_path, block)]).rules[0].artifacts
    assert rule is not None and rule.ttl == expected and not rule.deletes
    with_selector = load_spec([_spec(tmp_path, block + "      keep_last: 2\n")]).rules[0].artifacts
    assert with_selector is not None and with_selector.deletes


@pytest.mark.parametrize(("block", "message"), [
    ("      type: wandb-history\n      ttl: 30d\n",
     "s.yaml:8:12: rules[0].artifacts.ttl: W&B allows no TTL on artifacts of type 'wandb-history'"),
    ("      type: run_table\n      ttl: 30d\n", "s.yaml:8:12: rules[0].artifacts.ttl: W&B allows no TTL"),
    ("      type: model\n      ttl: 0s\n", "s.yaml:8:12: rules[0].artifacts.ttl: '0s' is not a TTL"),
    ("      type: model\n      ttl: 1.5s\n", "s.yaml:8:12: rules[0].artifacts.ttl: '1.5s' is not a TTL"),
    ("      type: model\n      ttl: soon\n", "s.yaml:8:12: rules[0].artifacts.ttl: 'soon' is not a duration"),
])
def test_a_bad_ttl_is_an_error_naming_file_line_and_field(tmp_path: Path, block: str, message: str) -> None:
    """Types W&B makes itself take no TTL (its docs); a TTL is whole seconds or more."""
    with pytest.raises(SpecError) as caught:
        load_spec([_spec(tmp_path, block)])
    assert message in str(caught.value)
