"""Applying an import's runs over ``MemoryBackend`` and an in-memory source: creation, resume without
writing anything twice, staleness of source and destination, failures reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reconcile.apply import events as ev
from reconcile.apply.executor import ApplyResult, apply_plan
from reconcile.apply.journal import Journal
from reconcile.backend import RunCreate, RunUpdate
from reconcile.backend.memory import MemoryBackend
from reconcile.errors import BackendError
from reconcile.import_planner import plan_import
from reconcile.models import Import, LiveRun, Location, MlflowSource, Plan, Target
from reconcile.planfile import plan_from_dict, plan_to_dict
from reconcile.sources import SourceFile, SourceRead, SourceReader, SourceRun

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
ENTRY = Import("churn", Location("s.yaml", 3, 5), MlflowSource(("churn",), "http://127.0.0.1:1"),
               Target("acme", "churn"))
FILES = {"model/weights.bin": b"w" * 300, "report.txt": b"hello"}


def rows(count: int) -> tuple[dict[str, Any], ...]:
    return tuple({"loss": 1.0 / (s + 1), "_step": s, "_timestamp": START.timestamp() + s + 1}
                 for s in range(count))


def source_run(run_id: str = "r1", *, steps: int = 2500, state: str = "failed", **fields: Any) -> SourceRun:
    values: dict[str, Any] = {
        "id": run_id, "name": f"name-{run_id}", "state": state, "created_at": START,
        "config": {"lr": "0.1"}, "summary": {"loss": 1.0 / steps}, "tags": ("team:churn",),
        "notes": "a note", "group": "churn", "steps": tuple(range(steps)), "history_keys": ("loss",),
        "files": tuple(SourceFile(n, len(b)) for n, b in FILES.items()),
    }
    values.update(fields)
    return SourceRun(**values)


class MemorySource:
    """A SourceReader over dicts (the MLflow reader is tested against a real server elsewhere)."""

    description = "memory"

    def __init__(self, *runs: SourceRun) -> None:
        self.runs_by_id = {r.id: r for r in runs}
        self.downloads: list[str] = []
        self.reads: list[str] = []  # read: the run with every history
        self.peeks: list[str] = []  # peek: the run without its histories

    def runs(self, ids: frozenset[str] | None = None) -> Iterator[SourceRun]:
        yield from (r for r in self.runs_by_id.values() if ids is None or r.id in ids)

    def history(self, run_id: str) -> Iterator[dict[str, Any]]:
        yield from rows(len(self.runs_by_id[run_id].steps))

    def read(self, run_id: str) -> SourceRead | None:
        self.reads.append(run_id)
        run = self.runs_by_id.get(run_id)
        return None if run is None else SourceRead(run, rows(len(run.steps)))

    def peek(self, run_id: str) -> SourceRun | None:
        self.peeks.append(run_id)
        run = self.runs_by_id.get(run_id)
        return None if run is None else dataclasses.replace(run, steps=(), rows=None)

    def download(self, run_id: str, name: str, dest: Path) -> None:
        self.downloads.append(name)
        dest.write_bytes(FILES[name])

    def close(self) -> None:
        pass


def import_plan(*runs: SourceRun, live: Mapping[str, LiveRun] | None = None) -> Plan:
    planned = [plan_import(ENTRY, "acme", "churn", r, (live or {}).get(r.id)) for r in runs]
    plan = Plan(spec_digest="sha256:x", created_at=START, base_url="memory://",
                runs=tuple(p for p in planned if p is not None), sources=((ENTRY.name, ENTRY.source),))
    return plan_from_dict(plan_to_dict(plan))  # as apply reads it from the saved file


def apply(plan: Plan, backend: MemoryBackend, source: SourceReader, tmp_path: Path,
          events: list[ev.ApplyEvent] | None = None) -> ApplyResult:
    journal = Journal.open(tmp_path / "plan.journal.jsonl", plan)
    try:
        return apply_plan(plan, backend, journal=journal, sleep=lambda _: None,
                          observers=[events.append] if events is not None else (),
                          open_source=lambda name, src: source)
    finally:
        journal.close()


def test_a_created_run_gets_every_field_all_history_rows_its_files_and_its_state(tmp_path: Path) -> None:
    run = source_run()
    backend = MemoryBackend()
    result = apply(import_plan(run), backend, MemorySource(run), tmp_path)
    assert result.ok, (result.failed, result.stale, result.unconverged)
    assert (result.runs_created, result.history_rows, result.files_uploaded) == (1, 2500, 2)
    live = backend.run("acme", "churn", "r1")
    assert (live.name, live.notes, live.group, live.tags, live.state) == (
        "name-r1", "a note", "churn", ("team:churn",), "failed")
    assert live.config == {"lr": "0.1"}
    assert live.summary == {"loss": 1.0 / 2500, "_step": 2499}
    history = backend.history[live.storage_id]
    assert sorted(history) == list(range(2500))  # one line per row, at offsets 0..2499
    assert [history[i]["_step"] for i in range(2500)] == list(range(2500))
    assert all(history[i]["_runtime"] == history[i]["_timestamp"] - START.timestamp() for i in (0, 2499))
    assert backend.exitcodes[live.storage_id] == 1  # a failed run completes with a non-zero exit code
    assert {f.name: f.size for f in live.files or ()} == {n: len(b) for n, b in FILES.items()}
    assert "1 run created, 2500 history rows and 2 files (305 bytes) uploaded" in result.summary_line
    # The state and summary go last: a run whose summary shows its last step has all its history.
    names = [name for name, _ in backend.calls if name in ("create_run", "append_history", "upload_files",
                                                            "update_run", "history_position", "list_files",
                                                            "get_runs")]
    written = names[names.index("create_run"):names.index("update_run") + 1]
    # A run created now has no history or files: nothing is read between its creation and its state.
    assert written == ["create_run", *["append_history"] * 3, "upload_files", "update_run"]
    sent = [arg for name, arg in backend.calls if name == "append_history"]
    # 3 chunks of rows (1000 a request), the last one carrying `complete` with the exit code
    assert [(offset, count, code) for _, offset, count, code in sent] == [(0, 1000, None), (1000, 1000, None),
                                                                          (2000, 500, 1)]
    assert [arg for name, arg in backend.calls if name == "upload_files"] == [
        ("acme/churn/r1", ("model/weights.bin", "report.txt"))]  # both files with one CreateRunFiles


def test_a_resumed_import_sends_only_what_the_destination_lacks(tmp_path: Path) -> None:
    """Killed after the creation, 1,200 rows and one file: the second apply sends the other rows and
    file only; no row or file is written twice."""
    run = source_run()
    plan = import_plan(run)
    backend = MemoryBackend()
    backend.create_run(RunCreate("acme", "churn", "r1", config={"lr": "0.1"}))
    live = backend.run("acme", "churn", "r1")
    backend.append_history(live, 0, rows(1200))
    report = tmp_path / "report.txt"
    report.write_bytes(FILES["report.txt"])
    backend.upload_file(live, report, "report.txt")
    journal = Journal.open(tmp_path / "plan.journal.jsonl", plan)
    journal(ev.RunStarted("acme/churn/r1"))  # what the killed apply recorded
    journal.close()
    backend.calls.clear()
    source = MemorySource(run)
    result = apply(plan, backend, source, tmp_path)
    assert result.ok, (result.failed, result.stale, result.unconverged)
    assert (result.history_rows, result.files_uploaded) == (1300, 1)
    sent = [arg for name, arg in backend.calls if name == "append_history"]
    assert [(offset, count, code) for _, offset, count, code in sent] == [(1200, 1000, None), (2200, 300, 1)]
    assert sorted(backend.history[live.storage_id]) == list(range(2500))
    assert source.downloads == ["model/weights.bin"]


def test_a_source_changed_since_the_plan_is_stale_and_nothing_is_written(tmp_path: Path) -> None:
    planned = source_run()
    now = dataclasses.replace(planned, config={"lr": "0.2"})
    backend = MemoryBackend()
    result = apply(import_plan(planned), backend, MemorySource(now), tmp_path)
    assert [run for run, _ in result.stale] == ["acme/churn/r1"]
    assert "source run changed since the plan" in result.stale[0][1]
    assert backend.runs == {}
    assert [name for name, _ in backend.calls if name != "get_runs"] == []


def test_a_run_created_in_the_destination_since_the_plan_is_stale(tmp_path: Path) -> None:
    run = source_run()
    plan = import_plan(run)
    backend = MemoryBackend()
    backend.create_run(RunCreate("acme", "churn", "r1", display_name="someone else's"))
    backend.calls.clear()
    result = apply(plan, backend, MemorySource(run), tmp_path)
    assert "created in the destination since the plan" in result.stale[0][1]
    assert backend.run("acme", "churn", "r1").name == "someone else's"
    assert [name for name, _ in backend.calls if name not in ("get_runs",)] == []


def test_a_source_file_of_another_size_than_planned_fails_the_run_saying_so(tmp_path: Path) -> None:
    """report.txt planned at 5 bytes but downloaded as 1: the run fails naming both sizes ("1 byte")."""
    run = source_run(steps=3)

    class Shrunk(MemorySource):
        def download(self, run_id: str, name: str, dest: Path) -> None:
            dest.write_bytes(b"h" if name == "report.txt" else FILES[name])

    result = apply(import_plan(run), MemoryBackend(), Shrunk(run), tmp_path)
    [(path, message)] = result.failed
    assert path == "acme/churn/r1"
    assert "the source file report.txt has 1 byte, the plan expects 5; plan again" in message


def test_a_run_that_fails_is_reported_and_the_others_are_imported(tmp_path: Path) -> None:
    good, bad = source_run("good", steps=3), source_run("bad", steps=3)
    backend = MemoryBackend()
    real = backend.create_run

    def refuse(create: RunCreate) -> str:
        if create.run_id == "bad":
            raise BackendError("W&B refused the request: project is read-only")
        return real(create)

    backend.create_run = refuse  # type: ignore[method-assign]
    events: list[ev.ApplyEvent] = []
    result = apply(import_plan(good, bad), backend, MemorySource(good, bad), tmp_path, events)
    assert result.failed == [("acme/churn/bad", "W&B refused the request: project is read-only")]
    assert not result.ok
    assert any(isinstance(e, ev.RunApplied) and e.run == "acme/churn/good" for e in events)


def test_an_update_appends_the_rows_after_the_last_step_and_sets_the_changed_fields(tmp_path: Path) -> None:
    before = source_run(steps=10, state="running")
    backend = MemoryBackend()
    apply(import_plan(before), backend, MemorySource(before), tmp_path / "first")
    after = dataclasses.replace(before, steps=tuple(range(12)), state="finished", summary={"loss": 1 / 12},
                                tags=("team:churn", "v2"))
    live = backend.run("acme", "churn", "r1")
    plan = import_plan(after, live={"r1": dataclasses.replace(live, files=live.files)})
    (tmp_path / "second").mkdir()
    result = apply(plan, backend, MemorySource(after), tmp_path / "second")
    assert result.ok, (result.failed, result.stale, result.unconverged)
    assert (result.runs_created, result.history_rows, result.files_uploaded) == (0, 2, 0)
    live = backend.run("acme", "churn", "r1")
    assert sorted(backend.history[live.storage_id]) == list(range(12))
    assert (live.state, live.tags, live.summary["_step"]) == ("finished", ("team:churn", "v2"), 11)
    updates = [arg for name, arg in backend.calls if name == "update_run"]
    assert isinstance(updates[-1], RunUpdate) and updates[-1].state == "finished"


def test_an_update_of_a_run_deleted_since_the_plan_is_stale(tmp_path: Path) -> None:
    before = source_run(steps=3)
    backend = MemoryBackend()
    apply(import_plan(before), backend, MemorySource(before), tmp_path / "first")
    after = dataclasses.replace(before, steps=tuple(range(5)))
    live = backend.run("acme", "churn", "r1")
    plan = import_plan(after, live={"r1": live})
    backend.runs.clear()  # someone deleted the run
    (tmp_path / "second").mkdir()
    result = apply(plan, backend, MemorySource(after), tmp_path / "second")
    assert result.stale == [("acme/churn/r1", "the run no longer exists in the destination; nothing was "
                                              "written (plan again)")]
    assert result.failed == []


def test_system_metrics_are_sent_before_the_request_that_completes_the_run(tmp_path: Path) -> None:
    """A W&B source's system-metric rows go to wandb-events.jsonl before the history request that carries
    `complete` (which finishes the run), never after it."""
    run = source_run(steps=3, event_rows=2)
    samples = ({"_timestamp": START.timestamp() + 1, "system.cpu": 5.0},
               {"_timestamp": START.timestamp() + 2, "system.cpu": 7.0})

    class WithEvents(MemorySource):
        def read(self, run_id: str) -> SourceRead | None:
            found = super().read(run_id)
            return None if found is None else SourceRead(found.run, found.rows, samples)

    backend = MemoryBackend()
    result = apply(import_plan(run), backend, WithEvents(run), tmp_path)
    assert result.ok, (result.failed, result.stale, result.unconverged)
    live = backend.run("acme", "churn", "r1")
    assert [backend.events[live.storage_id][i]["system.cpu"] for i in (0, 1)] == [5.0, 7.0]
    sent = [arg for name, arg in backend.calls if name == "append_history"]
    assert [(count, code) for _, _, count, code in sent] == [(2, None), (3, 1)]  # events, rows + complete


def carrying(run: SourceRun, scale: float = 2.0) -> SourceRun:
    """``run`` as a reader that reads the rows with the run (MLflow) maps it: its rows (values ``scale``
    times those ``MemorySource.read`` returns, to tell them apart) and each key's last point."""
    carried = tuple({**row, "loss": row["loss"] * scale} for row in rows(len(run.steps)))
    last = carried[-1]
    return dataclasses.replace(run, rows=carried,
                               latest={"loss": (last["_step"], int(last["_timestamp"] * 1000))})


def test_a_plan_that_carries_the_rows_writes_them_without_reading_the_history_again(tmp_path: Path) -> None:
    run = carrying(source_run(steps=30))
    plan = import_plan(run)
    assert plan.runs[0].source_rows == run.rows and plan.runs[0].source_revision == run.revision()
    source, backend = MemorySource(run), MemoryBackend()
    result = apply(plan, backend, source, tmp_path)
    assert result.ok, (result.failed, result.stale, result.unconverged)
    assert (source.peeks, source.reads) == (["r1"], [])  # one read without histories, none with
    history = backend.history[backend.run("acme", "churn", "r1").storage_id]
    assert [history[i]["loss"] for i in range(30)] == [row["loss"] for row in run.rows or ()]  # the plan's


def test_a_point_logged_after_the_last_step_since_a_plan_that_carries_rows_makes_the_run_stale(
        tmp_path: Path) -> None:
    planned = carrying(source_run(steps=30))
    stamp = planned.latest["loss"][1] + 1000
    now = dataclasses.replace(planned, steps=tuple(range(31)), summary={"loss": 0.5},
                              latest={"loss": (30, stamp)})
    source, backend = MemorySource(now), MemoryBackend()
    result = apply(import_plan(planned), backend, source, tmp_path)
    assert [run for run, _ in result.stale] == ["acme/churn/r1"]
    assert "source run changed since the plan" in result.stale[0][1]
    assert (source.peeks, source.reads) == (["r1"], ["r1"])  # another revision: read whole, then compared
    assert backend.runs == {}


def test_another_revision_with_the_planned_content_writes_the_rows_read_now(tmp_path: Path) -> None:
    """The last point logged again at its step with a later time (same value): the revision differs, the
    whole run read again is as planned, so it is written, with the rows just read."""
    planned = carrying(source_run(steps=30))
    step, stamp = planned.latest["loss"]
    now = dataclasses.replace(planned, latest={"loss": (step, stamp + 1)})
    source, backend = MemorySource(now), MemoryBackend()
    result = apply(import_plan(planned), backend, source, tmp_path)
    assert result.ok, (result.failed, result.stale, result.unconverged)
    assert (source.peeks, source.reads) == (["r1"], ["r1"])
    history = backend.history[backend.run("acme", "churn", "r1").storage_id]
    assert [history[i]["loss"] for i in range(30)] == [row["loss"] for row in rows(30)]  # read now


def test_a_source_run_gone_since_a_plan_that_carries_rows_is_stale(tmp_path: Path) -> None:
    source, backend = MemorySource(), MemoryBackend()
    result = apply(import_plan(carrying(source_run(steps=3))), backend, source, tmp_path)
    assert [run for run, _ in result.stale] == ["acme/churn/r1"]
    assert "no longer exists in import 'churn'" in result.stale[0][1]
    assert (source.peeks, source.reads, backend.runs) == (["r1"], [], {})


def test_an_update_carries_only_the_rows_after_the_destinations_last_step(tmp_path: Path) -> None:
    before = carrying(source_run(steps=10, state="running"))
    backend = MemoryBackend()
    apply(import_plan(before), backend, MemorySource(before), tmp_path / "first")
    after = carrying(dataclasses.replace(before, steps=tuple(range(12)), state="finished"), scale=3.0)
    live = backend.run("acme", "churn", "r1")
    plan = import_plan(after, live={"r1": live})
    assert [row["_step"] for row in plan.runs[0].source_rows or ()] == [10, 11]
    (tmp_path / "second").mkdir()
    source = MemorySource(after)
    result = apply(plan, backend, source, tmp_path / "second")
    assert result.ok, (result.failed, result.stale, result.unconverged)
    assert (result.history_rows, source.reads) == (2, [])
    history = backend.history[live.storage_id]
    assert [history[i]["loss"] for i in (9, 10, 11)] == [
        (before.rows or ())[9]["loss"], (after.rows or ())[10]["loss"], (after.rows or ())[11]["loss"]]
