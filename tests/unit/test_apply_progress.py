"""The observers that report an apply: rich's bar on a terminal (ETA from the rate actually seen, counts
as they happen), one plain line per run not applied, structlog events with --log-format json."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from structlog.testing import capture_logs

from reconcile.apply import events as ev
from reconcile.apply.executor import ApplyResult
from reconcile.apply.progress import LogObserver, ProblemLines, ProgressBar, observers_for

MiB = 1024 * 1024


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _shown(bar: ProgressBar) -> str:
    """The bar's line as it is drawn now."""
    assert bar.progress is not None
    out = io.StringIO()
    Console(file=out, width=200).print(bar.progress.get_renderable())
    return out.getvalue().strip()


def test_progress_bar_eta_comes_from_the_rate_seen_and_counts_as_they_happen() -> None:
    """Runs finishing every 2 s: after 5 of 10 the ETA is 10 s; files and bytes count on each delete."""
    now = [0.0]
    bar = ProgressBar(_Terminal(), clock=lambda: now[0])
    bar(ev.ApplyStart(total_runs=10, total_files=20, total_bytes=20 * MiB, plan_digest="d"))
    assert "0/10 runs" in _shown(bar)
    for i in range(5):
        now[0] += 2
        bar(ev.RunFilesDeleted(f"a/b/r{i}", files=2, bytes=2 * MiB))
        assert f"{2 * i + 2}/20 files deleted, {2 * i + 2} MiB of 20 MiB freed" in _shown(bar)
        bar(ev.RunApplied(f"a/b/r{i}", changes=1, files_deleted=2, bytes_freed=2 * MiB))
    line = _shown(bar)
    assert "5/10 runs" in line
    assert re.search(r"0:00:10\s+ETA\s+0:00:10", line), line  # 10 s elapsed, 5 runs left at 0.5 runs/s
    now[0] += 30  # a slow stretch: the estimate follows what is seen
    bar(ev.RunApplied("a/b/r5", changes=1, files_deleted=0, bytes_freed=0))
    assert "6/10 runs" in _shown(bar)
    assert not re.search(r"ETA\s+0:00:10", _shown(bar))
    bar(ev.ApplyComplete(result=ApplyResult()))
    assert bar.progress is None


def test_progress_bar_counts_a_run_when_its_writes_are_done_and_once() -> None:
    """A run counts at RunWritten (its read-back comes later, batched); its final event, whatever it is,
    does not count it again; a run that ends unwritten (stale) counts at its end."""
    now = [0.0]
    bar = ProgressBar(_Terminal(), clock=lambda: now[0])
    bar(ev.ApplyStart(total_runs=4, total_files=0, total_bytes=0, plan_digest="d"))
    for i in range(3):
        now[0] += 1
        bar(ev.RunWritten(f"a/b/r{i}"))
    line = _shown(bar)
    assert "3/4 runs" in line
    assert re.search(r"ETA\s+0:00:01", line), line  # one run left at one run a second
    bar(ev.RunApplied("a/b/r0", changes=1, files_deleted=0, bytes_freed=0))
    bar(ev.RunUnconverged("a/b/r1", ("notes",)))
    bar(ev.RunFailed("a/b/r2", "written, but reading it back failed"))
    assert "3/4 runs" in _shown(bar)
    bar(ev.RunStale("a/b/r3", "tags changed since the plan", ("tags",)))
    assert "4/4 runs" in _shown(bar)
    bar(ev.ApplyComplete(result=ApplyResult()))


def test_progress_bar_prints_each_problem_once_above_the_bar() -> None:
    """A stale run is one line in the terminal output, naming its drifted fields; it advances the bar."""
    screen = _Terminal()
    bar = ProgressBar(screen, color=False)
    bar(ev.ApplyStart(total_runs=2, total_files=0, total_bytes=0, plan_digest="d"))
    bar(ev.RunStale("acme/vision/b", "tags, files changed since the plan", ("tags", "files")))
    bar(ev.RunUnconverged("acme/vision/c", ("config.lr",)))
    assert "2/2 runs" in _shown(bar)
    bar(ev.ApplyComplete(result=ApplyResult()))
    output = screen.getvalue()
    assert output.count("stale: acme/vision/b: tags, files changed since the plan") == 1
    assert output.count("did not converge: acme/vision/c: config.lr did not take") == 1


def test_progress_bar_of_one_run_says_run() -> None:
    """An apply of one run reads "0/1 run", not "0/1 runs"."""
    bar = ProgressBar(_Terminal(), color=False)
    bar(ev.ApplyStart(total_runs=1, total_files=0, total_bytes=0, plan_digest="d"))
    assert re.search(r"0/1 run\b(?!s)", _shown(bar)), _shown(bar)
    bar(ev.ApplyComplete(result=ApplyResult()))


def test_problem_lines_one_per_run_not_applied() -> None:
    """Without a terminal: a plain line per stale, failed or unconverged run, nothing for the others."""
    out = io.StringIO()
    lines = ProblemLines(out)
    lines(ev.RunApplied("acme/vision/a", changes=1, files_deleted=0, bytes_freed=0))
    lines(ev.RunStale("acme/vision/b", "tags changed since the plan", ("tags",)))
    lines(ev.RunFailed("acme/vision/c", "HTTP 500"))
    lines(ev.RunSkipped("acme/vision/d", outcome="stale", detail="files changed since the plan"))
    assert out.getvalue().splitlines() == [
        "stale: acme/vision/b: tags changed since the plan",
        "failed: acme/vision/c: HTTP 500",
        "stale (earlier apply of this plan): acme/vision/d: files changed since the plan"]


def test_log_observer_leaves_problems_to_the_plain_lines_when_asked() -> None:
    """Console logs beside ProblemLines do not log stale/failed/unconverged runs a second time."""
    with capture_logs() as logs:
        LogObserver(problems=False)(ev.RunStale("acme/vision/b", "x", ("tags",)))
        LogObserver()(ev.RunStale("acme/vision/b", "x", ("tags",)))
    assert [(e["event"], e["fields"]) for e in logs] == [("run_stale", ["tags"])]


@pytest.mark.parametrize(("terminal", "json_logs", "kinds"), [
    (True, False, [ProgressBar]),
    (False, False, [LogObserver, ProblemLines]),
    (True, True, [LogObserver]),
    (False, True, [LogObserver]),
])
def test_observers_for_each_output(terminal: bool, json_logs: bool, kinds: list[type]) -> None:
    """A bar on a terminal, plain problem lines without one, only structured events with JSON logs."""
    stream = _Terminal() if terminal else io.StringIO()
    assert [type(o) for o in observers_for(stream, json_logs=json_logs)] == kinds
