"""The events apply emits. The executor never prints: the journal, the progress bar and the
log are observers of these (Terraform's ``hook.go`` / ``views/json/message_types.go``).

Order for one apply: ``ApplyStart``, then per run either ``RunSkipped`` (the journal says it
is finished) or ``RunStarted`` followed by any of ``RunMetadataWritten`` / ``RunFilesDeleted``
/ ``RunFilesUploaded`` / ``RunImported``, then ``RunWritten`` when all its writes went out, and exactly one
of ``RunApplied`` / ``RunStale`` / ``RunFailed`` / ``RunUnconverged`` (after the batched read-back);
finally ``ApplyComplete``. A stale run may also come without
``RunStarted`` (nothing was about to be written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconcile.apply.backup import Backup


@dataclass(frozen=True, slots=True)
class UndoRecord:
    """What the undo plan needs for one applied run (also kept in the journal).

    ``inverted`` indexes the run's planned changes that took effect (their inverse goes into
    the undo plan); ``restored_files`` are the backups of deletions that took effect;
    ``lost_files`` the ``(name, size)`` of deletions that took effect without a backup.
    """

    fingerprint: str
    fingerprint_fields: tuple[tuple[str, ...], ...]
    inverted: tuple[int, ...]
    restored_files: tuple[Backup, ...] = ()
    lost_files: tuple[tuple[str, int], ...] = ()
    field_digests: tuple[str, ...] = ()  # one per fingerprint field: a stale undo names what drifted

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form for the journal."""
        return {"fingerprint": self.fingerprint,
                "fingerprint_fields": [list(f) for f in self.fingerprint_fields],
                "inverted": list(self.inverted),
                "restored_files": [b.to_json() for b in self.restored_files],
                "lost_files": [list(f) for f in self.lost_files],
                "field_digests": list(self.field_digests)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UndoRecord:
        """Inverse of ``to_json``."""
        return cls(fingerprint=str(data["fingerprint"]),
                   fingerprint_fields=tuple(tuple(f) for f in data["fingerprint_fields"]),
                   inverted=tuple(int(i) for i in data["inverted"]),
                   restored_files=tuple(Backup.from_json(b) for b in data.get("restored_files") or ()),
                   lost_files=tuple((str(n), int(s)) for n, s in data.get("lost_files") or ()),
                   field_digests=tuple(str(d) for d in data.get("field_digests") or ()))


@dataclass(frozen=True, slots=True)
class ApplyStart:
    """Apply begins: how much there is to do."""

    total_runs: int
    total_files: int
    total_bytes: int
    plan_digest: str


@dataclass(frozen=True, slots=True)
class RunStarted:
    """About to write to a run (recorded before any write, so a crash leaves a trace)."""

    run: str


@dataclass(frozen=True, slots=True)
class RunMetadataWritten:
    """The run's UpsertBucket took (or its metadata was found already written)."""

    run: str
    already: bool = False  # True: found already written, nothing sent now


@dataclass(frozen=True, slots=True)
class RunArtifactsDeleted:
    """The run's planned artifact versions are deleted (or were already gone)."""

    run: str
    versions: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RunArtifactTTLsSet:
    """The run's planned artifact version TTLs are set (or were found set already)."""

    run: str
    versions: int  # set now (not those found set already)


@dataclass(frozen=True, slots=True)
class RunFilesDeleted:
    """The run's deleteFiles request succeeded (or nothing was left to delete)."""

    run: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RunFilesUploaded:
    """Backed-up files were re-uploaded to the run (undo plans)."""

    run: str
    files: int


@dataclass(frozen=True, slots=True)
class RunImported:
    """An imported run's writes went out (imports): what this attempt sent, before read-back."""

    run: str
    created: bool  # the plan created the run (else it updated one imported before)
    rows: int  # history rows sent now (rows an earlier attempt sent are not sent again)
    files: int  # files uploaded now
    bytes: int


@dataclass(frozen=True, slots=True)
class RunWritten:
    """Every write of the run went out; its read-back (batched with other runs') is still to come."""

    run: str


@dataclass(frozen=True, slots=True)
class RunApplied:
    """Every planned change of the run is in place (read back and compared)."""

    run: str
    changes: int
    files_deleted: int
    bytes_freed: int
    undo: UndoRecord | None = None


@dataclass(frozen=True, slots=True)
class RunStale:
    """The run changed since the plan: nothing was written to it. ``fields`` are the ones that
    drifted (``tags``, ``config.lr``, ``files``) when the plan recorded per-field digests."""

    run: str
    reason: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunFailed:
    """Writing the run failed even after retries; ``message`` is the server's.

    A run that fails after its writes began is read back first: ``undo`` then holds what did take
    effect (a metadata write before a refused deletion, say), so the undo plan restores it, and
    ``files_deleted``/``bytes_freed`` the deletions that did take.
    """

    run: str
    message: str
    undo: UndoRecord | None = None
    files_deleted: int = 0
    bytes_freed: int = 0
    unchecked: bool = False  # writes may have taken effect, but reading the run back failed: no undo


@dataclass(frozen=True, slots=True)
class RunUnconverged:
    """Written, but read back some planned fields did not take."""

    run: str
    fields: tuple[str, ...]
    undo: UndoRecord | None = None
    files_deleted: int = 0  # the deletions that did take
    bytes_freed: int = 0


@dataclass(frozen=True, slots=True)
class RunSkipped:
    """The journal says this run was already finished by an earlier apply of this plan."""

    run: str
    outcome: str  # the journal phase: done, stale or unconverged
    detail: str = ""
    files_deleted: int = 0
    bytes_freed: int = 0
    undo: UndoRecord | None = None


@dataclass(frozen=True, slots=True)
class ApplyComplete:
    """Apply finished; ``result`` is the ``ApplyResult``."""

    result: Any = field(repr=False)


ApplyEvent = (ApplyStart | RunStarted | RunMetadataWritten | RunFilesDeleted | RunFilesUploaded | RunApplied
              | RunStale | RunFailed | RunUnconverged | RunSkipped | ApplyComplete | RunArtifactsDeleted
              | RunArtifactTTLsSet | RunImported | RunWritten)

Observer = Callable[[ApplyEvent], None]
"""Anything called with each event, in order, one at a time."""
