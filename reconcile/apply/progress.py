"""Observers that show apply's progress: a live bar on a TTY, structlog lines otherwise.

Both only read events; neither computes anything the executor has not reported.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click
import structlog

from reconcile.apply import events as ev
from reconcile.render.common import size_text

_FINISHING = (ev.RunApplied, ev.RunStale, ev.RunFailed, ev.RunUnconverged, ev.RunSkipped)


class ProgressBar:
    """A one-line bar on stderr: runs done/total, files deleted, bytes freed, ETA (click)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.files = 0
        self.bytes = 0
        self._bar: Any = None

    def _status(self, _item: Any) -> str:
        return f"{self.files} files deleted ({size_text(self.bytes)} freed)"

    def __call__(self, event: ev.ApplyEvent) -> None:
        """Observer: start, advance and finish the bar."""
        if isinstance(event, ev.ApplyStart):
            self._bar = click.progressbar(length=max(event.total_runs, 1), label="Applying", file=self.stream,
                                          show_eta=True, show_pos=True, item_show_func=self._status)
            self._bar.__enter__()
        elif isinstance(event, ev.RunFilesDeleted):
            self.files += event.files
            self.bytes += event.bytes
        elif isinstance(event, _FINISHING) and self._bar is not None:
            if isinstance(event, ev.RunSkipped):
                self.files += event.files_deleted
                self.bytes += event.bytes_freed
            self._bar.update(1)
        elif isinstance(event, ev.ApplyComplete) and self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class LogObserver:
    """One structlog line per event, bound with ``run=<entity/project/id>``."""

    def __init__(self) -> None:
        self.log = structlog.get_logger("reconcile.apply")

    def __call__(self, event: ev.ApplyEvent) -> None:
        """Observer: log the event at a level that matches its outcome."""
        log = self.log
        if isinstance(event, ev.ApplyStart):
            log.info("apply_start", runs=event.total_runs, files=event.total_files, bytes=event.total_bytes)
        elif isinstance(event, ev.ApplyComplete):
            log.info("apply_complete", summary=event.result.summary_line)
        elif isinstance(event, ev.RunStale):
            log.warning("run_stale", run=event.run, reason=event.reason)
        elif isinstance(event, ev.RunFailed):
            log.error("run_failed", run=event.run, error=event.message)
        elif isinstance(event, ev.RunUnconverged):
            log.error("run_unconverged", run=event.run, fields=list(event.fields))
        elif isinstance(event, ev.RunApplied):
            log.info("run_applied", run=event.run, changes=event.changes, files_deleted=event.files_deleted,
                     bytes_freed=event.bytes_freed)
        elif isinstance(event, ev.RunSkipped):
            log.info("run_skipped", run=event.run, outcome=event.outcome, detail=event.detail or None)
        elif isinstance(event, ev.RunFilesDeleted):
            log.debug("run_files_deleted", run=event.run, files=event.files, bytes=event.bytes)
        elif isinstance(event, ev.RunMetadataWritten):
            log.debug("run_metadata_written", run=event.run, already=event.already)
        elif isinstance(event, ev.RunFilesUploaded):
            log.debug("run_files_uploaded", run=event.run, files=event.files)
        elif isinstance(event, ev.RunStarted):
            log.debug("run_started", run=event.run)


def observers_for(stream: TextIO | None = None) -> list[ev.Observer]:
    """The bar on a TTY, structlog lines otherwise (problems are always logged too)."""
    target = stream or sys.stderr
    if target.isatty():
        return [ProgressBar(target), _ProblemsOnly()]
    return [LogObserver()]


class _ProblemsOnly(LogObserver):
    """Beside the bar: only stale/failed/unconverged lines (the bar shows the rest)."""

    def __call__(self, event: ev.ApplyEvent) -> None:
        if isinstance(event, ev.RunStale | ev.RunFailed | ev.RunUnconverged):
            super().__call__(event)
