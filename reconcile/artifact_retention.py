"""Artifact version retention: which versions an ``artifacts:`` rule would delete, and why others survive.

Candidates are the versions of the target project's collections of the rule's ``type`` (and
``name`` glob) that the rule's matched runs logged. Per collection, a candidate survives when
it has an alias the rule may not delete (``latest`` never; others unless named in
``delete_aliased``), fails ``older_than`` (by creation time) or ``larger_than``, or is picked
by a policy selector (``keep_last``, calendar buckets, ``keep_within``: ``reconcile.policy``,
"newest" being the creation time or, with ``order_by: name``, the version index). ``unless_top``
(by the logging run's summary metric) is settled by the planner once every run is read.

A rule's ``ttl`` is the TTL W&B should keep on each candidate that survives the plan and has no
protecting alias; where W&B reports another, the plan sets it (``current -> desired``). A block
with ``ttl`` and no selector deletes nothing (``ArtifactsRule.deletes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wcmatch import fnmatch

from reconcile import policy, retention
from reconcile.models import (
    ArtifactsRule,
    Change,
    ChangeKind,
    ChangeOp,
    KeepReason,
    KeptArtifact,
    LiveArtifact,
    LiveRun,
    Rule,
    VersionTTL,
)
from reconcile.render.common import size_text

NEVER_DELETED = frozenset({"latest"})
"""Aliases whose version is never deleted: W&B moves ``latest`` to the newest version."""


VersionDecision = policy.Sorted[LiveArtifact]
"""What one artifacts rule decides for one collection's candidates."""


def is_candidate(rule: ArtifactsRule, artifact: LiveArtifact) -> bool:
    """Whether ``artifact`` belongs to a collection the rule names (type, and name glob when given)."""
    return artifact.type == rule.type and (
        rule.name is None or fnmatch.fnmatch(artifact.collection, rule.name, flags=fnmatch.CASE)
    )


def protecting_aliases(rule: ArtifactsRule, artifact: LiveArtifact) -> list[str]:
    """The version's aliases that keep it from this rule (``latest`` always, others unless
    ``delete_aliased`` names them); such a version is neither deleted nor given a TTL."""
    return [a for a in artifact.aliases if a in NEVER_DELETED or a not in rule.delete_aliased]


def _protection(
    rule_name: str, rule: ArtifactsRule, artifact: LiveArtifact, now: datetime
) -> list[KeepReason]:
    reasons: list[KeepReason] = []
    protected = protecting_aliases(rule, artifact)
    if protected:
        reasons.append(KeepReason(rule_name, "alias", ", ".join(protected)))
    reasons += retention.narrowing(rule_name, rule, artifact.created_at, artifact.size, now)
    return reasons


def decide(
    rule_name: str, rule: ArtifactsRule, versions: Iterable[LiveArtifact], *, now: datetime
) -> VersionDecision:
    """The candidates of one collection that ``rule`` deletes, and why each other one survives."""
    result = policy.sort_out(
        rule_name, rule, versions, protection=lambda a: _protection(rule_name, rule, a, now),
        when=lambda a: a.created_at, name=lambda a: a.name, now=now, natural_ties=True,
    )
    result.delete.sort(key=lambda a: a.version_index)
    return result


def describe(artifact: LiveArtifact) -> str:
    """Display-only size and aliases of a version, e.g. ``12.3 MiB, aliases: none``."""
    aliases = ", ".join(artifact.aliases) if artifact.aliases else "none"
    return f"{size_text(artifact.size)}, aliases: {aliases}"


@dataclass(slots=True)
class Outcome:
    """What every artifacts rule decides, by the path of the run that logged each version."""

    changes: dict[str, list[Change]] = field(default_factory=dict)
    kept: dict[str, list[KeptArtifact]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


class Collector:
    """Gathers every matched run's candidate versions, then decides per collection (in ``outcome``).

    Versions wait until every run is read: ``keep_last`` and the calendar buckets rank a whole
    collection, and ``unless_top`` ranks every matched run.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._groups: dict[tuple[str, str, str, str], list[tuple[str, LiveArtifact]]] = {}
        self._scores: dict[str, list[tuple[str, float | None]]] = {}
        self.matched: set[str] = set()  # rules with at least one candidate version

    def add(self, rule: Rule, run: LiveRun, artifacts: Iterable[LiveArtifact]) -> bool:
        """Record ``run``'s candidates for ``rule``; whether it has any."""
        assert rule.artifacts is not None
        found = False
        for artifact in artifacts:
            if is_candidate(rule.artifacts, artifact):
                key = (rule.name, run.entity, run.project, artifact.collection)
                self._groups.setdefault(key, []).append((run.path, artifact))
                found = True
        if found:
            self.matched.add(rule.name)
        if rule.artifacts.unless_top is not None:
            metric = rule.artifacts.unless_top.metric
            self._scores.setdefault(rule.name, []).append((run.id, retention.metric_value(run, metric)))
        return found

    def outcome(self, rules: Sequence[Rule]) -> Outcome:
        """Per logging run: the versions to delete (one change per version, every rule named), the
        candidates that survive with every rule's reasons (a version any rule deletes is not kept),
        and the TTLs to set on survivors without a protecting alias."""
        by_name = {r.name: r for r in rules}
        tally = _Tally()
        for (rule_name, _entity, _project, _collection), members in self._groups.items():
            rule = by_name[rule_name].artifacts
            assert rule is not None
            if rule.ttl is not None:
                for path, artifact in members:
                    if not protecting_aliases(rule, artifact):
                        tally.ttls.setdefault(artifact.id, (path, artifact, {}))[2][rule_name] = rule.ttl
            if rule.deletes:
                self._decide(tally, rule_name, rule, members)
        return tally.outcome(self.now)

    def _decide(self, tally: _Tally, rule_name: str, rule: ArtifactsRule,
                members: list[tuple[str, LiveArtifact]]) -> None:
        """One rule's deletions and survivors in one collection (``unless_top``'s runs spared)."""
        top: frozenset[str] = frozenset()
        if rule.unless_top is not None:
            scores = self._scores.get(rule_name, [])
            top = retention.top_runs(scores, rule.unless_top.goal, rule.unless_top.count)
        owners = {a.id: path for path, a in members}
        decision = decide(rule_name, rule, [a for _, a in members], now=self.now)
        for artifact in decision.delete:
            path = owners[artifact.id]
            if rule.unless_top is not None and path.rsplit("/", 1)[1] in top:
                reason = KeepReason(rule_name, "unless_top", retention.top_detail(rule.unless_top))
                tally.kept.setdefault(artifact.id, (path, artifact, []))[2].append(reason)
            else:
                tally.deleted.setdefault(artifact.id, (path, artifact, []))[2].append(rule_name)
        for artifact, reasons in decision.kept:
            tally.kept.setdefault(artifact.id, (owners[artifact.id], artifact, []))[2].extend(reasons)


@dataclass(slots=True)
class _Tally:
    """Every rule's verdicts per version id (with the path of the run that logged it)."""

    deleted: dict[str, tuple[str, LiveArtifact, list[str]]] = field(default_factory=dict)
    kept: dict[str, tuple[str, LiveArtifact, list[KeepReason]]] = field(default_factory=dict)
    ttls: dict[str, tuple[str, LiveArtifact, dict[str, VersionTTL]]] = field(default_factory=dict)

    def outcome(self, now: datetime) -> Outcome:
        """The verdicts merged per version: any rule's delete wins; survivors collect every reason."""
        out = Outcome()
        for path, artifact, rule_names in self.deleted.values():
            change = Change(ChangeKind.ARTIFACT, ChangeOp.DELETE, (artifact.name,), artifact, None,
                            tuple(rule_names), artifact=artifact, detail=describe(artifact))
            out.changes.setdefault(path, []).append(change)
        for artifact_id, (path, artifact, why) in self.kept.items():
            if artifact_id not in self.deleted:
                out.kept.setdefault(path, []).append(KeptArtifact(artifact, tuple(why)))
        for survivors in out.kept.values():
            survivors.sort(key=lambda k: (k.artifact.collection, k.artifact.version_index))
        for artifact_id, (path, artifact, wishes) in self.ttls.items():
            if artifact_id not in self.deleted:
                _plan_ttl(out, path, artifact, wishes, now)
        return out


def _plan_ttl(out: Outcome, path: str, artifact: LiveArtifact, wishes: dict[str, VersionTTL],
              now: datetime) -> None:
    """The TTL change of one surviving version, or an error when its rules want different TTLs."""
    wanted = list(dict.fromkeys(wishes.values()))
    if len(wanted) > 1:
        names = [next(r for r, t in wishes.items() if t == ttl) for ttl in wanted[:2]]
        out.errors.setdefault(path, []).append(
            f"rules {names[0]!r} and {names[1]!r} disagree on the TTL of artifact version {artifact.name} "
            f"logged by {path}: {wanted[0]} vs {wanted[1]}"
        )
        return
    [desired] = wanted
    if desired.satisfied_by(artifact.ttl):
        return
    before = None if artifact.ttl is None else str(artifact.ttl)
    out.changes.setdefault(path, []).append(
        Change(ChangeKind.ARTIFACT, ChangeOp.SET, (artifact.name, "ttl"), before, str(desired), tuple(wishes),
               artifact=artifact, detail=expiry_note(artifact, desired, now))
    )


def expiry_note(artifact: LiveArtifact, ttl: VersionTTL, now: datetime) -> str:
    """What W&B will do with the version under ``ttl`` (display only): W&B counts a TTL from the
    version's creation, so a TTL shorter than its age expires it right away."""
    if ttl.inherited:
        return "the team's default TTL applies (none if the team has none)"
    if ttl.seconds is None:
        return "never expires"
    expires = artifact.created_at + timedelta(seconds=ttl.seconds)
    if expires <= now:
        return (f"already older than the TTL (created {artifact.created_at:%Y-%m-%d}): W&B deletes it "
                "shortly after apply")
    return f"W&B deletes it after {expires:%Y-%m-%d %H:%M} UTC"
