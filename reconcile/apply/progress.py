"""Observers that show apply's progress: rich's live bar on a terminal, plain lines or
structlog events otherwise. Each stale, failed or unconverged run is reported exactly once.

All of them only read events; none computes anything the executor has not reported.

    terminal, console logs   ProgressBar (problems printed above the bar)
    no terminal, console     ProblemLines on stderr (+ LogObserver for -v detail, problems skipped)
    --log-format json        LogObserver (problems are its warning/error events)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from humanfriendly.text import pluralize
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from reconcile.apply import events as ev
from reconcile.render.common import printable, size_text

_FINISHING = (ev.RunApplied, ev.RunStale, ev.RunFailed, ev.RunUnconverged, ev.RunSkipped)
_PROBLEMS = (ev.RunStale, ev.RunFailed, ev.RunUnconverged)


def problem_line(event: ev.ApplyEvent) -> str | None:
    """The one line that reports a run that was not applied (``None`` for any other event)."""
    if isinstance(event, ev.RunStale):
        line = f"stale: {event.run}: {event.reason}"
    elif isinstance(event, ev.RunFailed):
        line = f"failed: {event.run}: {event.message}"
    elif isinstance(event, ev.RunUnconverged):
        line = f"did not converge: {event.run}: {', '.join(event.fields)} did not take"
    elif isinstance(event, ev.RunSkipped) and event.outcome in ("stale", "unconverged"):
        # Finished as a problem by an earlier apply of this plan: still not applied.
        kind = "stale" if event.outcome == "stale" else "did not converge"
        line = f"{kind} (earlier apply of this plan): {event.run}: {event.detail}"
    else:
        return None
    return printable(line)


class ProblemLines:
    """One plain line per run that was not applied, on ``stream``, as it happens."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: ev.ApplyEvent) -> None:
        """Observer: print the problem line of ``event``, if it has one."""
        line = problem_line(event)
        if line is not None:
            self.stream.write(line + "\n")
            self.stream.flush()


class ProgressBar:
    """rich's live bar on a terminal: runs done/total, files deleted and bytes freed as they happen,
    elapsed time and an ETA from the rate of runs actually done. Problem lines go above it.

    A run counts as done when its writes went out (``RunWritten``), or when it ends without them
    (stale, failed, skipped): the read-back that confirms it is batched (up to 50 runs at a time), and
    counting only then held the bar at 0 until the last batch, with no rate for an ETA.
    """

    def __init__(self, stream: TextIO, *, color: bool = True,
                 clock: Callable[[], float] | None = None) -> None:
        self.console = Console(file=stream, no_color=not color, highlight=False)
        self.clock = clock
        self.files = self.bytes = 0
        self.total_files = self.total_bytes = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._written: set[str] = set()  # runs counted at RunWritten, whose final event is still to come

    @property
    def progress(self) -> Progress | None:
        """rich's Progress while the bar is live (``None`` before the start and after the end)."""
        return self._progress

    def _counts(self) -> str:
        files = f"{self.files}/{pluralize(self.total_files, 'file')} deleted" if self.total_files else ""
        freed = f"{size_text(self.bytes)} of {size_text(self.total_bytes)} freed" if self.total_bytes else ""
        return ", ".join(part for part in (files, freed) if part)

    def _start(self, event: ev.ApplyStart) -> None:
        self.total_files, self.total_bytes = event.total_files, event.total_bytes
        extra: dict[str, Any] = {} if self.clock is None else {"get_time": self.clock}
        self._progress = Progress(
            TextColumn("Applying"), BarColumn(), MofNCompleteColumn(),
            TextColumn("run" if event.total_runs == 1 else "runs"),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=False, redirect_stdout=False,
            redirect_stderr=False, **extra)
        self._task = self._progress.add_task("apply", total=max(event.total_runs, 1), counts=self._counts())
        self._progress.start()

    def __call__(self, event: ev.ApplyEvent) -> None:
        """Observer: start, advance and stop the bar; print problem lines above it."""
        if isinstance(event, ev.ApplyStart):
            self._start(event)
            return
        progress, task = self._progress, self._task
        if progress is None or task is None:
            return
        line = problem_line(event)
        if line is not None:
            progress.console.print(Text(line))
        if isinstance(event, ev.RunFilesDeleted):
            self.files += event.files
            self.bytes += event.bytes
        elif isinstance(event, ev.RunSkipped):
            self.files += event.files_deleted
            self.bytes += event.bytes_freed
        if isinstance(event, ev.RunWritten):
            self._written.add(event.run)
            progress.update(task, advance=1, counts=self._counts())
        elif isinstance(event, _FINISHING):
            counted = event.run in self._written
            self._written.discard(event.run)
            progress.update(task, advance=0 if counted else 1, counts=self._counts())
        elif isinstance(event, ev.RunFilesDeleted):
            progress.update(task, counts=self._counts())
        elif isinstance(event, ev.ApplyComplete):
            progress.stop()
            self._progress = None


class LogObserver:
    """One structlog event per apply event, bound with ``run=<entity/project/id>``.

    ``problems=False`` leaves stale/failed/unconverged runs to ``ProblemLines`` (console logs),
    so each is reported once.
    """

    def __init__(self, *, problems: bool = True) -> None:
        self.log = structlog.get_logger("reconcile.apply")
        self.problems = problems

    def __call__(self, event: ev.ApplyEvent) -> None:
        """Observer: log the event at a level that matches its outcome."""
        log = self.log
        if isinstance(event, _PROBLEMS) and not self.problems:
            return
        if isinstance(event, ev.ApplyStart):
            log.info("apply_start", runs=event.total_runs, files=event.total_files, bytes=event.total_bytes)
        elif isinstance(event, ev.ApplyComplete):
            log.info("apply_complete", summary=event.result.summary_line)
        elif isinstance(event, ev.RunStale):
            log.warning("run_stale", run=event.run, reason=event.reason, fields=list(event.fields))
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
        elif isinstance(event, ev.RunFilesUploaded | ev.RunImported):
            name = "run_files_uploaded" if isinstance(event, ev.RunFilesUploaded) else "run_imported"
            log.debug(name, **dataclasses.asdict(event))
        elif isinstance(event, ev.RunStarted | ev.RunWritten):
            log.debug("run_started" if isinstance(event, ev.RunStarted) else "run_written", run=event.run)


def observers_for(stream: TextIO, *, json_logs: bool = False, color: bool = True) -> list[ev.Observer]:
    """The observers that report an apply on ``stream`` (see the module docstring)."""
    if json_logs:
        return [LogObserver()]
    if stream.isatty():
        return [ProgressBar(stream, color=color)]
    return [LogObserver(problems=False), ProblemLines(stream)]
