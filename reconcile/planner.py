"""The pure planner: ``(spec, live runs) -> Plan``, with no network and no output (its only I/O is the
spool file that holds the runs it has planned).

Runs stream through ``Planner.add`` one at a time and only runs with changes or errors
are kept, each written to a spool on disk once it is planned (``reconcile.spool``), so memory
stays flat however many runs a project has and however many of them change. This is the only
module that uses deepdiff (for config/summary equality); no deepdiff object leaves it.

Semantics (``../shared/CONTRACT.md``, "Spec format" and "Plan"): only the keys and
fields a rule names are managed; a change appears only where live differs from desired;
two rules wanting different values for one field are an error for that run; config
removal is refused on merging servers (wandb/wandb#11055); running and pending runs are
left alone unless a rule's ``match.state`` names that state (wandb/wandb#4377).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deepdiff import DeepDiff
from humanfriendly.text import pluralize
from natsort import natsort_keygen

from reconcile import artifact_retention, retention, selection, templates
from reconcile.errors import PlanError
from reconcile.fingerprint import ABSENT, FieldRef, field_digests, fingerprint, lookup
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    KeptArtifact,
    KeyPath,
    LiveFile,
    LiveRun,
    Plan,
    Rule,
    RunPlan,
    Spec,
    Totals,
    UnlessTop,
)
from reconcile.spec.globs import is_literal
from reconcile.spool import RunSpool
from reconcile.trees import apply_changes

LIVE_STATES = ("running", "pending", "preempting")
"""States whose live process rewrites config and summary when it finishes (wandb/wandb#4377); a
preempting run's process is still alive and resumes later."""

_KIND_ORDER = {kind: i for i, kind in enumerate(ChangeKind)}
_natural = natsort_keygen()  # artifact versions in a run's block: model:v2 before model:v10
_OP_ORDER = {op: i for i, op in enumerate(ChangeOp)}
_TEXT_FIELDS = (
    (ChangeKind.NAME, "name", "name"),
    (ChangeKind.NOTES, "notes", "notes"),
    (ChangeKind.GROUP, "group", "group"),
    (ChangeKind.JOB_TYPE, "job_type", "job_type"),
)


# --------------------------------------------------------------------------- value equality


def _comparable(value: Any) -> Any:
    """Bools tagged so they never equal 0/1 (JSON true is not 1); tuples as lists."""
    if isinstance(value, bool):
        return f"\x00bool:{value}"
    if isinstance(value, Mapping):
        return {str(k): _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Whether two unwrapped config/summary values are equal as W&B would store them.

    ``1 == 1.0`` (JSON encoders disagree on whether 1.0 keeps its point), ``True != 1``,
    NaN equals NaN (a logged NaN stays NaN), and a missing key equals only a missing key.
    """
    if a is ABSENT or b is ABSENT:
        return a is b
    if type(a) is type(b) and isinstance(a, str | int | type(None)):
        return bool(a == b)  # the common case, ~100x cheaper than DeepDiff (bool is exact-typed here)
    if type(a) is float and type(b) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    diff = DeepDiff(
        _comparable(a), _comparable(b), ignore_type_in_groups=[(int, float)], ignore_nan_inequality=True
    )
    return not diff



def _dotted(section: str, path: KeyPath) -> str:
    return ".".join((section, *path))


def _names(rules: Iterable[str]) -> str:
    return " and ".join(repr(r) for r in dict.fromkeys(rules))


# --------------------------------------------------------------------------- per-run planning


@dataclass(slots=True)
class _Want:
    """One rule's desired state for one key: a value, or ABSENT."""

    value: Any
    rule: str
    rename: tuple[KeyPath, KeyPath] | None = None


@dataclass(slots=True)
class _RunWork:
    """What planning one run produced, before file decisions that wait for ``finish``."""

    run: LiveRun
    rules: list[Rule]  # the rules that may change the run
    keepers: list[Rule]  # every rule matching the run: their keep globs protect its files
    changes: list[Change] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    fields: set[FieldRef] = dataclasses.field(default_factory=lambda: {("state",)})
    # The config and summary changes, planned before the text fields and tags. Templates render
    # against the run with them made, so a template reading a key the same spec sets converges in
    # one apply (made on first use).
    sections: list[Change] = dataclasses.field(default_factory=list)
    _rendered: LiveRun | None = None

    def error(self, message: str) -> None:
        self.errors.append(message)

    def rendered(self) -> LiveRun:
        """The run as it will be after this plan's config and summary changes."""
        if self._rendered is None:
            config = [c for c in self.sections if c.kind is ChangeKind.CONFIG]
            summary = [c for c in self.sections if c.kind is ChangeKind.SUMMARY]
            run = self.run
            if config or summary:
                run = dataclasses.replace(
                    run, config=apply_changes(run.config, config) if config else run.config,
                    summary=apply_changes(run.summary, summary) if summary else run.summary)
            self._rendered = run
        return self._rendered


def _plan_text_fields(work: _RunWork) -> None:
    run = work.run
    for kind, attr, live_attr in _TEXT_FIELDS:
        wants: dict[str, list[str]] = {}
        for rule in work.rules:
            template = getattr(rule.set, attr)
            if template is None:
                continue
            value = _render(work, rule, attr, template)
            if value is not None:
                wants.setdefault(value, []).append(rule.name)
        if not wants:
            continue
        if len(wants) > 1:
            (v1, r1), (v2, r2) = list(wants.items())[:2]
            work.error(f"rules {_names([*r1, *r2])} disagree on {attr} of {run.path}: {v1!r} vs {v2!r}")
            continue
        [(value, rules)] = wants.items()
        live = getattr(run, live_attr)
        # W&B clears these fields with "" and may read them back as null: treat the two alike.
        if (live or "") == value:
            continue
        work.fields.add((attr,))
        work.changes.append(Change(kind, ChangeOp.SET, (), live, value, tuple(dict.fromkeys(rules))))


def _render(work: _RunWork, rule: Rule, what: str, template: str) -> str | None:
    """Render a template against the run; an error for the run (never "") if it cannot."""
    try:
        for fld in templates.fields(template):
            if fld.source in ("config", "summary"):
                work.fields.add((fld.source, *fld.path))
            elif fld.source != "id":
                work.fields.add((fld.source,))
        return templates.render(template, work.rendered())
    except templates.TemplateError as exc:
        work.error(f"rule {rule.name!r}: {what} template {template!r} for {work.run.path}: {exc}")
        return None


_TagWishes = tuple[dict[str, list[str]], dict[str, list[str]], list[tuple[str, frozenset[str]]]]


def _tag_wishes(work: _RunWork) -> _TagWishes:
    """Per tag, the rules that want it present and the rules that remove it; the exact sets."""
    present: dict[str, list[str]] = {}
    absent: dict[str, list[str]] = {}
    exact: list[tuple[str, frozenset[str]]] = []
    for rule in work.rules:
        wanted: list[str | None] = []
        if rule.set.tags is not None:
            exact_tags = [_render(work, rule, "tags", t) for t in rule.set.tags]
            exact.append((rule.name, frozenset(t for t in exact_tags if t is not None)))
            wanted.extend(exact_tags)
        wanted.extend(_render(work, rule, "add_tags", t) for t in rule.add_tags)
        for tag in wanted:
            if tag is not None:
                present.setdefault(tag, []).append(rule.name)
        for template in rule.remove_tags:
            tag = _render(work, rule, "remove_tags", template)
            if tag is not None:
                absent.setdefault(tag, []).append(rule.name)
    return present, absent, exact


def _plan_tags(work: _RunWork) -> None:
    """Per-tag add/remove changes from exact sets, add_tags and remove_tags."""
    run = work.run
    present, absent, exact = _tag_wishes(work)

    def removers(tag: str) -> list[str]:
        return absent.get(tag, []) + [name for name, wanted in exact if tag not in wanted]

    conflicted: set[str] = set()
    for tag, adders in sorted(present.items()):
        if removers(tag):
            conflicted.add(tag)
            work.error(
                f"rules {_names([*adders, *removers(tag)])} disagree on tag {tag!r} of {run.path}: "
                f"{_names(adders)} add it, {_names(removers(tag))} remove it"
            )
    live = set(run.tags)
    for tag, adders in present.items():
        if tag not in live and tag not in conflicted:
            rules = tuple(dict.fromkeys(adders))
            work.changes.append(Change(ChangeKind.TAGS, ChangeOp.ADD, (tag,), None, tag, rules))
    for tag in live - conflicted:
        if removers(tag):
            rules = tuple(dict.fromkeys(removers(tag)))
            work.changes.append(Change(ChangeKind.TAGS, ChangeOp.REMOVE, (tag,), tag, None, rules))
    if any(c.kind is ChangeKind.TAGS for c in work.changes):
        work.fields.add(("tags",))


def _section_wishes(work: _RunWork, kind: ChangeKind) -> dict[KeyPath, list[_Want]]:
    """Every rule's desired state per key path of config or summary (renames resolved on the run)."""
    section = kind.value
    live_map = work.run.config if kind is ChangeKind.CONFIG else work.run.summary
    wants: dict[KeyPath, list[_Want]] = {}
    for rule in work.rules:
        config = kind is ChangeKind.CONFIG
        for path, value in (rule.set.config if config else rule.set.summary).items():
            wants.setdefault(path, []).append(_Want(value, rule.name))
        for path in rule.unset_config if config else rule.unset_summary:
            wants.setdefault(path, []).append(_Want(ABSENT, rule.name))
        for old, new in rule.rename_config if config else rule.rename_summary:
            old_value, new_value = lookup(live_map, old), lookup(live_map, new)
            if old_value is ABSENT or (new_value is not ABSENT and same(old_value, new_value)):
                # Done, nothing to move, or only the old copy left to drop. The old key is
                # still claimed so a rule that sets it is reported instead of flip-flopping.
                wants.setdefault(old, []).append(_Want(ABSENT, rule.name))
                if old_value is not ABSENT:
                    # Dropping the old copy is safe only while the new key still holds the value.
                    work.fields.add((section, *new))
            elif new_value is ABSENT:
                wants.setdefault(new, []).append(_Want(old_value, rule.name, (old, new)))
                wants.setdefault(old, []).append(_Want(ABSENT, rule.name, (old, new)))
            else:
                work.fields.update({(section, *old), (section, *new)})
                work.error(
                    f"rule {rule.name!r}: cannot rename {_dotted(section, old)} to {_dotted(section, new)} "
                    f"on {work.run.path}: both exist with different values ({old_value!r} vs {new_value!r}) "
                    f"and the rename would destroy {_dotted(section, new)}; remove one of them first"
                )
    return wants


def _resolve(work: _RunWork, section: str, wants: Mapping[KeyPath, list[_Want]]) -> dict[KeyPath, Any]:
    """One desired state per key path; disagreeing rules are an error for the run."""
    desired: dict[KeyPath, Any] = {}
    for path, path_wants in wants.items():
        first = path_wants[0]
        other = next((w for w in path_wants[1:] if not same(w.value, first.value)), None)
        if other is None:
            desired[path] = first.value
            continue
        work.fields.add((section, *path))
        work.error(
            f"rules {_names([first.rule, other.rule])} disagree on {_dotted(section, path)} of "
            f"{work.run.path}: {_show(first.value)} vs {_show(other.value)}"
        )
    _drop_overlaps(work, section, desired, wants)
    return desired


def _section_changes(
    kind: ChangeKind, live_map: Mapping[str, Any], desired: Mapping[KeyPath, Any],
    wants: Mapping[KeyPath, list[_Want]],
) -> dict[KeyPath, Change]:
    """The changes that bring ``live_map`` to ``desired``; a two-halved rename becomes one RENAME."""
    changes: dict[KeyPath, Change] = {}
    for path, value in desired.items():
        live = lookup(live_map, path)
        rules = tuple(dict.fromkeys(w.rule for w in wants[path]))
        if value is ABSENT:
            if live is not ABSENT:
                changes[path] = Change(kind, ChangeOp.UNSET, path, live, None, rules)
        elif live is ABSENT:
            changes[path] = Change(kind, ChangeOp.SET, path, None, value, rules, created=True)
        elif not same(live, value):
            changes[path] = Change(kind, ChangeOp.SET, path, live, value, rules)
    renames = {w.rename for path_wants in wants.values() for w in path_wants if w.rename is not None}
    for old, new in sorted(renames):
        if old in changes and new in changes and changes[new].op is ChangeOp.SET:
            rules = tuple(dict.fromkeys((*changes[new].rules, *changes[old].rules)))
            value = changes[new].after
            del changes[old]
            changes[new] = Change(kind, ChangeOp.RENAME, new, value, value, rules, from_key=old)
    return changes


def _plan_section(work: _RunWork, kind: ChangeKind) -> None:
    """Config or summary: set, unset and rename of the named keys only."""
    section = kind.value
    wants = _section_wishes(work, kind)
    desired = _resolve(work, section, wants)
    live_map = work.run.config if kind is ChangeKind.CONFIG else work.run.summary
    for path, change in _section_changes(kind, live_map, desired, wants).items():
        if change.op in (ChangeOp.SET, ChangeOp.RENAME) and (blocker := _scalar_parent(live_map, path)):
            work.fields.add((section, *blocker))
            work.error(
                f"rule {_names(change.rules)}: cannot set {_dotted(section, path)} on {work.run.path}: "
                f"{_dotted(section, blocker)} is {lookup(live_map, blocker)!r}, not a mapping, and would be "
                f"replaced; set {_dotted(section, blocker)} itself if that is meant"
            )
            continue
        keeps_keys = change.op is ChangeOp.SET and _merge_keeps(change.before, change.after)
        if kind is ChangeKind.CONFIG and keeps_keys:
            merging = [name for name in change.rules if not _replaces(_rule_named(work, name))]
            if merging:
                work.fields.add((section, *path))
                work.error(_merge_removal_error(merging, work.run, path, ChangeOp.UNSET,
                                                what="replace the mapping (which removes keys of)"))
                continue
        if kind is ChangeKind.CONFIG and change.op in (ChangeOp.UNSET, ChangeOp.RENAME):
            removed = change.from_key if change.from_key is not None else path
            removers = {w.rule for w in wants[removed] if w.value is ABSENT}
            merging = [r.name for r in work.rules if r.name in removers and not _replaces(r)]
            if merging:
                # Never promise a removal the server will undo (wandb/wandb#11055).
                work.fields.add((section, *removed))
                work.error(_merge_removal_error(merging, work.run, removed, change.op))
                continue
        work.fields.add((section, *path))
        if change.from_key is not None:
            work.fields.add((section, *change.from_key))
        work.changes.append(change)


def _show(value: Any) -> str:
    return "unset" if value is ABSENT else repr(value)


def _drop_overlaps(
    work: _RunWork, section: str, desired: dict[KeyPath, Any], wants: Mapping[KeyPath, list[_Want]]
) -> None:
    """Report and drop two keys where one contains the other and their wishes disagree."""
    for outer in sorted(desired, key=len):
        for inner in list(desired):
            if outer not in desired or len(inner) <= len(outer) or inner[: len(outer)] != outer:
                continue
            outer_value = desired[outer]
            # An unset or scalar outer key implies the inner key is absent.
            implied = lookup(outer_value, inner[len(outer):]) if isinstance(outer_value, Mapping) else ABSENT
            if same(implied, desired[inner]):
                continue
            work.error(
                f"rules {_names([wants[outer][0].rule, wants[inner][0].rule])} disagree on "
                f"{_dotted(section, inner)} of {work.run.path}: {_dotted(section, outer)} is "
                f"{_show(outer_value)} but {_dotted(section, inner)} is {_show(desired[inner])}"
            )
            work.fields.update({(section, *outer), (section, *inner)})
            del desired[outer], desired[inner]


def _replaces(rule: Rule) -> bool:
    return rule.target.config_writes is ConfigWrites.REPLACE


def _scalar_parent(live_map: Mapping[str, Any], path: KeyPath) -> KeyPath | None:
    """The first proper prefix of ``path`` that holds a live non-mapping value, if any."""
    for end in range(1, len(path)):
        value = lookup(live_map, path[:end])
        if value is ABSENT:
            return None
        if not isinstance(value, Mapping):
            return path[:end]
    return None


def _merge_keeps(before: Any, after: Any) -> bool:
    """Whether deep-merging mapping ``after`` into mapping ``before`` keeps keys ``after`` lacks."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return False
    return any(key not in after or _merge_keeps(value, after[key]) for key, value in before.items())


def _rule_named(work: _RunWork, name: str) -> Rule:
    return next(r for r in work.rules if r.name == name)


def _match_fields(rule: Rule) -> set[FieldRef]:
    """The live fields a rule's match reads: if they change, the run may no longer match."""
    m = rule.match
    fields: set[FieldRef] = {("state",)}
    for present, ref in ((m.name, ("name",)), (m.tags, ("tags",)), (m.group, ("group",)),
                         (m.job_type, ("job_type",))):
        if present is not None:
            fields.add(ref)
    if m.filters is not None:
        fields.update(_filter_fields(m.filters))
    return fields


_FILTER_FIELDS: dict[str, FieldRef] = {
    "tags": ("tags",), "displayName": ("name",), "display_name": ("name",), "group": ("group",),
    "jobType": ("job_type",), "state": ("state",),
    "createdAt": ("created_at",), "created_at": ("created_at",),
}


def _filter_fields(flt: Any) -> set[FieldRef]:
    """The fields a W&B filter reads (``config.X`` -> the config key path, and so on)."""
    out: set[FieldRef] = set()
    if isinstance(flt, list):
        for item in flt:
            out |= _filter_fields(item)
    elif isinstance(flt, Mapping):
        for key, value in flt.items():
            if key.startswith("$"):
                out |= _filter_fields(value)
            elif key in _FILTER_FIELDS:
                out.add(_FILTER_FIELDS[key])
            elif key.startswith(("config.", "summary_metrics.")):
                head, _, rest = key.partition(".")
                parts = tuple(rest.split("."))
                if head == "config" and parts[-1] == "value" and len(parts) > 1:
                    parts = parts[:-1]
                out.add(("config" if head == "config" else "summary", *parts))
    return out


def _merge_removal_error(rules: list[str] | tuple[str, ...], run: LiveRun, key: KeyPath, op: ChangeOp,
                         what: str | None = None) -> str:
    what = what or ("unset" if op is ChangeOp.UNSET else "rename (which removes the old key)")
    dotted = ".".join(key)
    return (
        f"rule {_names(rules)}: cannot {what} config.{dotted} on {run.path}: W&B deep-merges config "
        f"writes (wandb/wandb#11055), so a removed key comes back. Set it to null instead "
        f"(set: {{config: {{{dotted}: null}}}}), or declare `config_writes: replace` on the target "
        f"if this server replaces config"
    )


# --------------------------------------------------------------------------- the planner


@dataclass(slots=True)
class _Pending:
    """A run whose deletions wait for ``unless_top`` rankings or for its artifact collections."""

    plan: RunPlan
    decisions: dict[str, retention.Decision]  # rule name -> what its files block decides


Targets = Mapping[tuple[str, str], frozenset[str] | None]
"""``--target``: per (entity, project), the run ids to plan, or None for every run of the project."""


class Planner:
    """Streaming planner: ``add`` each live run once read, then ``finish`` for the Plan.

    With ``targets`` only the runs they name are planned; every other run added still counts in
    the rankings of the rules that match it (``unless_top``, an artifact collection's versions):
    a ranking is over the rule's whole match, whatever ``--target`` narrows the changes to.
    """

    def __init__(self, spec: Spec, *, now: datetime, base_url: str, targets: Targets | None = None) -> None:
        self.spec = spec
        self.targets = targets
        self.now = now
        self.base_url = base_url
        self.runs_read = 0
        self.skipped_running = 0
        self._errors: list[str] = []
        self._imports = RunSpool()  # the runs imports plan, on disk until finish sets them against the rules'
        self._rule_order = {rule.name: i for i, rule in enumerate(spec.rules)}
        self._projects: dict[tuple[str, str], list[Rule]] = {}
        for key, rules in selection.targets(spec).items():
            usable = []
            for rule in rules:
                try:
                    selection.validate_filters(rule)
                except PlanError as exc:
                    self._errors.append(str(exc))
                    continue
                usable.append(rule)
            self._projects[key] = usable
        self._seen: dict[tuple[str, str], set[str]] = {}
        self._runs = RunSpool()  # the finished runs, on disk
        self._pending: list[_Pending] = []
        self._scores: dict[str, list[tuple[str, float | None]]] = {}
        self._files_selected: dict[str, int] = {}  # rule -> files it selected (delete-all guard)
        self._files_spared: set[str] = set()  # rules that left some file of a matched run alone
        self._files_runs: dict[str, int] = {}  # rule -> runs whose files it considered
        self._files_matched: set[str] = set()  # rules whose delete globs matched some file
        self._ranked_only: dict[str, set[str]] = {}  # rule -> runs outside --target in its unless_top
        self._artifacts = artifact_retention.Collector(now)

    def matching_rules(self, run: LiveRun) -> tuple[list[Rule], list[Rule]]:
        """The rules that may change ``run``, and every rule that matches it.

        They differ for a live run: only a rule that names its state explicitly may touch it
        (wandb/wandb#4377), but the ``keep`` globs of every matching rule still protect files.
        """
        rules = self._projects.get((run.entity, run.project), [])
        matched = [r for r in rules if selection.matches(r, run, self.now)]
        if run.state not in LIVE_STATES:
            return matched, matched
        named = [r for r in matched if r.match.state is not None and run.state in r.match.state]
        return named, matched

    def add(self, run: LiveRun) -> None:
        """Plan one live run (a run already seen in this plan is ignored: wandb/wandb#6614)."""
        seen = self._seen.setdefault((run.entity, run.project), set())
        if run.id in seen:
            return
        seen.add(run.id)
        self.runs_read += 1
        rules, matched = self.matching_rules(run)
        if not self.targeted(run):
            self._rank_only(run, rules)
            return
        if matched and not rules:
            self.skipped_running += 1
        if not rules:
            return
        work = _RunWork(run, rules, keepers=matched)
        for rule in rules:
            work.fields.update(_match_fields(rule))
        # Config and summary first: templates render against the run with those changes made.
        # The plan lists text fields and tags first, as it always has.
        _plan_section(work, ChangeKind.CONFIG)
        _plan_section(work, ChangeKind.SUMMARY)
        work.sections, section_errors = work.changes, work.errors
        work.changes, work.errors = [], []
        _plan_text_fields(work)
        _plan_tags(work)
        work.changes.extend(work.sections)
        work.errors.extend(section_errors)
        decisions = self._select_files(work)
        has_versions = self._collect_artifacts(work)
        fields = tuple(sorted(work.fields))
        plan = RunPlan(
            entity=run.entity,
            project=run.project,
            run_id=run.id,
            storage_id=run.storage_id,
            name=run.name,
            fingerprint=fingerprint(run, work.fields),
            fingerprint_fields=fields,
            field_digests=field_digests(run, fields),
            changes=tuple(work.changes),
            config_writes=ConfigWrites.REPLACE if any(_replaces(r) for r in rules) else ConfigWrites.MERGE,
            project_internal_id=run.project_internal_id,
            errors=tuple(work.errors),
        )
        waits = any(
            r.files is not None and r.files.unless_top is not None and r.name in decisions
            and decisions[r.name].delete for r in rules
        )
        if waits or has_versions:
            self._pending.append(_Pending(plan, decisions))
        else:
            self._keep(plan, decisions)

    def targeted(self, run: LiveRun) -> bool:
        """Whether ``run`` is to be planned (every run is, without ``targets``)."""
        if self.targets is None:
            return True
        key = (run.entity, run.project)
        if key not in self.targets:
            return False
        ids = self.targets[key]
        return ids is None or run.id in ids

    def _rank_only(self, run: LiveRun, rules: Sequence[Rule]) -> None:
        """Enter a run outside ``--target`` in the rankings of ``rules`` (those that could change it)."""
        for rule in rules:
            if rule.files is not None and rule.files.unless_top is not None:
                self._score(rule, rule.files.unless_top, run)
                self._ranked_only.setdefault(rule.name, set()).add(run.id)
            if rule.artifacts is not None and run.artifacts is not None:
                # Its versions rank in their collections; it has no plan to carry their deletions.
                self._artifacts.add(rule, run, run.artifacts)

    def _score(self, rule: Rule, top: UnlessTop, run: LiveRun) -> None:
        self._scores.setdefault(rule.name, []).append((run.id, retention.metric_value(run, top.metric)))

    def add_import(self, plan: RunPlan) -> None:
        """A run an import plans (``reconcile.import_planner``); limits count it like any other."""
        self._imports.add(plan)

    def _collect_artifacts(self, work: _RunWork) -> bool:
        """Hand the run's candidate versions to the collector; whether it logged any."""
        rules = [r for r in work.rules if r.artifacts is not None]
        if not rules:
            return False
        if work.run.artifacts is None:
            work.error(f"the artifacts of {work.run.path} were not read, so its artifacts rules cannot be "
                       "planned")
            return False
        found = False
        for rule in rules:
            found = self._artifacts.add(rule, work.run, work.run.artifacts) or found
            if rule.artifacts is not None and rule.artifacts.unless_top is not None:
                work.fields.add(("summary", *rule.artifacts.unless_top.metric))
        return found

    def _select_files(self, work: _RunWork) -> dict[str, retention.Decision]:
        file_rules = [r for r in work.rules if r.files is not None]
        if not file_rules:
            return {}
        run = work.run
        work.fields.add(("files",))
        if run.files is None:
            # The caller fetches files when needs_files() says so; planning without them would be a lie.
            work.error(f"the files of {run.path} were not read, so its files rules cannot be planned")
            self._files_spared.update(r.name for r in file_rules)
            return {}
        keep = [g for r in work.keepers if r.files is not None for g in r.files.keep]
        # Files an undo re-uploaded rank by their original upload time (kept in the summary).
        work.fields.add(("summary", *retention.RESTORED_KEY))
        times = retention.upload_times(run, run.files)
        decisions: dict[str, retention.Decision] = {}
        for rule in file_rules:
            assert rule.files is not None
            decision = retention.decide(rule.name, rule.files, run.files, keep=keep, now=self.now,
                                       times=times)
            chosen = decision.delete
            self._files_runs[rule.name] = self._files_runs.get(rule.name, 0) + 1
            if decision.candidates:
                self._files_matched.add(rule.name)
            if rule.files.unless_top is not None:
                work.fields.add(("summary", *rule.files.unless_top.metric))
                self._score(rule, rule.files.unless_top, run)
            self._files_selected[rule.name] = self._files_selected.get(rule.name, 0) + len(chosen)
            # System files are never candidates unless allowed, so they do not count as spared:
            # every real run has them, and `delete: ["**"]` must still trip the guard.
            deletable = [f for f in run.files
                         if rule.files.allow_system_files or not retention.is_system_file(f.name)]
            if len(chosen) < len(deletable):
                self._files_spared.add(rule.name)
            if decision.candidates:
                decisions[rule.name] = decision
        return decisions

    def _keep(self, plan: RunPlan, decisions: Mapping[str, retention.Decision],
              artifacts: artifact_retention.Outcome | None = None) -> None:
        """Add ``plan`` with its file deletions, the artifact work on the versions it logged, and what
        survives, if it has any of them (or errors)."""
        versions: Sequence[Change] = ()
        kept_versions: Sequence[KeptArtifact] = ()
        if artifacts is not None:
            versions, kept_versions = artifacts.changes.get(plan.path, ()), artifacts.kept.get(plan.path, ())
            plan = dataclasses.replace(plan, errors=(*plan.errors, *artifacts.errors.get(plan.path, ())))
        by_file: dict[str, tuple[LiveFile, list[str]]] = {}
        for rule_name in sorted(decisions, key=self._rule_order.__getitem__):
            for file in decisions[rule_name].delete:
                by_file.setdefault(file.id, (file, []))[1].append(rule_name)
        kept = retention.merge_kept(decisions.values(), set(by_file))
        original = {i: t for d in decisions.values() for i, t in d.original.items()}
        file_changes = [
            Change(
                ChangeKind.FILE, ChangeOp.DELETE, (file.name,), file, None, tuple(rules), file=file,
                detail=retention.describe(file, self.now, original.get(file.id)),
                original_updated_at=original.get(file.id),
            )
            for file, rules in by_file.values()
        ]
        changes = sorted(
            (*plan.changes, *file_changes, *versions),
            key=lambda c: (_KIND_ORDER[c.kind], _natural(c.key) if c.kind is ChangeKind.ARTIFACT else c.key,
                           _OP_ORDER[c.op]),
        )
        if changes or plan.errors or kept or kept_versions:
            self._runs.add(dataclasses.replace(plan, changes=tuple(changes), kept=kept,
                                               kept_artifacts=tuple(kept_versions)))

    def finish(self) -> Plan:
        """Settle ``unless_top`` rankings, check the delete-all guard and the limits; the Plan."""
        tops: dict[str, frozenset[str]] = {}
        tops_by_rule: dict[str, UnlessTop] = {}
        for rule in self.spec.rules:
            if rule.files is not None and rule.files.unless_top is not None:
                top = rule.files.unless_top
                tops_by_rule[rule.name] = top
                tops[rule.name] = retention.top_runs(self._scores.get(rule.name, []), top.goal, top.count)
                if tops[rule.name] & self._ranked_only.get(rule.name, set()):
                    self._files_spared.add(rule.name)  # a top run outside --target keeps its files
        versions = self._artifacts.outcome(self.spec.rules)
        for pending in self._pending:
            decisions = dict(pending.decisions)
            for rule_name, decision in pending.decisions.items():
                if pending.plan.run_id in tops.get(rule_name, frozenset()):
                    top = tops_by_rule[rule_name]
                    decisions[rule_name] = retention.spare_top(rule_name, decision, top)
                    self._files_selected[rule_name] -= len(decision.delete)
                    self._files_spared.add(rule_name)
            self._keep(pending.plan, decisions, versions)
        self._pending.clear()

        errors = list(self._errors)
        for rule in self.spec.rules:
            selected = self._files_selected.get(rule.name, 0)
            if rule.files is None or rule.files.allow_delete_all or not selected or names_its_files(rule):
                continue
            if rule.name not in self._files_spared:
                errors.append(
                    f"rule {rule.name!r} would delete every file ({selected}) of every run it matches; "
                    f"check its files.delete globs {list(rule.files.delete)}, or set "
                    f"files.allow_delete_all: true if that is really meant"
                )
        imports = self._imports.seal()  # read back in path order (so are the errors for them)
        ruled = set(self._runs.paths()) if imports else set()
        for imported in imports:
            if imported.path in ruled:  # two writers of one run in one apply: which wins is not defined
                errors.append(f"{imported.path} is imported by {imported.source!r} and changed by rules in "
                              "the same plan; apply the import first, then plan the rules")
            else:
                self._runs.add(imported)
        imports.close()
        runs = self._runs.seal()
        errors.extend(self._limit_errors(runs.totals))
        return Plan(
            warnings=tuple(self._warnings()),
            spec_digest=self.spec.digest,
            created_at=self.now,
            base_url=self.base_url,
            runs=runs,
            errors=tuple(errors),
            skipped_running=self.skipped_running,
            runs_read=self.runs_read,
            limits=self.spec.limits,
            # Apply reads the sources again (staleness, history, files): where they are, never a credential.
            sources=tuple((entry.name, entry.source) for entry in self.spec.imports
                          if entry.name in runs.sources),
        )

    def _outside_target(self, rule: Rule) -> bool:
        """Whether ``--target`` leaves ``rule`` out: its project is not targeted, or it matched none of
        the targeted runs. What such a rule would find elsewhere was not read, so it warns of nothing."""
        if self.targets is None:
            return False
        if (rule.target.entity, rule.target.project) not in self.targets:
            return True
        return not self._files_runs.get(rule.name, 0)

    def _warnings(self) -> list[str]:
        """A files rule whose delete globs match no file of any run it matches (or an artifacts rule that
        finds no version): never a silent no-op. A rule ``--target`` leaves out is not warned about."""
        warnings = [f"rule {rule.name!r}: artifacts of type {rule.artifacts.type!r}"
                    + (f" named {rule.artifacts.name!r}" if rule.artifacts.name else "")
                    + " match no version logged by the runs it matches"
                    for rule in self.spec.rules
                    if rule.artifacts is not None and rule.name not in self._artifacts.matched
                    and (self.targets is None
                         or (rule.target.entity, rule.target.project) in self.targets)]
        for rule in self.spec.rules:
            if rule.files is None or rule.name in self._files_matched or self._outside_target(rule):
                continue
            runs = self._files_runs.get(rule.name, 0)
            where = ("the one run it matches" if runs == 1 else f"any of the {runs} runs it matches" if runs
                     else "any run: it matches no run")
            warnings.append(f"rule {rule.name!r}: files.delete globs {list(rule.files.delete)} match no file "
                            f"of {where}")
        return warnings

    def _limit_errors(self, totals: Totals) -> list[str]:
        limits = self.spec.limits
        changed = totals.runs_to_create + totals.runs_to_change
        deletions, freed = totals.files_to_delete, totals.bytes_to_free
        checks = (
            ("max_changed_runs", limits.max_changed_runs, changed, "run", "to change"),
            ("max_file_deletions", limits.max_file_deletions, deletions, "file", "to delete"),
            ("max_bytes", limits.max_bytes, freed, "byte", "to delete"),
        )
        return [
            f"limits.{name} is {limit} but the plan has {pluralize(actual, noun)} {what} ({actual - limit} "
            f"over); narrow the rules or raise the limit"
            for name, limit, actual, noun, what in checks
            if limit is not None and actual > limit
        ]


def names_its_files(rule: Rule) -> bool:
    """Whether ``rule`` says exactly what goes: its runs named by ``match.ids`` and every delete glob a
    literal file name. The delete-everything guard is for rules that could empty a run by accident;
    one naming each file is not, even if what it names is all a run has. Any wildcard (``?*``,
    ``[!x]*``, ``*.log``) could match more than was meant, so it needs ``allow_delete_all``."""
    if rule.files is None or not rule.match.ids:
        return False
    return all(is_literal(glob) for glob in rule.files.delete)


def needs_files(spec: Spec, run: LiveRun, now: datetime) -> bool:
    """Whether a rule with ``files:`` applies to ``run`` (so its file list must be fetched)."""
    return _needs(spec, run, now, lambda rule: rule.files is not None)


def needs_artifacts(spec: Spec, run: LiveRun, now: datetime) -> bool:
    """Whether a rule with ``artifacts:`` applies to ``run`` (so the versions it logged must be fetched)."""
    return _needs(spec, run, now, lambda rule: rule.artifacts is not None)


def _needs(spec: Spec, run: LiveRun, now: datetime, has: Callable[[Rule], bool]) -> bool:
    for rule in spec.rules:
        if not has(rule) or (rule.target.entity, rule.target.project) != (run.entity, run.project):
            continue
        if run.state in LIVE_STATES and (rule.match.state is None or run.state not in rule.match.state):
            continue
        try:
            if selection.matches(rule, run, now):
                return True
        except PlanError:
            continue  # the planner reports the unusable filter as a plan error
    return False


def plan(spec: Spec, runs: Iterable[LiveRun], *, now: datetime, base_url: str) -> Plan:
    """Plan every run of ``runs`` (streamed) against ``spec``; pure but for the spool of planned runs."""
    planner = Planner(spec, now=now, base_url=base_url)
    for run in runs:
        planner.add(run)
    return planner.finish()
