"""Typed, immutable models shared by every layer: the spec, live runs, and the plan.

The spec models are built by ``reconcile.spec`` (the only module that reads YAML);
live runs by a ``reconcile.backend.Backend``; plans by ``reconcile.planner``. Nothing
here does I/O.

A *key path* is a tuple of keys into a nested mapping: ``optimizer.lr`` in the spec is
``("optimizer", "lr")``; the list form ``[a.b, c]`` (for keys that contain a dot) is
``("a.b", "c")``.
"""

from __future__ import annotations

import enum
import json
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Protocol

KeyPath = tuple[str, ...]


def _json_quote(text: str) -> str:
    """``text`` as a JSON string literal (for display paths)."""
    return json.dumps(text, ensure_ascii=False)


def utc_from_iso(text: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` allowed, as Python 3.10 does not) as aware UTC;
    ``ValueError`` if it is not one."""
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone")
    return value.astimezone(timezone.utc)


FORMAT_VERSION = 1
"""Version of the saved-plan JSON (``format_version``); apply refuses any other."""

SPEC_VERSIONS = (1,)
"""Spec ``version`` values this build reads."""


class ConfigWrites(enum.Enum):
    """How the target server stores the config sent by UpsertBucket.

    MERGE: deep-merged into the stored config (W&B cloud today, wandb/wandb#11055), so a
    config key can never be removed. REPLACE: the sent config replaces the stored one.
    """

    MERGE = "merge"
    REPLACE = "replace"


class OrderBy(enum.Enum):
    """What "newest" means for ``keep_last`` and within a calendar period."""

    UPDATED_AT = "updated_at"  # last update time (an undo's re-upload makes a file new again)
    NAME = "name"  # natural sort of the name: step-900 < step-1000


class Goal(enum.Enum):
    """Direction of ``unless_top`` ranking."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written in a spec file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where runs live. ``None`` fields fall back to the spec's target, then to the
    ``WANDB_ENTITY`` / ``WANDB_PROJECT`` environment variables (resolved by the CLI)."""

    entity: str | None = None
    project: str | None = None
    config_writes: ConfigWrites | None = None

    def over(self, base: Target) -> Target:
        """This target with its unset fields taken from ``base``."""
        return Target(
            entity=self.entity if self.entity is not None else base.entity,
            project=self.project if self.project is not None else base.project,
            config_writes=self.config_writes if self.config_writes is not None else base.config_writes,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """Blast-radius guards; ``None`` means no limit."""

    max_changed_runs: int | None = None
    max_file_deletions: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Which runs a rule selects: every given condition must hold (AND)."""

    ids: tuple[str, ...] | None = None
    filters: Mapping[str, Any] | None = None  # W&B MongoDB-style filter, sent to the server
    name: str | None = None  # glob on the display name
    tags: tuple[str, ...] | None = None  # run has all of these
    state: tuple[str, ...] | None = None
    group: str | None = None
    job_type: str | None = None
    created_before: datetime | None = None  # timezone-aware UTC
    created_after: datetime | None = None  # timezone-aware UTC
    older_than: timedelta | None = None  # created before (plan time - older_than)
    all: bool = False  # the only way to match every run
    filters_at: Location | None = field(default=None, compare=False)  # where ``filters`` is; display only


@dataclass(frozen=True, slots=True)
class SetBlock:
    """Desired values. ``config``/``summary`` map key paths to leaf values (only the
    named leaves are managed); string fields other than tags may be templates."""

    config: Mapping[KeyPath, Any] = field(default_factory=dict)
    summary: Mapping[KeyPath, Any] = field(default_factory=dict)
    tags: tuple[str, ...] | None = None  # exact set; items may be templates
    name: str | None = None  # template
    notes: str | None = None  # template
    group: str | None = None  # template
    job_type: str | None = None  # template


@dataclass(frozen=True, slots=True)
class UnlessTop:
    """Runs among the rule's top ``count`` by ``metric`` keep all their files."""

    metric: KeyPath
    goal: Goal
    count: int


@dataclass(frozen=True, slots=True)
class FilesRule:
    """Which uploaded files of a matched run may be deleted."""

    delete: tuple[str, ...]  # candidate globs on the file path in the run
    keep: tuple[str, ...] = ()  # never deleted; any rule's keep wins
    keep_last: int | None = None  # newest N candidates per run survive
    older_than: timedelta | None = None  # only candidates updated before plan time - this
    larger_than: int | None = None  # bytes; only candidates above this size
    unless_top: UnlessTop | None = None
    allow_system_files: bool = False
    allow_delete_all: bool = False  # a delete that would remove every file of every run
    keep_hourly: int | None = None  # restic's calendar buckets (UTC): the newest candidate of each
    keep_daily: int | None = None  # of the last N hours/days/ISO weeks/months/years that have one
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: timedelta | None = None  # candidates newer than the newest candidate minus this
    order_by: OrderBy = OrderBy.UPDATED_AT


@dataclass(frozen=True, slots=True)
class VersionTTL:
    """An artifact version's time-to-live, which W&B enforces itself: it deletes the version shortly
    after ``created_at + seconds``.

    ``inherited``: the team's default TTL applies (W&B then reports that default's seconds, if any).
    Otherwise ``seconds`` is the version's own TTL, or None for no TTL (never expires). On the wire
    (``UpdateArtifactInput.ttlDurationSeconds``, as the client's ``Artifact._ttl_duration_seconds_to_gql``
    sends it): the seconds, ``-1`` to inherit, ``-2`` for none.
    """

    seconds: int | None = None
    inherited: bool = False

    INHERIT: ClassVar[int] = -1
    DISABLED: ClassVar[int] = -2

    @classmethod
    def from_wire(cls, seconds: int | None, inherited: bool) -> VersionTTL:
        """What W&B reports (``ttlDurationSeconds``, ``ttlIsInherited``); zero or negative seconds are
        none, as the client's ``validate_ttl_duration_seconds`` reads them."""
        return cls(seconds if seconds is not None and seconds > 0 else None, inherited)

    def to_wire(self) -> int:
        """The ``ttlDurationSeconds`` that sets this TTL."""
        if self.inherited:
            return self.INHERIT
        return self.seconds if self.seconds is not None else self.DISABLED

    def satisfied_by(self, live: VersionTTL | None) -> bool:
        """Whether ``live`` is this desired TTL (to inherit, any inherited TTL is)."""
        if live is None:
            return False
        if self.inherited:
            return live.inherited
        return not live.inherited and live.seconds == self.seconds

    def __str__(self) -> str:
        """``30d``, ``none`` or ``inherit`` (the spec's own words); an inherited TTL W&B reports with
        its seconds reads ``inherit (30d)``."""
        if self.seconds is None:
            return "inherit" if self.inherited else "none"
        from reconcile.policy import duration_text  # here: policy imports this module

        text = duration_text(timedelta(seconds=self.seconds))
        return f"inherit ({text})" if self.inherited else text

    @classmethod
    def parse(cls, text: str) -> VersionTTL:
        """The inverse of ``str``: ``none``, ``inherit``, ``inherit (30d)``, or ``30d``, ``12h``, ``45s``;
        ``ValueError`` for anything else."""
        inherited = text == "inherit" or text.startswith("inherit (")
        body = text[len("inherit ("):-1] if text.startswith("inherit (") and text.endswith(")") else text
        if body in ("none", "inherit"):
            return cls(None, inherited)
        sizes = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
        if len(body) < 2 or body[-1] not in sizes or not body[:-1].isdigit():
            raise ValueError(f"not a TTL: {text!r}")
        return cls(int(body[:-1]) * sizes[body[-1]], inherited)


@dataclass(frozen=True, slots=True)
class ArtifactsRule:
    """Which artifact versions logged by a rule's matched runs may be deleted.

    Candidates: the versions of the target project's collections of ``type`` (and whose
    name matches ``name``) that the matched runs logged. A version with an alias survives
    unless every alias it has is in ``delete_aliased`` (``latest`` never is). The selectors
    rank candidates per collection, as for files; "newest" is the version index.
    """

    type: str
    name: str | None = None  # glob on the collection name
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: timedelta | None = None
    older_than: timedelta | None = None  # only versions created before plan time - this
    larger_than: int | None = None  # bytes
    unless_top: UnlessTop | None = None  # by the logging run's summary metric
    delete_aliased: tuple[str, ...] = ()  # aliases whose versions may still be deleted
    order_by: OrderBy = OrderBy.UPDATED_AT  # versions: creation time; ``name``: the version index
    ttl: VersionTTL | None = None  # desired TTL of the candidates that survive and have no protecting alias

    @property
    def deletes(self) -> bool:
        """Whether the block deletes versions: a block with only ``ttl`` (no selector) manages TTLs alone."""
        return self.ttl is None or any(
            value is not None
            for value in (self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly,
                          self.keep_monthly, self.keep_yearly, self.keep_within, self.older_than,
                          self.larger_than, self.unless_top)
        ) or bool(self.delete_aliased)


@dataclass(frozen=True, slots=True)
class Rule:
    """One named rule of the spec. ``target`` is already merged over the spec's target."""

    name: str
    location: Location
    target: Target
    match: Match
    set: SetBlock = field(default_factory=SetBlock)
    add_tags: tuple[str, ...] = ()  # items may be templates
    remove_tags: tuple[str, ...] = ()
    unset_config: tuple[KeyPath, ...] = ()
    unset_summary: tuple[KeyPath, ...] = ()
    rename_config: tuple[tuple[KeyPath, KeyPath], ...] = ()  # (old, new)
    rename_summary: tuple[tuple[KeyPath, KeyPath], ...] = ()
    files: FilesRule | None = None
    artifacts: ArtifactsRule | None = None


@dataclass(frozen=True, slots=True)
class MlflowSource:
    """Runs of an MLflow tracking server (``imports[].from.mlflow``)."""

    experiments: tuple[str, ...]  # experiment names
    tracking_uri: str | None = None  # None: the MLFLOW_TRACKING_URI environment variable
    filter: str | None = None  # MLflow's search syntax, e.g. "metrics.auc > 0.8"


@dataclass(frozen=True, slots=True)
class WandbSource:
    """Runs of a project on another W&B server (``imports[].from.wandb``). The API key is
    read from the environment variable ``api_key_env`` names, when it is needed; it is
    never held here."""

    base_url: str
    api_key_env: str
    entity: str
    project: str
    filters: Mapping[str, Any] | None = None  # W&B MongoDB-style filter on the source runs


@dataclass(frozen=True, slots=True)
class Import:
    """One named import: source runs that should exist, with the same ids, in ``target``."""

    name: str
    location: Location
    source: MlflowSource | WandbSource
    target: Target  # the destination; already merged over the spec's target


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole spec, possibly merged from several files."""

    version: int
    target: Target
    limits: Limits
    rules: tuple[Rule, ...]
    digest: str  # sha256 over the source files' bytes, in load order
    sources: tuple[str, ...]  # the files it was loaded from
    imports: tuple[Import, ...] = ()


# --------------------------------------------------------------------------- live state


@dataclass(frozen=True, slots=True)
class LiveFile:
    """An uploaded file of a run, as W&B lists it."""

    id: str  # W&B file id, what deleteFiles takes
    name: str  # path inside the run, e.g. "media/images/a.png"
    size: int  # bytes
    updated_at: datetime  # timezone-aware UTC
    url: str | None = None  # download URL (display and download only; not fingerprinted)
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class LiveArtifact:
    """An artifact version a run logged, as W&B lists it."""

    id: str  # W&B's artifact id, what deleteArtifact takes
    collection: str  # the collection (artifact sequence) name
    type: str
    version_index: int
    size: int  # bytes
    created_at: datetime  # timezone-aware UTC
    aliases: tuple[str, ...] = ()
    ttl: VersionTTL | None = None  # as W&B reports it; None: not read

    @property
    def name(self) -> str:
        """``collection:vN``, as W&B names a version."""
        return f"{self.collection}:v{self.version_index}"


@dataclass(frozen=True, slots=True)
class LiveRun:
    """A run as read from W&B, with config already unwrapped from ``{"value": ...}``."""

    entity: str
    project: str
    id: str  # the run id (W&B's ``name``)
    storage_id: str  # W&B's opaque ``id``, what UpsertBucket takes
    name: str | None  # display name
    state: str
    created_at: datetime  # timezone-aware UTC
    config: Mapping[str, Any]  # includes internal keys such as _wandb
    summary: Mapping[str, Any]
    tags: tuple[str, ...]
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    project_internal_id: int | None = None  # numeric project id, what deleteFiles takes
    files: tuple[LiveFile, ...] | None = None  # None: not fetched
    artifacts: tuple[LiveArtifact, ...] | None = None  # versions it logged; None: not fetched

    @property
    def path(self) -> str:
        """``entity/project/run_id``."""
        return f"{self.entity}/{self.project}/{self.id}"


# --------------------------------------------------------------------------- plan


class ChangeKind(enum.Enum):
    """What a change touches."""

    CONFIG = "config"
    SUMMARY = "summary"
    TAGS = "tags"
    NAME = "name"
    NOTES = "notes"
    GROUP = "group"
    JOB_TYPE = "job_type"
    FILE = "file"
    ARTIFACT = "artifact"
    STATE = "state"  # imports only
    CREATED_AT = "created_at"  # imports only: a run's created time, set when it is created
    HISTORY = "history"  # imports only: history rows to append


class RunAction(enum.Enum):
    """What apply does to a run: update it in place, or create it (imports)."""

    UPDATE = "update"
    CREATE = "create"


class ChangeOp(enum.Enum):
    """What a change does."""

    SET = "set"
    UNSET = "unset"
    RENAME = "rename"
    ADD = "add"
    REMOVE = "remove"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One planned difference on one run.

    ===========  ==========================  ====================  ======================
    kind / op    key                          before                after
    ===========  ==========================  ====================  ======================
    config/      key path                     old value (None and   new value
    summary set                               ``created`` if absent)
    .. unset     key path                     old value             None
    .. rename    new key path (``from_key``    value at old key      same value, at ``key``
                 holds the old one)
    tags add     the tag, as ``(tag,)``       None                  the tag
    tags remove  the tag, as ``(tag,)``       the tag               None
    name/notes/  ``()``                       old string or None    new string
    group/job_type set
    file delete  ``(file name,)``             the LiveFile          None
    file add     ``(file name,)``             None                  the file's size; ``source``
                                                                    is the local backup to
                                                                    re-upload (undo plans), or
                                                                    None for an import (the
                                                                    source run's file);
                                                                    ``checksum`` its sha256 and
                                                                    ``file`` the deleted original
    state/       ``()``                       old value or None     new value (imports)
    created_at set
    history add  ``()``                       the destination's     {rows, first_step,
                                              last ``_step`` or     last_step, metrics} of the
                                              None                  rows to append (imports)
    artifact     ``(collection:vN,)``         the LiveArtifact      None
    delete
    artifact set ``(collection:vN, "ttl")``       the live TTL as text  the desired TTL as text
                 (``artifact`` is the version)    (``VersionTTL``'s     (``30d``, ``none``,
                                                  ``str``)              ``inherit``)
    ===========  ==========================  ====================  ======================

    ``before``/``after`` of a config or summary change hold JSON-safe values.
    ``detail`` is for display only (e.g. the size and age of a file, or why a config
    removal cannot be promised).
    """

    kind: ChangeKind
    op: ChangeOp
    key: KeyPath
    before: Any
    after: Any
    rules: tuple[str, ...]
    from_key: KeyPath | None = None  # rename only
    file: LiveFile | None = None  # file delete only
    artifact: LiveArtifact | None = None  # artifact delete only
    created: bool = False  # config/summary set of a key that did not exist
    source: str | None = None  # file add (undo plans): local path of the backup to re-upload
    detail: str | None = None  # display only
    checksum: str | None = None  # file add (undo plans): ``sha256:<hex>`` the backup must have
    # file delete, display only: the original upload time retention ranked the file by, when an undo
    # re-uploaded it (``summary._reconcile.restored_files``); None: W&B's ``updated_at`` was used
    original_updated_at: datetime | None = None

    @property
    def path(self) -> str:
        """Display form of what this change touches, e.g. ``config.optimizer.lr`` or
        ``tags["lr-0.1"]`` (a key that holds a dot, bracket or space is quoted); display only."""
        text = self.kind.value
        for part in self.key:
            plain = part and not any(ch in part for ch in '.[]"\'') and not any(ch.isspace() for ch in part)
            text += f".{part}" if plain else "[" + _json_quote(part) + "]"
        return text


@dataclass(frozen=True, slots=True)
class KeepReason:
    """Why a retention candidate survives: which rule considered it and which selector spared it.

    ``selector`` is the spec's own word (``keep``, ``keep_last``, ``keep_daily``, ``keep_within``,
    ``unless_top``, ``older_than``, ``larger_than``) or ``system_file``; ``detail`` says which
    glob, rank, period or duration (``"model-best.*"``, ``1 of 3``, ``2026-05-03``, ``30d``).
    """

    rule: str
    selector: str
    detail: str | None = None

    def __str__(self) -> str:
        return self.selector if self.detail is None else f"{self.selector} {self.detail}"


@dataclass(frozen=True, slots=True)
class KeptFile:
    """A file that a files rule's ``delete`` globs name but that survives the plan, and why."""

    file: LiveFile
    reasons: tuple[KeepReason, ...]
    original_updated_at: datetime | None = None  # display only, as ``Change.original_updated_at``


@dataclass(frozen=True, slots=True)
class KeptArtifact:
    """An artifact version that an artifacts rule considers but that survives the plan, and why."""

    artifact: LiveArtifact
    reasons: tuple[KeepReason, ...]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything planned for one run.

    ``fingerprint`` hashes exactly the live fields listed in ``fingerprint_fields``
    (see ``reconcile.fingerprint``); apply re-reads the run and refuses it as stale if
    the hash differs. ``errors`` are plan errors for this run (a missing template key,
    two rules disagreeing, a rename that would destroy data): a plan with errors is not
    applied.
    """

    entity: str
    project: str
    run_id: str
    storage_id: str
    name: str | None  # display name when planned; display only
    fingerprint: str
    fingerprint_fields: tuple[tuple[str, ...], ...]
    changes: tuple[Change, ...]
    config_writes: ConfigWrites = ConfigWrites.MERGE
    project_internal_id: int | None = None
    errors: tuple[str, ...] = ()
    kept: tuple[KeptFile, ...] = ()  # retention candidates that survive (display only, never applied)
    kept_artifacts: tuple[KeptArtifact, ...] = ()  # candidate versions it logged that survive (display only)
    action: RunAction = RunAction.UPDATE
    source: str | None = None  # the import that planned this run (None: rules)
    source_fingerprint: str | None = None  # imports: the source run as planned; apply re-reads it
    field_digests: tuple[str, ...] = ()  # one per fingerprint field: names what drifted (may be empty)
    source_rows: tuple[Mapping[str, Any], ...] | None = None  # imports: the history rows to write, if carried
    source_revision: str | None = None  # imports carrying rows: what apply checks instead of re-reading them

    @property
    def path(self) -> str:
        """``entity/project/run_id``."""
        return f"{self.entity}/{self.project}/{self.run_id}"

    @property
    def attribute_changes(self) -> int:
        """Changes of the run's own fields (not files, artifact versions or history rows)."""
        return sum(1 for c in self.changes
                   if c.kind not in (ChangeKind.FILE, ChangeKind.ARTIFACT, ChangeKind.HISTORY))

    @property
    def artifact_deletions(self) -> tuple[Change, ...]:
        """The artifact versions (logged by this run) to delete."""
        return tuple(c for c in self.changes if c.kind is ChangeKind.ARTIFACT and c.op is ChangeOp.DELETE)

    @property
    def artifact_ttl_changes(self) -> tuple[Change, ...]:
        """The TTLs to set on artifact versions (logged by this run)."""
        return tuple(c for c in self.changes if c.kind is ChangeKind.ARTIFACT and c.op is ChangeOp.SET)

    @property
    def file_uploads(self) -> tuple[Change, ...]:
        """The files this run gets (an import's files, an undo plan's re-uploads)."""
        return tuple(c for c in self.changes if c.kind is ChangeKind.FILE and c.op is ChangeOp.ADD)

    @property
    def file_deletions(self) -> tuple[Change, ...]:
        """The file deletions of this run (not the re-uploads of an undo plan)."""
        return tuple(c for c in self.changes if c.kind is ChangeKind.FILE and c.op is ChangeOp.DELETE)


class PlanLike(Protocol):
    """What apply needs of a plan: a ``Plan`` in memory, or a saved one read run by run
    (``planfile.SavedPlan``), whose totals were counted when it was opened."""

    @property
    def spec_digest(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def base_url(self) -> str: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def format_version(self) -> int: ...
    @property
    def changed_count(self) -> int: ...
    @property
    def file_deletions(self) -> int: ...
    @property
    def bytes_to_free(self) -> int: ...
    @property
    def artifact_deletions(self) -> int: ...
    @property
    def artifact_bytes_to_free(self) -> int: ...
    @property
    def error_count(self) -> int: ...
    @property
    def has_errors(self) -> bool: ...
    @property
    def sources(self) -> tuple[tuple[str, MlflowSource | WandbSource], ...]: ...
    def iter_runs(self) -> Iterator[RunPlan]: ...


@dataclass(frozen=True, slots=True)
class Totals:
    """What a plan's runs add up to, counted run by run (``plus``) as they are planned or read, so no
    count ever walks a whole plan again: ``Plan``'s counts and the saved plan's ``summary``."""

    runs_to_create: int = 0
    runs_to_change: int = 0  # runs updated in place with at least one change
    attribute_changes: int = 0  # of the runs updated in place
    files_to_delete: int = 0
    bytes_to_free: int = 0
    artifact_versions_to_delete: int = 0
    artifact_bytes_to_free: int = 0
    artifact_ttls_to_set: int = 0
    run_errors: int = 0
    files_to_upload: int = 0
    bytes_to_upload: int = 0
    runs_with_errors: int = 0
    runs_with_kept: int = 0  # runs with surviving retention candidates (files or versions)
    runs_imported: int = 0  # runs an import planned

    @classmethod
    def of(cls, runs: Iterable[RunPlan]) -> Totals:
        """The totals of ``runs``."""
        totals = cls()
        for run in runs:
            totals = totals.plus(run)
        return totals

    def plus(self, run: RunPlan) -> Totals:
        """These totals with ``run`` counted too."""
        changed = bool(run.changes)
        updated = changed and run.action is RunAction.UPDATE
        deletions, uploads, artifacts = run.file_deletions, run.file_uploads, run.artifact_deletions
        return Totals(
            runs_to_create=self.runs_to_create + (changed and run.action is RunAction.CREATE),
            runs_to_change=self.runs_to_change + updated,
            attribute_changes=self.attribute_changes + (run.attribute_changes if updated else 0),
            files_to_delete=self.files_to_delete + len(deletions),
            bytes_to_free=self.bytes_to_free + sum(c.file.size for c in deletions if c.file is not None),
            artifact_versions_to_delete=self.artifact_versions_to_delete + len(artifacts),
            artifact_bytes_to_free=self.artifact_bytes_to_free
            + sum(c.artifact.size for c in artifacts if c.artifact is not None),
            artifact_ttls_to_set=self.artifact_ttls_to_set + len(run.artifact_ttl_changes),
            run_errors=self.run_errors + len(run.errors),
            files_to_upload=self.files_to_upload + len(uploads),
            bytes_to_upload=self.bytes_to_upload + sum(c.after for c in uploads if isinstance(c.after, int)),
            runs_with_errors=self.runs_with_errors + bool(run.errors),
            runs_with_kept=self.runs_with_kept + bool(run.kept or run.kept_artifacts),
            runs_imported=self.runs_imported + bool(run.source),
        )

    def summary(self) -> dict[str, int]:
        """The plan file's ``summary`` object."""
        return {"runs_to_create": self.runs_to_create, "runs_to_change": self.runs_to_change,
                "attribute_changes": self.attribute_changes, "files_to_delete": self.files_to_delete,
                "bytes_to_free": self.bytes_to_free,
                "artifact_versions_to_delete": self.artifact_versions_to_delete,
                "artifact_bytes_to_free": self.artifact_bytes_to_free,
                "artifact_ttls_to_set": self.artifact_ttls_to_set}


class CountedRuns(Sequence[RunPlan]):
    """A plan's runs kept outside memory (the planner's spool, ``reconcile.spool``): read back one at a
    time, in order, with their ``totals`` counted when they were stored."""

    @property
    @abstractmethod
    def totals(self) -> Totals:
        """What the runs add up to."""

    @abstractmethod
    def run_dicts(self) -> Iterator[dict[str, Any]]:
        """The runs in order as the saved plan's run objects, one at a time (what they are stored as)."""

    def close(self) -> None:
        """Release what holds the runs (they cannot be read afterwards)."""


class RunsWhere:
    """Those of a plan's runs that ``keep`` selects, read one at a time as they are iterated; how many
    there are is known without reading them."""

    __slots__ = ("_count", "_keep", "_runs")

    def __init__(self, runs: Iterable[RunPlan], keep: Callable[[RunPlan], bool], count: int) -> None:
        self._runs, self._keep, self._count = runs, keep, count

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[RunPlan]:
        if not self._count:
            return iter(())
        return (run for run in self._runs if self._keep(run))


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole plan: only runs with changes, errors or kept retention candidates (files or versions)
    are listed.

    ``runs`` is a tuple, or the planner's spool of them on disk (``CountedRuns``): read in order, one
    at a time. Every count comes from ``totals``, counted once, never from walking the runs.
    """

    spec_digest: str
    created_at: datetime  # timezone-aware UTC; also the reference time for ages
    base_url: str  # the W&B server it was planned against; apply refuses another
    runs: Sequence[RunPlan]
    errors: tuple[str, ...] = ()  # plan-wide errors (limits, a rule matching nothing it must)
    warnings: tuple[str, ...] = ()  # plan-wide warnings (a files rule whose globs match no file)
    skipped_running: int = 0  # runs left alone because they are running/pending
    runs_read: int = 0  # runs read from W&B while planning (display only)
    limits: Limits = field(default_factory=Limits)
    format_version: int = FORMAT_VERSION
    sources: tuple[tuple[str, MlflowSource | WandbSource], ...] = ()  # imports planned: (name, source)
    totals: Totals = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        totals = self.runs.totals if isinstance(self.runs, CountedRuns) else Totals.of(self.runs)
        object.__setattr__(self, "totals", totals)

    def close(self) -> None:
        """Release the spool file the planner's runs are read from (a no-op for runs in memory)."""
        if isinstance(self.runs, CountedRuns):
            self.runs.close()

    @property
    def changed_runs(self) -> RunsWhere:
        """Runs with at least one change (runs to create included)."""
        return RunsWhere(self.runs, lambda r: bool(r.changes), self.changed_count)

    @property
    def changed_count(self) -> int:
        """How many runs have at least one change."""
        return self.totals.runs_to_create + self.totals.runs_to_change

    @property
    def error_count(self) -> int:
        """Plan-wide errors plus every run's."""
        return len(self.errors) + self.totals.run_errors

    def iter_runs(self) -> Iterator[RunPlan]:
        """The runs, in order (a saved plan being applied reads them from disk one at a time instead)."""
        return iter(self.runs)

    @property
    def created_runs(self) -> RunsWhere:
        """Runs to create (imports)."""
        return RunsWhere(self.runs, lambda r: bool(r.changes) and r.action is RunAction.CREATE,
                         self.totals.runs_to_create)

    @property
    def updated_runs(self) -> RunsWhere:
        """Runs to update in place."""
        return RunsWhere(self.runs, lambda r: bool(r.changes) and r.action is RunAction.UPDATE,
                         self.totals.runs_to_change)

    @property
    def error_runs(self) -> RunsWhere:
        """Runs with errors of their own."""
        return RunsWhere(self.runs, lambda r: bool(r.errors), self.totals.runs_with_errors)

    @property
    def kept_runs(self) -> RunsWhere:
        """Runs with surviving retention candidates (``--show-kept``)."""
        return RunsWhere(self.runs, lambda r: bool(r.kept or r.kept_artifacts), self.totals.runs_with_kept)

    @property
    def has_imports(self) -> bool:
        """Whether an import planned any of the runs."""
        return self.totals.runs_imported > 0

    @property
    def attribute_changes(self) -> int:
        """Total non-file changes of the runs updated in place."""
        return self.totals.attribute_changes

    @property
    def file_uploads(self) -> int:
        """Total files to upload (imports, undo re-uploads)."""
        return self.totals.files_to_upload

    @property
    def bytes_to_upload(self) -> int:
        """Total size of the files to upload."""
        return self.totals.bytes_to_upload

    @property
    def file_deletions(self) -> int:
        """Total files to delete."""
        return self.totals.files_to_delete

    @property
    def bytes_to_free(self) -> int:
        """Total size of the files to delete."""
        return self.totals.bytes_to_free

    @property
    def artifact_deletions(self) -> int:
        """Total artifact versions to delete."""
        return self.totals.artifact_versions_to_delete

    @property
    def artifact_ttl_changes(self) -> int:
        """Total artifact version TTLs to set."""
        return self.totals.artifact_ttls_to_set

    @property
    def artifact_bytes_to_free(self) -> int:
        """Total size of the artifact versions to delete."""
        return self.totals.artifact_bytes_to_free

    @property
    def has_errors(self) -> bool:
        """Whether the plan (or any run in it) has errors; such a plan is not applied."""
        return self.error_count > 0

    @property
    def has_changes(self) -> bool:
        """Whether applying would change anything."""
        return self.changed_count > 0
