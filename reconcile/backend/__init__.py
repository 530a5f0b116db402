"""The one seam to W&B: everything reconcile reads or writes goes through ``Backend``.

``reconcile.backend.wandb_api.WandbBackend`` implements it with the ``wandb`` library
(the only module that imports wandb). Every GraphQL document it sends is built from the
types, fields and arguments the official client's own documents use (see
``../shared/wandb-protocol.md``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconcile.models import LiveArtifact, LiveFile, LiveRun, VersionTTL


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """One UpsertBucket: ``None`` means "leave that field unchanged" (it is not sent).

    ``config`` is the *unwrapped* config to send: on a merging server only the changed
    subtrees (the server deep-merges them), on a replacing server the whole new config.
    ``summary`` is always the whole new summary (W&B replaces summaryMetrics).
    """

    storage_id: str
    display_name: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] | None = None
    group: str | None = None
    job_type: str | None = None
    config: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] | None = None
    state: str | None = None  # imports only: the run's state (running, finished, failed, ...)

    @property
    def is_empty(self) -> bool:
        """Whether nothing would be sent but the id."""
        return all(
            v is None
            for v in (self.display_name, self.notes, self.tags, self.group, self.job_type, self.config,
                      self.summary, self.state)
        )


@dataclass(frozen=True, slots=True)
class RunCreate:
    """UpsertBucket's create form (``wandb.init``'s): a run named ``run_id`` in ``entity/project``,
    which the server creates (with the project) if it does not exist; ``None`` fields are not sent.
    Sending it for a run that exists updates that run with the fields given (the upsert)."""

    entity: str
    project: str
    run_id: str
    display_name: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] | None = None
    group: str | None = None
    job_type: str | None = None
    config: Mapping[str, Any] | None = None  # unwrapped, as RunUpdate's


@dataclass(frozen=True, slots=True)
class HistoryPosition:
    """Where a run's history ends, as the SDK reads it to resume (wandb-core's RunResumeStatus):
    how many lines ``wandb-history.jsonl`` holds (the next file_stream offset) and the ``_step`` of
    the last row (None: no rows)."""

    lines: int
    last_step: int | None
    events_lines: int = 0  # lines of ``wandb-events.jsonl`` (system metrics)


class Backend(Protocol):
    """What reconcile needs from W&B. Implementations translate their library's errors
    into ``reconcile.errors.BackendError`` subclasses."""

    base_url: str

    def iter_runs(
        self, entity: str, project: str, filters: Mapping[str, Any] | None = None, *,
        per_page: int | None = None,
        with_files: bool = False,
    ) -> Iterator[LiveRun]:
        """Stream the project's runs matching ``filters`` page by page, config and summary
        included; ``with_files``: every file of each run too (without download URLs), else
        ``LiveRun.files is None``."""
        ...

    def get_runs(self, entity: str, project: str, run_ids: Sequence[str], *,
                 with_files: bool = False) -> dict[str, LiveRun]:
        """Fresh reads of these runs (never cached), batched, with their files if asked;
        absent ids are missing."""
        ...

    def list_files(self, run: LiveRun) -> tuple[LiveFile, ...]:
        """All uploaded files of the run, every page, with their download URLs."""
        ...

    def update_run(self, update: RunUpdate) -> None:
        """Send one UpsertBucket with only the fields that are set."""
        ...

    def delete_files(self, run: LiveRun, file_ids: Sequence[str]) -> None:
        """Delete these files of the run in one deleteFiles request."""
        ...

    def create_run(self, create: RunCreate) -> str:
        """Send UpsertBucket's create form (idempotent: it upserts by run id); the run's storage id."""
        ...

    def history_position(self, run: LiveRun) -> HistoryPosition:
        """A fresh read of where the run's history ends (line count and last ``_step``)."""
        ...

    def append_history(self, run: LiveRun, offset: int, rows: Sequence[Mapping[str, Any]], *,
                       exitcode: int | None = None, events: bool = False) -> None:
        """One file_stream request: ``rows`` as ``wandb-history.jsonl`` lines (``events``: as
        ``wandb-events.jsonl`` system-metric lines) from line ``offset``; with ``exitcode``, the run's
        ``complete`` signal too (as ``wandb.finish`` sends it)."""
        ...

    def history_rows(self, run: LiveRun, *, events: bool = False,
                     position: HistoryPosition | None = None) -> Iterator[dict[str, Any]]:
        """Every history row of the run in step order (``events``: its system-metric rows), up to
        ``position`` if given (a ``history_position`` just read), else up to where it ends now."""
        ...

    def download_file(self, run: LiveRun, file: LiveFile, dest: Path) -> None:
        """Download the file's bytes to ``dest`` (parent directories must exist)."""
        ...

    def upload_file(self, run: LiveRun, source: Path, name: str) -> None:
        """Upload ``source`` as the run file ``name``."""
        ...

    def upload_files(self, run: LiveRun, files: Sequence[tuple[Path, str]]) -> None:
        """Upload each ``(source, name)`` as the run file ``name``, with one CreateRunFiles for all."""
        ...

    def list_artifacts(self, run: LiveRun) -> tuple[LiveArtifact, ...]:
        """Every live artifact version the run logged, every page."""
        ...

    def get_artifact(self, run: LiveRun, artifact_id: str) -> LiveArtifact | None:
        """A fresh read of one version (its aliases now); ``None`` once it is deleted."""
        ...

    def delete_artifact(self, run: LiveRun, artifact: LiveArtifact, *, delete_aliases: bool) -> None:
        """Delete the version with the client's DeleteArtifact (``delete_aliases`` drops its aliases)."""
        ...

    def download_artifact(self, run: LiveRun, artifact: LiveArtifact, dest: Path) -> list[tuple[str, int]]:
        """Download every file of the version under ``dest``; ``(name, size)`` of each, sizes checked."""
        ...

    def set_artifact_ttl(self, run: LiveRun, artifact: LiveArtifact, ttl: VersionTTL) -> None:
        """Set the version's TTL with the client's UpdateArtifact (``artifact.ttl = ...; .save()``)."""
        ...

    def close(self) -> None:
        """Release connections and the wandb-core service."""
        ...
