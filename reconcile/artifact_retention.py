"""Artifact version retention: which versions an ``artifacts:`` rule would delete, and why others survive.

Candidates are the versions of the target project's collections of the rule's ``type`` (and
``name`` glob) that the rule's matched runs logged. Per collection, a candidate survives when
it has an alias the rule may not delete (``latest`` never; others unless named in
``delete_aliased``), fails ``older_than`` (by creation time) or ``larger_than``, or is picked
by a policy selector (``keep_last``, calendar buckets, ``keep_within``: ``reconcile.policy``,
"newest" being the creation time or, with ``order_by: name``, the version index). ``unless_top``
(by the logging run's summary metric) is settled by the planner once every run is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

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


def _protection(
    rule_name: str, rule: ArtifactsRule, artifact: LiveArtifact, now: datetime
) -> list[KeepReason]:
    reasons: list[KeepReason] = []
    protected = [a for a in artifact.aliases if a in NEVER_DELETED or a not in rule.delete_aliased]
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
        """Per logging run: the versions to delete (one change per version, every rule named) and the
        candidates that survive with every rule's reasons (a version any rule deletes is not kept)."""
        by_name = {r.name: r for r in rules}
        deleted: dict[str, tuple[str, LiveArtifact, list[str]]] = {}
        kept: dict[str, tuple[str, LiveArtifact, list[KeepReason]]] = {}
        for (rule_name, _entity, _project, _collection), members in self._groups.items():
            rule = by_name[rule_name].artifacts
            assert rule is not None
            top: frozenset[str] = frozenset()
            if rule.unless_top is not None:
                top = retention.top_runs(
                    self._scores.get(rule_name, []), rule.unless_top.goal, rule.unless_top.count
                )
            owners = {a.id: path for path, a in members}
            decision = decide(rule_name, rule, [a for _, a in members], now=self.now)
            for artifact in decision.delete:
                path = owners[artifact.id]
                if path.rsplit("/", 1)[1] in top:
                    assert rule.unless_top is not None
                    reason = KeepReason(rule_name, "unless_top", retention.top_detail(rule.unless_top))
                    kept.setdefault(artifact.id, (path, artifact, []))[2].append(reason)
                    continue
                deleted.setdefault(artifact.id, (path, artifact, []))[2].append(rule_name)
            for artifact, reasons in decision.kept:
                kept.setdefault(artifact.id, (owners[artifact.id], artifact, []))[2].extend(reasons)
        out = Outcome()
        for path, artifact, rule_names in deleted.values():
            out.changes.setdefault(path, []).append(
                Change(
                    ChangeKind.ARTIFACT,
                    ChangeOp.DELETE,
                    (artifact.name,),
                    artifact,
                    None,
                    tuple(rule_names),
                    artifact=artifact,
                    detail=describe(artifact),
                )
            )
        for artifact_id, (path, artifact, why) in kept.items():
            if artifact_id not in deleted:
                out.kept.setdefault(path, []).append(KeptArtifact(artifact, tuple(why)))
        for survivors in out.kept.values():
            survivors.sort(key=lambda k: (k.artifact.collection, k.artifact.version_index))
        return out
