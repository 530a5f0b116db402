"""Applying a saved plan streams it: read run by run from disk, the undo plan written as the runs
finish, nothing kept per finished run; and the result is the same as applying the plan held in memory."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from reconcile.apply import events as ev
from reconcile.apply.executor import BATCH_SIZE, MAX_VERIFYING, apply_plan, check_run
from reconcile.apply.journal import Journal
from reconcile.apply.undo import UndoWriter
from reconcile.backend.memory import MemoryBackend
from reconcile.errors import PlanError
from reconcile.models import FORMAT_VERSION, Plan, RunPlan
from reconcile.planfile import SavedPlan, content_digest_of, open_plan, read_plan, write_plan
from tests.unit.apply_helpers import config_set, file_delete, live_file, live_run, make_plan, run_plan


def plan_and_backend(count: int) -> tuple[Plan, MemoryBackend]:
    """``count`` runs of three files each; the plan changes a config key and deletes one file per run."""
    runs = [live_run(f"r{i:04d}", storage_id=f"sid-{i}",
                     files=[live_file(f"f{i}-{j}", f"ckpt/{j}.pt", 100 + j) for j in range(3)])
            for i in range(count)]
    plans = [run_plan(r, [config_set("lr", 0.1, 0.5), file_delete((r.files or ())[0])]) for r in runs]
    return make_plan(*plans), MemoryBackend(runs)


def test_a_saved_plan_applies_run_by_run_with_the_undo_plan_written_as_it_goes(tmp_path: Path) -> None:
    """The saved plan's totals come from the one checking pass; the undo plan goes to disk (a valid
    plan, the same runs as the in-memory apply's); the journal keeps nothing per finished run."""
    plan, backend = plan_and_backend(25)
    memory_plan, memory_backend = plan_and_backend(25)
    write_plan(plan, tmp_path / "plan.json")
    saved = open_plan(tmp_path / "plan.json", checks=(check_run,))
    assert (saved.changed_count, saved.file_deletions, saved.bytes_to_free) == (25, 25, 2500)
    assert saved.digest == content_digest_of(plan)  # the journal identity of the file and of the plan agree
    undo_path = tmp_path / "plan.undo.json"
    writer = UndoWriter(saved, undo_path)
    journal = Journal.open(tmp_path / "j.jsonl", saved)
    result = apply_plan(saved, backend, journal=journal, parallelism=4, no_backup=True, undo=writer)
    journal.close()
    saved.close()
    assert result.ok and result.runs_changed == 25 and result.files_deleted == 25
    assert result.undo is None  # it went to disk
    assert journal.runs == {}  # nothing kept per finished run
    assert result.undo_summary.runs == 25 and result.lost.count == 25 and len(result.lost.examples) == 20
    memory_journal = Journal.open(tmp_path / "m.jsonl", memory_plan)
    in_memory = apply_plan(memory_plan, memory_backend, journal=memory_journal, parallelism=4, no_backup=True)
    memory_journal.close()
    assert backend.runs == memory_backend.runs
    written = read_plan(undo_path)  # a valid saved plan (its digest and counts check out)
    assert in_memory.undo is not None
    assert sorted(written.runs, key=lambda r: r.path) == list(in_memory.undo.runs)  # in finishing order
    assert not list(tmp_path.glob(".plan.undo.json.*"))  # the spool is gone


class _Counted:
    """A plan whose runs are handed out one at a time, watching how far the executor reads ahead of
    the runs it has finished (an observer counts the finished ones)."""

    checked = (check_run,)  # as a SavedPlan: every run was checked when it was opened

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.finished = 0
        self.ahead: list[int] = []  # runs handed out but not finished, each time one is handed out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plan, name)

    def iter_runs(self) -> Iterator[RunPlan]:
        for handed, rp in enumerate(self.plan.runs):
            self.ahead.append(handed - self.finished)
            yield rp

    def observe(self, event: ev.ApplyEvent) -> None:
        if isinstance(event, ev.RunApplied | ev.RunStale | ev.RunFailed | ev.RunUnconverged | ev.RunSkipped):
            self.finished += 1


@pytest.mark.parametrize("parallelism", [1, 4])
def test_apply_reads_the_plan_lazily_and_holds_a_bounded_number_of_runs(tmp_path: Path,
                                                                        parallelism: int) -> None:
    """However many runs the plan has (here 600), the executor takes the next run from the plan only
    when the runs before it are nearly done: never more than the writes in flight, one batch being
    read back and the read-backs in flight ahead of the finished ones. The bound does not depend on
    the plan's size, so neither does what apply holds."""
    plan, backend = plan_and_backend(600)
    counted = _Counted(plan)
    journal = Journal.open(tmp_path / "j.jsonl", plan)
    result = apply_plan(counted, backend, journal=journal, parallelism=parallelism,  # type: ignore[arg-type]
                        no_backup=True, observers=[counted.observe])
    journal.close()
    assert result.ok and result.runs_changed == 600
    bound = parallelism + 2 * BATCH_SIZE + MAX_VERIFYING
    assert len(counted.ahead) == 600 and max(counted.ahead) <= bound < 600
    assert journal.runs == {}


def test_a_plan_file_changed_after_it_was_checked_is_refused_before_that_run(tmp_path: Path) -> None:
    """A run edited in place after the plan was opened (and checked) is refused when it is read."""
    plan, _ = plan_and_backend(3)
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    saved = open_plan(path)
    text = path.read_text()
    with path.open("r+") as fh:  # edited in place (not replaced): the open file sees it
        fh.write(text.replace('"after": 0.5', '"after": 0.9', 1))
    with pytest.raises(PlanError, match="changed while it was being applied"):
        list(saved.iter_runs())
    saved.close()


def test_a_plan_replaced_on_disk_after_it_was_opened_is_applied_as_opened(tmp_path: Path) -> None:
    """An atomic replace (a new file) is not seen: the runs are those of the file that was checked."""
    plan, _ = plan_and_backend(3)
    other, _ = plan_and_backend(5)
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    saved = open_plan(path)
    write_plan(other, path)
    assert [r.path for r in saved.iter_runs()] == [r.path for r in plan.runs]
    saved.close()


def test_open_plan_runs_the_per_run_checks_and_names_the_file(tmp_path: Path) -> None:
    """A per-run check refusing a run refuses the whole plan when it is opened, naming the file."""
    plan, _ = plan_and_backend(2)
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    assert json.loads(path.read_text())["runs"]

    def refuse(rp: object) -> None:
        raise PlanError("refused by the check")

    with pytest.raises(PlanError, match=f"plan file {path} .*refused by the check"):
        open_plan(path, checks=(refuse,))


def test_open_plan_and_read_plan_agree(tmp_path: Path) -> None:
    """The streamed reader gives the same runs and totals as reading the whole document."""
    plan, _ = plan_and_backend(7)
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    saved: SavedPlan = open_plan(path)
    whole = read_plan(path)
    assert list(saved.iter_runs()) == list(whole.runs) == list(plan.runs)
    assert (saved.changed_count, saved.error_count, saved.sources) == (7, 0, ())
    saved.close()


def test_the_undo_writer_spools_beside_the_undo_plan_and_leaves_only_the_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The undo runs wait in a hidden file named after the undo plan, in its directory (the disk chosen
    for it, not /tmp), also for a bare file name; NaN and non-ASCII values come through; the plan's
    header is the undo's own (this server, this format, made now, in UTC also where local time is not);
    finish leaves only the plan, and discard may be called again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "Etc/GMT-5")  # a machine whose local time is not UTC
    time.tzset()
    try:
        _spool_beside_the_undo_plan(tmp_path)
    finally:
        monkeypatch.undo()
        time.tzset()


def _spool_beside_the_undo_plan(tmp_path: Path) -> None:
    plan = make_plan(run_plan(live_run("a"), [config_set("lr", 0.1, 0.2)]))
    undo = run_plan(live_run("a"), [config_set("lr", 0.2, float("nan")), config_set("note", "x", "é 猫")])
    before = datetime.now(timezone.utc)
    writer = UndoWriter(plan, Path("u.json"))
    writer.add(undo)
    [spool] = list(tmp_path.iterdir())
    assert spool.name.startswith(".u.json.")
    writer.finish()
    writer.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["u.json"]
    written = read_plan(tmp_path / "u.json")
    assert before <= written.created_at <= datetime.now(timezone.utc)
    assert (written.base_url, written.format_version) == (plan.base_url, FORMAT_VERSION)
    assert written.spec_digest == f"undo:{plan.spec_digest}"
    [back] = written.runs
    assert math.isnan(back.changes[0].after) and back.changes[1].after == "é 猫"
