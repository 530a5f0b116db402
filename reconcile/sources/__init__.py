"""Sources of imported runs (``imports:`` in the spec): what a source run looks like once
mapped to W&B's fields, and what a reader of a source provides.

A reader maps its system's runs to ``SourceRun`` (the MLflow mapping lives in
``reconcile.sources.mlflow_source``, the one module that imports ``mlflow``); the import
planner compares them with the destination's live runs, and apply streams their history
and files. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file of a source run, at its path in the destination run (an MLflow artifact path)."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class SourceRun:
    """A source run mapped to W&B's fields; history is summarised here and streamed by the reader."""

    id: str  # the destination run's id too
    name: str | None
    state: str  # W&B's: finished, failed, crashed, killed, running, pending
    created_at: datetime  # timezone-aware UTC
    config: Mapping[str, Any]
    summary: Mapping[str, Any]
    tags: tuple[str, ...]
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None
    steps: tuple[int, ...] = ()  # the ``_step`` of each history row, ascending
    history_keys: tuple[str, ...] = ()  # the metrics the history holds, sorted
    files: tuple[SourceFile, ...] = ()
    event_rows: int = 0  # system-metric rows (W&B sources)
    latest: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Each history key's last logged point as ``(step, timestamp)``, where the source reports it without
    reading the history (MLflow's latest metrics): what ``revision`` sees of the history."""
    rows: tuple[Mapping[str, Any], ...] | None = None
    """The history rows in step order, where the reader read them with the run (MLflow): the plan
    carries them to apply, which then checks ``revision`` instead of reading the history again."""

    @property
    def last_step(self) -> int | None:
        """The ``_step`` of the last history row."""
        return self.steps[-1] if self.steps else None

    @property
    def file_bytes(self) -> int:
        """Total size of the files."""
        return sum(f.size for f in self.files)

    def fingerprint(self) -> str:
        """A hash of everything this import would write; apply refuses the run as stale if it changed."""
        fields = {
            "id": self.id, "name": self.name, "state": self.state, "created_at": self.created_at.isoformat(),
            "config": self.config, "summary": self.summary, "tags": sorted(self.tags), "notes": self.notes,
            "group": self.group, "job_type": self.job_type, "steps": self.steps,
            "history_keys": self.history_keys,
            "files": sorted((f.name, f.size) for f in self.files),
            **({"event_rows": self.event_rows} if self.event_rows else {}),
        }
        return _digest(fields)

    def revision(self) -> str:
        """A hash of what the reader's ``peek`` sees: everything ``fingerprint`` covers but the history's
        steps, plus each key's last logged point (``latest``). A point logged after the last one, a new
        key, or any other field changing changes it; a point added below a key's last step does not."""
        fields = {
            "id": self.id, "name": self.name, "state": self.state, "created_at": self.created_at.isoformat(),
            "config": self.config, "summary": self.summary, "tags": sorted(self.tags), "notes": self.notes,
            "group": self.group, "job_type": self.job_type, "history_keys": self.history_keys,
            "latest": {key: list(point) for key, point in self.latest.items()},
            "files": sorted((f.name, f.size) for f in self.files),
        }
        return _digest(fields)


def _digest(fields: Mapping[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, default=str, allow_nan=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SourceRead:
    """One source run read fresh at apply time: the mapped run and its history rows in step order
    (each with ``_step`` and ``_timestamp``, seconds)."""

    run: SourceRun
    rows: tuple[Mapping[str, Any], ...]
    events: tuple[Mapping[str, Any], ...] = ()  # system-metric rows (W&B sources)


class SourceReader(Protocol):
    """What the import planner and apply need from a source."""

    description: str  # where the runs come from, for messages (never holds a credential)

    def runs(self, ids: frozenset[str] | None = None) -> Iterator[SourceRun]:
        """Every source run the import selects, mapped (``ids``: only those of these ids)."""
        ...

    def history(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's history rows in step order, each with ``_step`` and ``_timestamp`` (seconds)."""
        ...

    def read(self, run_id: str) -> SourceRead | None:
        """A fresh read of one source run, mapped, with its history rows (None: it is gone)."""
        ...

    def peek(self, run_id: str) -> SourceRun | None:
        """A fresh read of one source run without its history (``steps`` and ``rows`` empty), enough for
        ``SourceRun.revision`` (None: it is gone)."""
        ...

    def download(self, run_id: str, name: str, dest: Path) -> None:
        """Write the run's file ``name`` to ``dest`` (its parent exists)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_reader(name: str, source: Any, *, parallelism: int = 10) -> SourceReader:
    """The reader of import ``name``'s source (``MlflowSource`` / ``WandbSource``); the MLflow client is
    imported only here, when an import needs it."""
    from reconcile.errors import PlanError
    from reconcile.models import MlflowSource

    if isinstance(source, MlflowSource):
        try:
            from reconcile.sources.mlflow_source import MlflowReader
        except ImportError as exc:
            raise PlanError(f"import {name!r} reads MLflow, which needs the mlflow client: "
                            "pip install 'wandb-reconcile[mlflow]'") from exc
        return MlflowReader(name, source, parallelism=parallelism)
    from reconcile.sources.wandb_source import WandbReader

    return WandbReader(name, source, parallelism=parallelism)
