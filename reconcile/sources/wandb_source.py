"""Reading runs from another W&B server (``imports[].from.wandb``), through the same read side as
live runs: a second ``Backend`` (the one W&B seam, ``reconcile.backend.wandb_api``) pointed at the
source server, streamed with ``iter_runs`` (``reconcile.reader``'s ``RunSource`` shape) and mapped to
``SourceRun``.

The mapping (README, "Imports"): same run id; display name, config (without W&B's own ``_wandb``),
summary, tags, notes, group, job type and state as they are; history: every row, read by windows of
steps as ``scan_history`` pages; system metrics: every row of the run's events; files: every file,
at its name. The source's API key is read from the environment variable the import names, when the
reader opens; it is never stored, logged or printed (errors are redacted by the backend).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reconcile.backend import Backend
from reconcile.errors import AuthError, NotFound
from reconcile.log import register_secret
from reconcile.models import LiveFile, LiveRun, WandbSource
from reconcile.sources import SourceFile, SourceRead, SourceRun

_KEPT = 4096
"""Runs whose file listings (with download URLs) a reader keeps for ``download``."""


def source_backend(name: str, source: WandbSource, environ: Mapping[str, str] | None = None) -> Backend:
    """A backend on the source server, with the key from ``source.api_key_env``."""
    from reconcile.backend.wandb_api import WandbBackend

    env = os.environ if environ is None else environ
    key = env.get(source.api_key_env)
    if not key:
        raise AuthError(f"import {name!r} reads {source.base_url} with the API key in the environment "
                        f"variable {source.api_key_env}, which is not set: export {source.api_key_env}=<the "
                        "source server's key>")
    register_secret(key)  # redacted from every log event and message from now on
    return WandbBackend(base_url=source.base_url, api_key=key)


def map_run(live: LiveRun, rows: list[dict[str, Any]], events: int,
            files: tuple[LiveFile, ...]) -> SourceRun:
    """A source server's run as the destination should hold it."""
    steps = tuple(int(row["_step"]) for row in rows if isinstance(row.get("_step"), int))
    keys = sorted({k for row in rows for k in row if not k.startswith("_")})
    return SourceRun(
        id=live.id, name=live.name, state=live.state, created_at=live.created_at,
        config={k: v for k, v in live.config.items() if not k.startswith("_")},
        summary=dict(live.summary), tags=tuple(live.tags), notes=live.notes or None, group=live.group or None,
        job_type=live.job_type or None, steps=steps, history_keys=tuple(keys),
        files=tuple(SourceFile(f.name, f.size) for f in files), event_rows=events,
    )


class WandbReader:
    """Runs of the source project the import's filters select, mapped (histories read concurrently)."""

    def __init__(self, name: str, source: WandbSource, *, parallelism: int = 10,
                 backend: Backend | None = None) -> None:
        self.name = name
        self.source = source
        self.description = f"W&B at {source.base_url} ({source.entity}/{source.project})"
        self.parallelism = parallelism
        self.backend = backend if backend is not None else source_backend(name, source)
        self._files: dict[str, tuple[LiveRun, dict[str, LiveFile]]] = {}  # run id -> its listed files
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the source backend."""
        self.backend.close()

    def runs(self, ids: frozenset[str] | None = None) -> Iterator[SourceRun]:
        """Every run the filters select (``ids``: of these ids), as ``reconcile.reader`` streams live runs."""
        filters = dict(self.source.filters) if self.source.filters else None
        if ids is not None:
            by_id = {"name": {"$in": sorted(ids)}}
            filters = by_id if filters is None else {"$and": [filters, by_id]}
        listed = (run for run in self.backend.iter_runs(self.source.entity, self.source.project, filters,
                                                        with_files=True) if ids is None or run.id in ids)
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="wandb-source") as pool:
            yield from pool.map(lambda live: self._read(live).run, listed)

    def history(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's history rows in step order."""
        read = self.read(run_id)
        yield from (dict(row) for row in (read.rows if read is not None else ()))

    def read(self, run_id: str) -> SourceRead | None:
        """A fresh read of one source run with its history and system-metric rows; None once it is gone
        or no longer selected by the filters. Its files are listed with their download URLs, kept for
        ``download``."""
        found = self.backend.get_runs(self.source.entity, self.source.project, [run_id])
        live = found.get(run_id)
        if live is None:
            return None
        if self.source.filters:
            selected = self.backend.iter_runs(self.source.entity, self.source.project,
                                              {"$and": [dict(self.source.filters), {"name": run_id}]})
            if not any(r.id == run_id for r in selected):
                return None
        files = self.backend.list_files(live)
        with self._lock:
            if len(self._files) >= _KEPT:
                self._files.pop(next(iter(self._files)))
            self._files[run_id] = (live, {f.name: f for f in files})
        return self._read(dataclasses.replace(live, files=files))

    def peek(self, run_id: str) -> SourceRun | None:
        """The run read fresh, as ``read`` reads it (a W&B source's plan does not carry its rows, so apply
        reads them again anyway)."""
        read = self.read(run_id)
        return None if read is None else read.run

    def _read(self, live: LiveRun) -> SourceRead:
        files = live.files if live.files is not None else self.backend.list_files(live)
        position = self.backend.history_position(live)  # once, for the rows and the system metrics
        rows = list(self.backend.history_rows(live, position=position))
        events = tuple(self.backend.history_rows(live, events=True, position=position))
        return SourceRead(map_run(live, rows, len(events), files), tuple(rows), events)

    def download(self, run_id: str, name: str, dest: Path) -> None:
        """Download the source run's file ``name`` to ``dest``: by the URL the last ``read`` listed, else
        listed again."""
        with self._lock:
            kept = self._files.get(run_id)
        if kept is None or name not in kept[1]:
            run = self.backend.get_runs(self.source.entity, self.source.project, [run_id]).get(run_id)
            if run is None:
                raise NotFound(f"import {self.name!r}: the source run {run_id} no longer exists")
            kept = (run, {f.name: f for f in self.backend.list_files(run)})
        live, files = kept
        if name not in files:
            raise NotFound(f"import {self.name!r}: the source run {run_id} has no file {name!r} any more")
        self.backend.download_file(live, files[name], dest)
