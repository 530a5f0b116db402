"""Property tests of the planner against an independent model of the contract.

For a generated spec (one to three rules, replace or merge target, config/summary set, unset and
rename, tags, text templates, files rules) and a generated run, ``model`` says — written from the
contract, sharing no code with the planner — which changes the plan must hold and which fields must
be reported as errors. Invalid specs are generated on purpose (rules that disagree, removals on a
merging server, templates naming missing keys, a leaf under a scalar, renames onto a different value,
delete-everything rules), and nothing is discarded: every example is checked.

Then the contract's idempotence: writing the planned changes as the server would (merging or
replacing) and planning again plans no change.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from reconcile import planner
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    FilesRule,
    Limits,
    LiveFile,
    LiveRun,
    Location,
    Match,
    Plan,
    Rule,
    SetBlock,
    Spec,
    Target,
)

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
LEAVES = [("a",), ("b", "x"), ("b", "y"), ("c",)]
RENAME = (("d",), ("e",))
TAGS = ["t1", "t2", "t3"]
FILE_NAMES = ["a.ckpt", "best.ckpt", "ckpt/x.pt", "ckpt/keep1.pt", "model.pt", "output.log"]
SYSTEM = {"output.log"}  # the one W&B system file in the pool
MISSING = object()  # "no such key" in the model

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.0, 1.0, 2.5, -1.0]),
    st.just(float("nan")), st.sampled_from(["s", "1"]),
)
live_values = st.one_of(scalars, st.dictionaries(st.sampled_from(["x", "y", "z"]), scalars, max_size=3))
live_keys = st.sampled_from(["a", "b", "c", "d", "e", "k", "_wandb"])
live_maps = st.dictionaries(live_keys, live_values, max_size=6)
TEMPLATES = ["{id}-run", "fixed", "", "{config.c}", "{summary.a:.1f}", "x", "{name}"]
# Templates that read config and summary keys the rules write, but no text field a rule writes (a
# template reading a text field the same spec sets renders its value before the plan: README, "Templates"):
SECTION_TEMPLATES = ["{id}-run", "fixed", "", "{config.c}", "{summary.a:.1f}", "x", "{id}"]


@st.composite
def section_ops(draw: st.DrawFn) -> tuple[dict[tuple[str, ...], Any], tuple[tuple[str, ...], ...]]:
    """Disjoint set and unset key paths over LEAVES (different rules may still collide)."""
    chosen = draw(st.lists(st.sampled_from(LEAVES), unique=True, max_size=3))
    split = draw(st.integers(0, len(chosen)))
    return {path: draw(scalars) for path in chosen[:split]}, tuple(chosen[split:])


@st.composite
def files_rules(draw: st.DrawFn) -> FilesRule | None:
    """No files rule, or one over the FILE_NAMES pool."""
    if not draw(st.booleans()):
        return None
    return FilesRule(
        delete=tuple(draw(st.lists(st.sampled_from(["*.ckpt", "ckpt/**", "**", "*.pt", "**/*.pt"]),
                                   min_size=1, max_size=2, unique=True))),
        keep=tuple(draw(st.lists(st.sampled_from(["best.ckpt", "ckpt/keep*", "*.log"]), max_size=2,
                                 unique=True))),
        keep_last=draw(st.none() | st.integers(0, 2)),
        older_than=draw(st.none() | st.sampled_from([timedelta(days=10), timedelta(days=40)])),
        larger_than=draw(st.none() | st.just(500)),
        allow_system_files=draw(st.booleans()),
        allow_delete_all=draw(st.booleans()),
    )


@st.composite
def rules(draw: st.DrawFn, name: str, target: Target, texts: list[str]) -> Rule:
    """One rule using every operation; nothing keeps it consistent with the other rules."""
    config_set, config_unset = draw(section_ops())
    summary_set, summary_unset = draw(section_ops())
    tag_templates = [*TAGS, texts[3]]
    templates = st.sampled_from(texts)
    exact = draw(st.none() | st.lists(st.sampled_from(tag_templates), unique=True, max_size=2).map(tuple))
    return Rule(
        name=name,
        location=Location("spec.yaml", 1, 1),
        target=target,
        match=Match(all=True),
        set=SetBlock(
            config=config_set, summary=summary_set, tags=exact,
            name=draw(st.none() | templates), notes=draw(st.none() | templates),
            group=draw(st.none() | st.sampled_from(["g", texts[4]])), job_type=None,
        ),
        add_tags=tuple(draw(st.lists(st.sampled_from(tag_templates), unique=True, max_size=2))),
        remove_tags=tuple(draw(st.lists(st.sampled_from(tag_templates), unique=True, max_size=2))),
        unset_config=config_unset,
        unset_summary=summary_unset,
        rename_config=(RENAME,) if draw(st.booleans()) else (),
        rename_summary=(RENAME,) if draw(st.booleans()) else (),
        files=draw(files_rules()),
    )


@st.composite
def specs(draw: st.DrawFn, texts: list[str] = TEMPLATES) -> Spec:
    """One to three rules (mostly one) on one target, merging or replacing; templates from ``texts``."""
    mode = draw(st.sampled_from([ConfigWrites.MERGE, ConfigWrites.REPLACE]))
    target = Target("acme", "vision", mode)
    count = draw(st.sampled_from([1, 1, 2, 3]))
    chosen = tuple(draw(rules(f"r{i}", target, texts)) for i in range(count))
    return Spec(1, target, Limits(), chosen, "d", ())


@st.composite
def live_runs(draw: st.DrawFn) -> LiveRun:
    """A finished run with random config, summary, tags, texts and files."""
    names = draw(st.lists(st.sampled_from(FILE_NAMES), unique=True))
    files = tuple(
        LiveFile(f"id-{n}", n, draw(st.sampled_from([100, 1000])),
                 NOW - timedelta(days=draw(st.sampled_from([1, 20, 60]))))
        for n in names
    )
    return LiveRun(
        "acme", "vision", "r1", "s1", draw(st.none() | st.sampled_from(["fixed", "x", ""])), "finished", NOW,
        draw(live_maps), draw(live_maps),
        tuple(draw(st.lists(st.sampled_from([*TAGS, "other"]), unique=True))),
        group=draw(st.none() | st.just("g")), notes=draw(st.none() | st.just("x")), files=files,
    )


# --------------------------------------------------------------------------- the model


def equal(a: Any, b: Any) -> bool:
    """Equality as W&B stores JSON: 1 == 1.0, true is not 1, NaN is NaN, maps and lists by content."""
    if a is MISSING or b is MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def get(mapping: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path``, or MISSING (also when a step is not a mapping)."""
    node: Any = mapping
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def fill(template: str, run: LiveRun) -> str | None:
    """The template's text for the run; None when a field is missing, null or not a single value."""
    def one(match: re.Match[str]) -> str:
        field, _, spec = match.group(1).partition(":")
        head, _, rest = field.partition(".")
        value = get(run.config if head == "config" else run.summary, tuple(rest.split("."))) \
            if head in ("config", "summary") else getattr(run, head)
        if value is MISSING or value is None or isinstance(value, (dict, list)):
            raise LookupError(field)
        return format(value, spec)

    try:
        return re.sub(r"\{([^}]*)\}", one, template)
    except (LookupError, ValueError, TypeError):
        return None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` crosses directories (and `**/` may match none), `*` stays within one."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def matches_any(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether ``name`` matches one of the globs."""
    return any(glob_regex(p).match(name) for p in patterns)


@dataclasses.dataclass
class Expected:
    """What the plan must say about the run: its changes and the subjects of its errors."""

    changes: set[tuple[str, str, tuple[str, ...], Any]]
    errors: set[str]  # a text each error message must mention
    plan_errors: set[str]  # plan-level errors (delete-all guard): the rule names


def model(spec: Spec, run: LiveRun) -> Expected:  # noqa: PLR0915 - one contract clause per block
    """The contract, applied to one run."""
    changes: set[tuple[str, str, tuple[str, ...], Any]] = set()
    errors: set[str] = set()
    merge = spec.target.config_writes is ConfigWrites.MERGE
    writes: list[Change] = []  # the config and summary changes, to render templates after them

    for section in ("config", "summary"):
        live = run.config if section == "config" else run.summary
        wants: dict[tuple[str, ...], list[Any]] = {}
        moves: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for rule in spec.rules:
            for path, value in getattr(rule.set, section).items():
                wants.setdefault(path, []).append(value)
            for path in getattr(rule, f"unset_{section}"):
                wants.setdefault(path, []).append(MISSING)
            for old, new in getattr(rule, f"rename_{section}"):
                old_value, new_value = get(live, old), get(live, new)
                if old_value is MISSING or (new_value is not MISSING and equal(old_value, new_value)):
                    wants.setdefault(old, []).append(MISSING)  # done, or only the old copy left to drop
                elif new_value is MISSING:
                    wants.setdefault(old, []).append(MISSING)
                    wants.setdefault(new, []).append(old_value)
                    moves.append((old, new))
                else:
                    errors.add(f"cannot rename {section}.{'.'.join(old)}")
        section_changes: dict[tuple[str, ...], tuple[str, Any]] = {}
        for path, values in wants.items():
            dotted = ".".join((section, *path))
            if any(not equal(v, values[0]) for v in values):
                errors.add(f"on {dotted} of")
                continue
            now = get(live, path)
            if values[0] is MISSING:
                if now is not MISSING:
                    section_changes[path] = ("unset", None)
            elif now is MISSING or not equal(now, values[0]):
                section_changes[path] = ("set", values[0])
        for old, new in moves:
            if section_changes.get(old, ("",))[0] == "unset" and section_changes.get(new, ("",))[0] == "set":
                del section_changes[old]
                section_changes[new] = ("rename", section_changes[new][1])
        for path, (op, value) in section_changes.items():
            parent = get(live, path[:1]) if len(path) > 1 else MISSING
            if op != "unset" and parent is not MISSING and not isinstance(parent, dict):
                errors.add(f"cannot set {section}.{'.'.join(path)}")
                continue
            if section == "config" and merge and op in ("unset", "rename"):
                errors.add("deep-merges config")
                continue
            changes.add((section, op, path, frozen(value)))
            renamed_from = next((old for old, new in moves if new == path), None) if op == "rename" else None
            writes.append(Change(ChangeKind(section), ChangeOp(op), path, None, value, ("model",),
                                 from_key=renamed_from))

    # Templates read the run as it will be after the plan's config and summary changes.
    post = apply_by_hand(run, tuple(writes))

    for field in ("name", "notes", "group"):
        wanted = set()
        for rule in spec.rules:
            text = getattr(rule.set, field)
            if text is None:
                continue
            value = fill(text, post)
            if value is None:
                errors.add(f"{field} template")
            else:
                wanted.add(value)
        if len(wanted) > 1:
            errors.add(f"on {field} of")
        elif wanted and (getattr(run, field) or "") != next(iter(wanted)):
            changes.add((field, "set", (), frozen(next(iter(wanted)))))

    present: set[str] = set()  # tags some rule wants (exact set or add_tags)
    named_for_removal: set[str] = set()
    exact_sets: list[set[str]] = []
    for rule in spec.rules:
        wanted = [fill(x, post) for x in (*(rule.set.tags or ()), *rule.add_tags)]
        dropped = [fill(x, post) for x in rule.remove_tags]
        if None in wanted or None in dropped:
            errors.add("tags template")
        present |= {t for t in wanted if t is not None}
        named_for_removal |= {t for t in dropped if t is not None}
        if rule.set.tags is not None:
            exact_sets.append({t for t in (fill(x, post) for x in rule.set.tags) if t is not None})

    def removed(tag: str) -> bool:
        return tag in named_for_removal or any(tag not in exact for exact in exact_sets)

    for tag in present:
        if removed(tag):
            errors.add(f"tag {tag!r}")
    changes |= {("tags", "add", (t,), frozen(t)) for t in present - set(run.tags) if not removed(t)}
    changes |= {("tags", "remove", (t,), frozen(None)) for t in set(run.tags) - present if removed(t)}

    plan_errors: set[str] = set()
    assert run.files is not None
    deleted: dict[str, LiveFile] = {}
    keeps = [g for rule in spec.rules if rule.files is not None for g in rule.files.keep]
    for rule in spec.rules:
        files = rule.files
        if files is None:
            continue
        chosen = [
            f for f in run.files
            if matches_any(f.name, files.delete) and not matches_any(f.name, keeps)
            and (files.allow_system_files or f.name not in SYSTEM)
            and (files.older_than is None or f.updated_at < NOW - files.older_than)
            and (files.larger_than is None or f.size > files.larger_than)
        ]
        chosen.sort(key=lambda f: (-f.updated_at.timestamp(), f.name))  # newest first
        chosen = chosen[files.keep_last or 0:]
        deletable = [f for f in run.files if files.allow_system_files or f.name not in SYSTEM]
        if chosen and len(chosen) == len(deletable) and not files.allow_delete_all:
            plan_errors.add(rule.name)
        deleted.update({f.name: f for f in chosen})
    changes |= {("file", "delete", (name,), frozen(None)) for name in deleted}
    return Expected(changes, errors, plan_errors)


def observed(plan: Plan) -> tuple[set[tuple[str, str, tuple[str, ...], Any]], tuple[str, ...]]:
    """The plan's changes in the model's terms, and its run errors."""
    if not plan.runs:
        return set(), ()
    (run,) = plan.runs
    out = set()
    for c in run.changes:
        value = None if c.op in (ChangeOp.UNSET, ChangeOp.DELETE, ChangeOp.REMOVE) else c.after
        out.add((c.kind.value, c.op.value, c.key, frozen(value)))
    return out, run.errors


def frozen(value: Any) -> Any:
    """A hashable form in which values W&B stores alike are equal (1 and 1.0, NaN and NaN), and
    true is not 1."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("nan",) if math.isnan(value) else ("num", float(value))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((k, frozen(v)) for k, v in value.items())))
    return ("other", repr(value))


@settings(max_examples=200, deadline=None)
@given(spec=specs(), run=live_runs())
def test_plan_matches_the_model(spec: Spec, run: LiveRun) -> None:
    """The planner's changes are exactly the model's; every predicted error is reported, and every
    reported error is one the model predicts; the delete-all guard fires exactly when predicted."""
    expected = model(spec, run)
    plan = planner.plan(spec, [run], now=NOW, base_url="u")
    changes, errors = observed(plan)
    event(f"run errors: {bool(expected.errors)}, plan errors: {bool(expected.plan_errors)}, "
          f"merge: {spec.target.config_writes.value}, files: {any(c[0] == 'file' for c in changes)}")
    assert changes == expected.changes
    for subject in expected.errors:
        assert any(subject in e for e in errors), (subject, errors)
    for error in errors:
        assert any(subject in error for subject in expected.errors), (error, expected.errors)
    guard = {name for name in (r.name for r in spec.rules)
             if any(f"rule {name!r} would delete every file" in e for e in plan.errors)}
    assert guard == expected.plan_errors, plan.errors
    assert plan.has_errors == bool(expected.errors or expected.plan_errors)


# --------------------------------------------------------------------------- idempotence


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
    """What the server holds after the changes are written (leaf writes; removals, renames, files)."""
    config, summary, tags = copy.deepcopy(dict(run.config)), copy.deepcopy(dict(run.summary)), set(run.tags)
    fields: dict[str, Any] = {}
    gone: set[str] = set()
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
        elif change.kind is ChangeKind.FILE:
            gone.add(change.key[0])
        else:
            fields[change.kind.value] = change.after
    files = tuple(f for f in run.files or () if f.name not in gone)
    return dataclasses.replace(run, config=config, summary=summary, tags=tuple(sorted(tags)), files=files,
                               **fields)


@settings(max_examples=100, deadline=None)
@given(spec=specs(SECTION_TEMPLATES), run=live_runs())
def test_plan_applied_then_replanned_has_no_changes(spec: Spec, run: LiveRun) -> None:
    """Writing every planned change and planning again plans no change, also when a template reads a
    config or summary key the same spec sets, renames or unsets."""
    first = planner.plan(spec, [run], now=NOW, base_url="u")
    changes = first.runs[0].changes if first.runs else ()
    after = apply_by_hand(run, changes)
    again = planner.plan(spec, [after], now=NOW, base_url="u")
    assert all(not r.changes for r in again.runs), again.runs


def test_template_reading_a_key_the_plan_sets_converges_in_one_apply() -> None:
    """group: "{config.a}" with set config.a: 2 on a run where a is 1: one apply should be enough."""
    target = Target("acme", "vision", ConfigWrites.MERGE)
    rule = Rule("r0", Location("s.yaml", 1, 1), target, Match(all=True),
                set=SetBlock(config={("a",): 2}, group="{config.a}"))
    spec = Spec(1, target, Limits(), (rule,), "d", ())
    run = LiveRun("acme", "vision", "r1", "s1", None, "finished", NOW, {"a": 1}, {}, (), files=())
    first = planner.plan(spec, [run], now=NOW, base_url="u")
    again = planner.plan(spec, [apply_by_hand(run, first.runs[0].changes)], now=NOW, base_url="u")
    assert again.runs == ()
