"""Property tests of the planner: applying a plan's changes by hand and planning again gives
no changes (the contract's idempotence), whatever the live run looks like."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timezone
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reconcile import planner
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    Limits,
    LiveRun,
    Location,
    Match,
    Rule,
    SetBlock,
    Spec,
    Target,
)

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
TARGET = Target("acme", "vision", ConfigWrites.REPLACE)
LEAVES = [("a",), ("b", "x"), ("b", "y"), ("c",)]
TAGS = ["t1", "t2", "t3"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3),
    st.just(float("nan")),
    st.sampled_from(["s", "1"]),
)
live_values = st.one_of(scalars, st.dictionaries(st.sampled_from(["x", "y", "z"]), scalars, max_size=3))
live_maps = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "_wandb"]), live_values, max_size=6)


@st.composite
def section_ops(draw: st.DrawFn) -> tuple[dict[tuple[str, ...], Any], tuple[tuple[str, ...], ...]]:
    """Disjoint set and unset key paths over LEAVES."""
    chosen = draw(st.lists(st.sampled_from(LEAVES), unique=True))
    split = draw(st.integers(0, len(chosen)))
    sets = {path: draw(scalars) for path in chosen[:split]}
    return sets, tuple(chosen[split:])


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    """One rule using every metadata operation (config removals allowed: REPLACE target)."""
    config_set, config_unset = draw(section_ops())
    summary_set, summary_unset = draw(section_ops())
    tags = draw(st.lists(st.sampled_from(TAGS), unique=True))
    split = draw(st.integers(0, len(tags)))
    exact = draw(st.none() | st.lists(st.sampled_from(TAGS), unique=True).map(tuple))
    if exact is not None:
        tags = [t for t in tags[:split] if t in exact] + [t for t in tags[split:] if t not in exact]
        split = min(split, len([t for t in tags if t in exact]))
    rename = ((("d",), ("e",)),) if draw(st.booleans()) else ()
    return Rule(
        name="prop",
        location=Location("spec.yaml", 1, 1),
        target=TARGET,
        match=Match(all=True),
        set=SetBlock(
            config=config_set,
            summary=summary_set,
            tags=exact,
            name=draw(st.none() | st.sampled_from(["{id}-run", "fixed", ""])),
            notes=draw(st.none() | st.sampled_from(["note", ""])),
        ),
        add_tags=tuple(tags[:split]),
        remove_tags=tuple(tags[split:]),
        unset_config=config_unset,
        unset_summary=summary_unset,
        rename_config=rename,
        rename_summary=rename,
    )


def _put(mapping: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = mapping
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _drop(mapping: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = mapping
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def apply_by_hand(run: LiveRun, changes: tuple[Change, ...]) -> LiveRun:
    """What a replacing server holds after the changes are written."""
    config, summary, tags = copy.deepcopy(dict(run.config)), copy.deepcopy(dict(run.summary)), set(run.tags)
    fields: dict[str, Any] = {}
    for change in changes:
        if change.kind in (ChangeKind.CONFIG, ChangeKind.SUMMARY):
            target = config if change.kind is ChangeKind.CONFIG else summary
            if change.op is ChangeOp.UNSET:
                _drop(target, change.key)
            elif change.op is ChangeOp.RENAME:
                assert change.from_key is not None
                _drop(target, change.from_key)
                _put(target, change.key, change.after)
            else:
                _put(target, change.key, change.after)
        elif change.kind is ChangeKind.TAGS:
            (tags.add if change.op is ChangeOp.ADD else tags.discard)(change.key[0])
        else:
            fields[change.kind.value] = change.after
    return dataclasses.replace(run, config=config, summary=summary, tags=tuple(sorted(tags)), **fields)


@settings(max_examples=150, deadline=None)
@given(
    rule=rules(),
    config=live_maps,
    summary=live_maps,
    tags=st.lists(st.sampled_from([*TAGS, "other"]), unique=True),
    name=st.none() | st.sampled_from(["fixed", "x"]),
)
def test_plan_applied_then_replanned_has_no_changes(
    rule: Rule, config: dict[str, Any], summary: dict[str, Any], tags: list[str], name: str | None
) -> None:
    """Applying every planned change to the run and planning again plans nothing."""
    spec = Spec(1, TARGET, Limits(), (rule,), "d", ())
    live = LiveRun("acme", "vision", "r1", "s1", name, "finished", NOW, config, summary, tuple(tags))
    first = planner.plan(spec, [live], now=NOW, base_url="u")
    assume(not first.has_errors)
    changes = first.runs[0].changes if first.runs else ()
    after = apply_by_hand(live, changes)
    again = planner.plan(spec, [after], now=NOW, base_url="u")
    assert again.runs == (), again.runs
