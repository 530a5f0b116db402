"""Unit tests of the apply executor against the in-memory backend (W&B-like semantics)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from reconcile.apply import events as ev
from reconcile.apply.executor import ApplyResult, apply_plan, check_consent, check_plan
from reconcile.apply.journal import Journal, JournalLock, plan_digest
from reconcile.apply.undo import describe
from reconcile.backend import RunUpdate
from reconcile.backend.memory import MemoryBackend
from reconcile.commands.apply import execute
from reconcile.errors import BackendError, PlanError, RetryableError, StalePlanError
from reconcile.models import Change, ChangeKind, ChangeOp, ConfigWrites, Limits, LiveArtifact, Plan
from tests.unit.apply_helpers import (
    config_set,
    file_delete,
    live_file,
    live_run,
    make_plan,
    run_plan,
    string_set,
    summary_set,
    tag,
    unset,
)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing in apply catches it."""


def _apply(plan: Plan, backend: MemoryBackend, tmp_path: Path, **kw: Any) -> tuple[ApplyResult, list[Any]]:
    seen: list[Any] = []
    journal = Journal.open(tmp_path / "plan.journal.jsonl", plan)
    try:
        kw.setdefault("parallelism", 1)
        if "backup_dir" not in kw:
            kw.setdefault("no_backup", True)  # the consent itself is tested on its own
        result = apply_plan(plan, backend, journal=journal, observers=[seen.append, *kw.pop("observers", [])],
                            sleep=kw.pop("sleep", lambda _s: None), **kw)
    finally:
        journal.close()
    return result, seen


def _calls(backend: MemoryBackend, name: str) -> list[Any]:
    return [arg for op, arg in backend.calls if op == name]


def test_apply_plan_sends_only_changed_config_subtree_on_merge(tmp_path: Path) -> None:
    """On a merging server the UpsertBucket carries only the planned leaves, not the read config."""
    run = live_run("a")
    backend = MemoryBackend([run])
    rp = run_plan(run, [config_set("optimizer.lr", None, 0.5, created=True), string_set(ChangeKind.NAME,
                                                                                          run.name, "new")])
    result, _ = _apply(make_plan(rp), backend, tmp_path)
    assert result.ok
    assert result.runs_changed == 1
    [update] = _calls(backend, "update_run")
    assert update == RunUpdate(storage_id="sid-a", display_name="new", config={"optimizer": {"lr": 0.5}})
    stored = backend.run("acme", "vision", "a")
    assert stored.config["optimizer"] == {"name": "sgd", "momentum": 0.9, "lr": 0.5}


def test_apply_plan_sends_fresh_whole_config_on_replace(tmp_path: Path) -> None:
    """On a replacing server the UpsertBucket carries the fresh config with the changes made."""
    run = live_run("a")
    backend = MemoryBackend([run], config_writes=ConfigWrites.REPLACE)
    rp = run_plan(run, [unset(ChangeKind.CONFIG, "optimizer.momentum", 0.9)],
                  config_writes=ConfigWrites.REPLACE)
    # Someone adds an unrelated key after planning: the replace payload must keep it.
    backend.runs["sid-a"] = dataclasses.replace(backend.runs["sid-a"], config={**run.config, "extra": 1})
    result, _ = _apply(make_plan(rp), backend, tmp_path)
    assert result.ok
    [update] = _calls(backend, "update_run")
    assert update.config == {"lr": 0.1, "optimizer": {"name": "sgd"}, "_wandb": {"v": 1}, "extra": 1}


def test_apply_plan_builds_summary_from_fresh_read(tmp_path: Path) -> None:
    """The whole summary sent is the fresh one plus the planned change (an unrelated new key survives)."""
    run = live_run("a")
    backend = MemoryBackend([run])
    rp = run_plan(run, [summary_set("acc", 0.5, 0.9), unset(ChangeKind.SUMMARY, "loss", 0.2)])
    backend.runs["sid-a"] = dataclasses.replace(backend.runs["sid-a"], summary={**run.summary, "new": 3})
    result, _ = _apply(make_plan(rp), backend, tmp_path)
    assert result.ok
    [update] = _calls(backend, "update_run")
    assert update.summary == {"acc": 0.9, "new": 3}
    assert update.config is None
    assert update.tags is None


def test_apply_plan_tags_add_and_remove_in_one_update(tmp_path: Path) -> None:
    """Tag changes become one whole tag list built from the fresh tags."""
    run = live_run("a", tags=("wip", "keep"))
    backend = MemoryBackend([run])
    rp = run_plan(run, [tag(ChangeOp.ADD, "baseline"), tag(ChangeOp.REMOVE, "wip")])
    result, _ = _apply(make_plan(rp), backend, tmp_path)
    assert result.ok
    [update] = _calls(backend, "update_run")
    assert update.tags == ("keep", "baseline")


def test_apply_plan_stale_run_untouched_others_applied(tmp_path: Path) -> None:
    """A run whose fingerprinted field changed after planning gets no write and is reported stale."""
    a, b = live_run("a"), live_run("b")
    backend = MemoryBackend([a, b])
    plan = make_plan(run_plan(a, [config_set("lr", 0.1, 0.2)]), run_plan(b, [config_set("lr", 0.1, 0.2)]))
    backend.runs["sid-a"] = dataclasses.replace(backend.runs["sid-a"], config={**a.config, "lr": 0.3})
    result, seen = _apply(plan, backend, tmp_path)
    assert [r for r, _ in result.stale] == ["acme/vision/a"]
    assert not result.ok
    assert result.runs_changed == 1
    assert [u.storage_id for u in _calls(backend, "update_run")] == ["sid-b"]
    assert backend.run("acme", "vision", "a").config["lr"] == 0.3
    assert result.summary_line \
        == "Apply complete: 1 run changed, 0 files deleted (0 bytes freed), 1 stale, 0 failed."
    assert any(isinstance(e, ev.RunStale) for e in seen)


def test_apply_plan_event_order(tmp_path: Path) -> None:
    """Events: start, then started/metadata/files/written/applied per run, then complete."""
    f1 = live_file("f1", "a.ckpt", 5)
    run = live_run("a", files=[f1])
    backend = MemoryBackend([run])
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2), file_delete(f1)]))
    _, seen = _apply(plan, backend, tmp_path)
    assert [type(e).__name__ for e in seen] == ["ApplyStart", "RunStarted", "RunMetadataWritten",
                                                "RunFilesDeleted", "RunWritten", "RunApplied",
                                                "ApplyComplete"]


def test_apply_plan_deletes_all_files_of_a_run_in_one_request(tmp_path: Path) -> None:
    """One delete_files per run carrying every planned id."""
    files = [live_file(f"f{i}", f"ckpt/{i}.pt", 100) for i in range(3)]
    run = live_run("a", files=files)
    backend = MemoryBackend([run])
    plan = make_plan(run_plan(run, [file_delete(f) for f in files]))
    result, _ = _apply(plan, backend, tmp_path, no_backup=True)
    assert result.ok
    assert _calls(backend, "delete_files") == [("acme/vision/a", ("f0", "f1", "f2"))]
    assert backend.run("acme", "vision", "a").files == ()
    assert result.files_deleted == 3
    assert result.bytes_freed == 300
    # The staleness check and the read-back carried the file lists: no per-run listing.
    assert _calls(backend, "list_files") == []
    assert len(_calls(backend, "get_runs")) == 2


def test_apply_plan_refuses_a_planned_file_the_live_listing_lacks(tmp_path: Path) -> None:
    """A plan whose fingerprint matches but whose file id is not the run's (an edited plan) is refused
    before anything is written to the run, even its metadata."""
    files = [live_file(f"f{i}", f"ckpt/{i}.pt", 100) for i in range(2)]
    run = live_run("a", files=files)
    backend = MemoryBackend([run])
    foreign = live_file("f-other-run", "ckpt/9.pt", 100)
    rp = run_plan(run, [file_delete(files[0]), file_delete(foreign), string_set(ChangeKind.NOTES, "", "x")])
    result, _ = _apply(make_plan(rp), backend, tmp_path, no_backup=True)
    [(path, reason)] = result.stale
    assert path == "acme/vision/a" and "f-other-run" in reason and "edited or is corrupt" in reason
    assert _calls(backend, "delete_files") == [] and _calls(backend, "update_run") == []


def test_apply_plan_refuses_a_planned_file_listed_under_another_name(tmp_path: Path) -> None:
    """A file id the run has, but planned under another name or size (the plan spares a kept file by
    naming it as another), is refused."""
    files = [live_file("f0", "model-best.pt", 100), live_file("f1", "ckpt-1.pt", 100)]
    run = live_run("a", files=files)
    backend = MemoryBackend([run])
    disguised = dataclasses.replace(files[0], name="ckpt-0.pt")
    rp = run_plan(run, [file_delete(disguised)])
    result, _ = _apply(make_plan(rp), backend, tmp_path, no_backup=True)
    [(_path, reason)] = result.stale
    assert "model-best.pt" in reason
    assert _calls(backend, "delete_files") == []


def test_apply_plan_unconverged_config_unset_on_merge_server(tmp_path: Path) -> None:
    """A config unset a merging server cannot do is reported as not converged, naming the field."""
    run = live_run("a")
    backend = MemoryBackend([run])
    plan = make_plan(run_plan(run, [unset(ChangeKind.CONFIG, "lr", 0.1), summary_set("acc", 0.5, 1.0)]))
    result, seen = _apply(plan, backend, tmp_path)
    assert result.unconverged == [("acme/vision/a", ("config.lr",))]
    assert not result.ok
    assert result.summary_line.endswith(", 1 did not converge.")
    assert any(isinstance(e, ev.RunUnconverged) for e in seen)


def test_apply_plan_retries_retryable_errors_with_injected_sleep(tmp_path: Path) -> None:
    """A 429/5xx on the write is retried after a backoff sleep; the run is applied once."""
    run = live_run("a")
    backend = MemoryBackend([run])
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)]))
    sleeps: list[float] = []
    original = backend.update_run
    failures = [RetryableError("HTTP 429", status=429)]

    def flaky(update: RunUpdate) -> None:
        if failures:
            raise failures.pop()
        original(update)

    backend.update_run = flaky  # type: ignore[method-assign]
    result, _ = _apply(plan, backend, tmp_path, sleep=sleeps.append)
    assert result.ok
    assert len(sleeps) == 1
    assert backend.run("acme", "vision", "a").config["lr"] == 0.2


def test_apply_plan_failed_run_reports_server_message_others_continue(tmp_path: Path) -> None:
    """A non-retryable failure marks that run failed with the server's message; the rest apply."""
    a, b = live_run("a"), live_run("b")
    backend = MemoryBackend([a, b])
    original = backend.update_run

    def refuse_a(update: RunUpdate) -> None:
        if update.storage_id == "sid-a":
            raise BackendError("input: upsertBucket permission denied")
        original(update)

    backend.update_run = refuse_a  # type: ignore[method-assign]
    plan = make_plan(run_plan(a, [config_set("lr", 0.1, 0.2)]), run_plan(b, [config_set("lr", 0.1, 0.2)]))
    result, _ = _apply(plan, backend, tmp_path, parallelism=4)
    assert result.failed == [("acme/vision/a", "input: upsertBucket permission denied")]
    assert backend.run("acme", "vision", "b").config["lr"] == 0.2


@pytest.mark.parametrize(("change", "error", "names"), [
    ({"format_version": 2}, StalePlanError, "2"),
    ({"base_url": "https://api.wandb.ai"}, StalePlanError, "https://api.wandb.ai"),
    ({"errors": ("rule x matched nothing",)}, PlanError, "reconcile show"),
    ({"limits": Limits(max_changed_runs=1)}, PlanError, "2 runs"),
    ({"limits": Limits(max_file_deletions=0)}, PlanError, "1 file"),
    ({"limits": Limits(max_bytes=5)}, PlanError, "10 bytes"),
])
def test_apply_plan_refuses_unusable_plans(tmp_path: Path, change: dict[str, Any],
                                           error: type[Exception], names: str) -> None:
    """Another format or server, plan errors, or broken limits: refused before any write, naming what is
    wrong (the plan's format or server, where the errors are listed, the count over the limit)."""
    f1 = live_file("f1", "x.pt", 10)
    a, b = live_run("a", files=[f1]), live_run("b")
    backend = MemoryBackend([a, b])
    plan = make_plan(run_plan(a, [file_delete(f1)]), run_plan(b, [config_set("lr", 0.1, 0.2)]))
    plan = dataclasses.replace(plan, **change)
    with pytest.raises(error) as refused:
        _apply(plan, backend, tmp_path)
    assert names in str(refused.value)
    assert not _calls(backend, "update_run")
    assert not _calls(backend, "delete_files")


@pytest.mark.parametrize(("limits", "says"), [
    (Limits(max_changed_runs=0), "the plan has 1 run to change, above the spec's limit of 0"),
    (Limits(max_file_deletions=0), "the plan has 1 file to delete, above the spec's limit of 0"),
    (Limits(max_bytes=0), "the plan has 1 byte to delete, above the spec's limit of 0"),
])
def test_apply_plan_limit_refusal_counts_one_in_the_singular(tmp_path: Path, limits: Limits,
                                                             says: str) -> None:
    """One run, one file of one byte over a limit of 0: "1 run", "1 file", "1 byte"."""
    f1 = live_file("f1", "x.pt", 1)
    a = live_run("a", files=[f1])
    plan = make_plan(run_plan(a, [file_delete(f1)]), limits=limits)
    with pytest.raises(PlanError) as refused:
        _apply(plan, MemoryBackend([a]), tmp_path)
    assert str(refused.value).startswith(says)


def test_apply_plan_journal_refuses_another_plans_journal(tmp_path: Path) -> None:
    """A journal written for a different plan is refused with a message naming the file."""
    run = live_run("a")
    plan1 = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)]))
    plan2 = make_plan(run_plan(run, [config_set("lr", 0.1, 0.3)]))
    Journal.open(tmp_path / "j.jsonl", plan1).close()
    with pytest.raises(PlanError, match="another plan"):
        Journal.open(tmp_path / "j.jsonl", plan2)


def test_apply_plan_journal_of_an_unfinished_apply_is_never_replaced(tmp_path: Path) -> None:
    """Another plan's journal is replaced only once that apply completed (``replaced`` names it): an
    unfinished journal is the only record of what it changed and of its undo data."""
    run = live_run("a")
    plan1 = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)]))
    plan2 = make_plan(run_plan(run, [config_set("lr", 0.1, 0.3)]))
    journal = Journal.open(tmp_path / "j.jsonl", plan1)
    journal(ev.RunStarted("acme/vision/a"))
    journal.close()
    with pytest.raises(PlanError, match="did not finish"):
        Journal.open(tmp_path / "j.jsonl", plan2)
    journal = Journal.open(tmp_path / "j.jsonl", plan1)
    journal(ev.ApplyComplete(result=ApplyResult()))
    journal.close()
    fresh = Journal.open(tmp_path / "j.jsonl", plan2)
    fresh.close()
    assert fresh.replaced == plan_digest(plan1)
    again = Journal.open(tmp_path / "j.jsonl", plan2)
    again.close()
    assert again.replaced is None and again.record_for("acme/vision/a").phases == set()


def test_apply_plan_journal_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    """A record torn by a crash is dropped so the next record starts on its own line (no damage later)."""
    run = live_run("a")
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)]))
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, plan)
    journal(ev.RunStarted("acme/vision/a"))
    journal.close()
    path.write_bytes(path.read_bytes()[:-15])  # SIGKILL mid-write
    journal = Journal.open(path, plan)
    journal(ev.RunStarted("acme/vision/a"))
    journal.close()
    assert Journal.open(path, plan).record_for("acme/vision/a").phases == {"started"}
    assert all(line.startswith("{") and line.endswith("}") for line in path.read_text().splitlines())


def _three_run_plan() -> tuple[Plan, MemoryBackend]:
    runs, rps = [], []
    for name in ("a", "b", "c"):
        f1, f2 = live_file(f"{name}1", "old.ckpt", 7), live_file(f"{name}2", "older.ckpt", 9)
        run = live_run(name, files=[f1, f2])
        runs.append(run)
        rps.append(run_plan(run, [config_set("lr", 0.1, 0.01), summary_set("acc", 0.5, 0.7),
                                  tag(ChangeOp.ADD, "pruned"), file_delete(f1), file_delete(f2)]))
    return make_plan(*rps), MemoryBackend(runs)


@pytest.mark.parametrize("crash_after", ["RunStarted", "RunMetadataWritten", "RunFilesDeleted", "RunApplied"])
def test_apply_plan_resumes_after_crash_without_writing_twice(tmp_path: Path, crash_after: str) -> None:
    """Killed after any phase of run b, a second apply finishes the rest; nothing is written twice."""
    plan, backend = _three_run_plan()

    def crash(event: Any) -> None:
        if type(event).__name__ == crash_after and getattr(event, "run", "") == "acme/vision/b":
            raise Crash

    with pytest.raises(Crash):
        _apply(plan, backend, tmp_path, observers=[crash])
    result, _ = _apply(plan, backend, tmp_path)
    assert result.ok
    assert result.runs_changed == 3
    assert result.files_deleted == 6
    for run_id in ("a", "b", "c"):
        stored = backend.run("acme", "vision", run_id)
        assert (stored.config["lr"], stored.summary["acc"], stored.files) == (0.01, 0.7, ())
        assert "pruned" in stored.tags
    writes = [u.storage_id for u in _calls(backend, "update_run")]
    deletes = [path for path, _ in _calls(backend, "delete_files")]
    assert sorted(writes) == ["sid-a", "sid-b", "sid-c"]
    assert sorted(deletes) == ["acme/vision/a", "acme/vision/b", "acme/vision/c"]


def test_apply_plan_resumes_when_write_landed_but_was_not_journaled(tmp_path: Path) -> None:
    """Killed between the UpsertBucket landing and its journal record: the re-run sees it and
    only deletes the files."""
    plan, backend = _three_run_plan()
    original = backend.update_run

    def land_then_die(update: RunUpdate) -> None:
        original(update)
        if update.storage_id == "sid-a":
            raise Crash

    backend.update_run = land_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        _apply(plan, backend, tmp_path)
    backend.update_run = original  # type: ignore[method-assign]
    result, _ = _apply(plan, backend, tmp_path)
    assert result.ok
    assert sorted(u.storage_id for u in _calls(backend, "update_run")) == ["sid-a", "sid-b", "sid-c"]


def test_apply_plan_resumed_run_changed_by_someone_else_is_stale(tmp_path: Path) -> None:
    """A run in flight at the crash that someone else then edited is stale, not finished."""
    plan, backend = _three_run_plan()

    def crash(event: Any) -> None:
        if isinstance(event, ev.RunMetadataWritten) and event.run == "acme/vision/a":
            raise Crash

    with pytest.raises(Crash):
        _apply(plan, backend, tmp_path, observers=[crash])
    stored = backend.runs["sid-a"]
    backend.runs["sid-a"] = dataclasses.replace(stored, summary={**stored.summary, "acc": 0.1})
    result, _ = _apply(plan, backend, tmp_path)
    assert [r for r, _ in result.stale] == ["acme/vision/a"]
    assert len(backend.run("acme", "vision", "a").files or ()) == 2  # its files were not deleted


def test_apply_plan_reports_journaled_stale_runs_again_without_writing(tmp_path: Path) -> None:
    """Applying the same plan again skips finished runs and reports the stale ones again."""
    a, b = live_run("a"), live_run("b")
    backend = MemoryBackend([a, b])
    plan = make_plan(run_plan(a, [config_set("lr", 0.1, 0.2)]), run_plan(b, [config_set("lr", 0.1, 0.2)]))
    backend.runs["sid-a"] = dataclasses.replace(backend.runs["sid-a"], config={**a.config, "lr": 9})
    _apply(plan, backend, tmp_path)
    calls_before = len(backend.calls)
    result, seen = _apply(plan, backend, tmp_path)
    assert len(backend.calls) == calls_before  # nothing read, nothing written
    assert result.skipped == 2
    assert [r for r, _ in result.stale] == ["acme/vision/a"]
    assert result.runs_changed == 1
    assert sum(isinstance(e, ev.RunSkipped) for e in seen) == 2


def test_apply_plan_rereads_each_run_at_most_one_group_ahead_of_its_write(tmp_path: Path) -> None:
    """An edit that lands while a run is being written is seen by the re-read of every run more than one
    group after it: that run is stale, and the other writer's summary survives (W&B replaces summaries
    whole). (Only the next group is re-read while a group is written; see the test below.)"""
    ra, rb, rc = live_run("a"), live_run("b"), live_run("c")
    backend = MemoryBackend([ra, rb, rc])
    original = backend.update_run

    def update_then_someone_edits_c(update: RunUpdate) -> None:
        original(update)
        if update.storage_id == "sid-a":
            c = backend.runs["sid-c"]
            backend.runs["sid-c"] = dataclasses.replace(c, summary={**c.summary, "acc": 0.9, "best_epoch": 7})

    backend.update_run = update_then_someone_edits_c  # type: ignore[method-assign]
    plan = make_plan(*(run_plan(r, [summary_set("acc", 0.5, 0.6)]) for r in (ra, rb, rc)))
    result, _ = _apply(plan, backend, tmp_path, parallelism=1)
    assert [run for run, _ in result.stale] == ["acme/vision/c"]
    assert backend.run("acme", "vision", "c").summary["best_epoch"] == 7
    assert backend.run("acme", "vision", "c").summary["acc"] == 0.9


def test_apply_plan_rereads_the_next_group_while_this_one_is_written_and_no_further(tmp_path: Path) -> None:
    """While the first group's writes are held, the second group is re-read (the workers need not wait
    for it) but not the third: never more than one group re-read and not yet handed to a worker."""
    runs = [live_run(f"r{i}") for i in range(6)]
    backend = MemoryBackend(runs)
    first, second, third = (("r0", "r1"), ("r2", "r3"), ("r4", "r5"))  # parallelism 2: groups of 2
    reads: list[tuple[str, ...]] = []
    second_read, third_read, release = threading.Event(), threading.Event(), threading.Event()
    original_read, original_update = backend.get_runs, backend.update_run

    def get_runs(entity: str, project: str, run_ids: Sequence[str], *, with_files: bool = False) -> Any:
        reads.append(tuple(run_ids))
        for group, seen in ((second, second_read), (third, third_read)):
            if tuple(run_ids) == group:
                seen.set()
        return original_read(entity, project, run_ids, with_files=with_files)

    def update_run(update: RunUpdate) -> None:
        if update.storage_id in {f"sid-{r}" for r in first}:
            release.wait(timeout=30)  # held until the test has looked
        original_update(update)

    backend.get_runs = get_runs  # type: ignore[method-assign]
    backend.update_run = update_run  # type: ignore[method-assign]
    plan = make_plan(*(run_plan(r, [summary_set("acc", 0.5, 0.6)]) for r in runs))
    outcome: list[ApplyResult] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_apply(plan, backend, tmp_path, parallelism=2)[0]))
    worker.start()
    try:
        assert second_read.wait(timeout=30), "the next group was not re-read while the first was written"
        assert not third_read.wait(timeout=0.5), "two groups were re-read ahead of the writes"
        assert reads == [first, second]
    finally:
        release.set()
        worker.join(timeout=60)
    [result] = outcome
    assert result.ok and result.runs_changed == 6
    assert reads[:3] == [first, second, third]  # then the read-backs


def test_ctrl_c_during_a_reread_ends_apply_without_it_and_it_is_not_retried(tmp_path: Path) -> None:
    """Ctrl-C while the next group's re-read hangs: apply ends (KeyboardInterrupt) without waiting for it;
    when the abandoned read then fails as a timeout, it is not retried (nor logged as retrying)."""
    runs = [live_run(f"r{i}") for i in range(4)]
    backend = MemoryBackend(runs)
    held, go = threading.Event(), threading.Event()
    attempts: list[tuple[str, ...]] = []
    original_read = backend.get_runs

    def get_runs(entity: str, project: str, run_ids: Sequence[str], *, with_files: bool = False) -> Any:
        if tuple(run_ids) == ("r2", "r3"):  # parallelism 2: the second group
            attempts.append(tuple(run_ids))
            held.set()
            go.wait(timeout=30)
            raise RetryableError("W&B did not answer in time")
        return original_read(entity, project, run_ids, with_files=with_files)

    backend.get_runs = get_runs  # type: ignore[method-assign]
    plan = make_plan(*(run_plan(r, [summary_set("acc", 0.5, 0.6)]) for r in runs))
    interrupter = threading.Thread(  # Ctrl-C: SIGINT to this process, handled on the main thread
        target=lambda: held.wait(timeout=30) and os.kill(os.getpid(), signal.SIGINT))
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _apply(plan, backend, tmp_path, parallelism=2)
        assert not go.is_set() and attempts == [("r2", "r3")]  # the re-read still hangs
    finally:
        go.set()
        interrupter.join(timeout=30)
    for thread in threading.enumerate():
        if thread.name == "apply-reread":
            thread.join(timeout=30)
    assert attempts == [("r2", "r3")]


def test_apply_plan_reads_back_an_edit_that_lands_after_the_write(tmp_path: Path) -> None:
    """Another writer's edit of a planned field that lands after apply's write and before its read-back
    is reported as not converged (exit 1), never as applied."""
    ra, rb = live_run("a"), live_run("b")
    backend = MemoryBackend([ra, rb])
    original = backend.update_run

    def update_then_someone_edits_it(update: RunUpdate) -> None:
        original(update)
        run = backend.runs[update.storage_id]
        backend.runs[update.storage_id] = dataclasses.replace(run, summary={**run.summary, "acc": 0.9})

    backend.update_run = update_then_someone_edits_it  # type: ignore[method-assign]
    plan = make_plan(*(run_plan(r, [summary_set("acc", 0.5, 0.6)]) for r in (ra, rb)))
    result, _ = _apply(plan, backend, tmp_path, parallelism=2)
    assert sorted(run for run, _ in result.unconverged) == ["acme/vision/a", "acme/vision/b"]
    assert not result.ok and result.runs_changed == 0


def test_apply_plan_backs_up_before_writing_anything(tmp_path: Path) -> None:
    """A backup that fails its size check leaves the whole run untouched (metadata included), so
    nothing is changed that the undo plan would not cover."""
    file = live_file("f1", "ckpt/1.pt", 1000)
    run = live_run("a", files=[file])
    backend = MemoryBackend([run])
    backend.contents["f1"] = b"x" * 999  # W&B lists 1000 bytes but serves 999
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.5), file_delete(file)]))
    result, _ = _apply(plan, backend, tmp_path, backup_dir=tmp_path / "backups")
    assert [path for path, _ in result.failed] == ["acme/vision/a"]
    assert backend.run("acme", "vision", "a").config["lr"] == 0.1
    assert _calls(backend, "update_run") == [] and _calls(backend, "delete_files") == []


def test_apply_plan_counts_deleted_files_of_a_run_that_did_not_converge(tmp_path: Path) -> None:
    """Files that were really deleted count in the summary even when another field did not take."""
    file = live_file("f1", "ckpt/1.pt", 1000)
    run = live_run("a", files=[file])
    backend = MemoryBackend([run])  # merges config: the unset cannot take
    plan = make_plan(run_plan(run, [unset(ChangeKind.CONFIG, "lr", 0.1), file_delete(file)]))
    result, _ = _apply(plan, backend, tmp_path)
    assert result.summary_line == ("Apply complete: 0 runs changed, 1 file deleted (1000 bytes freed), "
                                   "0 stale, 0 failed, 1 did not converge.")


def test_fingerprint_covers_the_runs_identity(tmp_path: Path) -> None:
    """Two runs with identical fields have different fingerprints, so a plan entry pointed at another run
    (here: another project's) is stale and nothing is written to it."""
    a, other = live_run("a"), live_run("a", project="secret", storage_id="sid-secret")
    rp = run_plan(a, [string_set(ChangeKind.NOTES, "", "x")])
    assert rp.fingerprint != run_plan(other, rp.changes).fingerprint
    backend = MemoryBackend([a, other])
    moved = dataclasses.replace(rp, project="secret", storage_id="sid-secret")
    result, _ = _apply(make_plan(moved), backend, tmp_path)
    assert [r for r, _ in result.stale] == ["acme/secret/a"]
    assert _calls(backend, "update_run") == []


@pytest.mark.parametrize(("change", "fields", "accepted"), [
    (config_set("lr", 0.1, 0.2), [("config", "lr")], True),
    (config_set("lr", 0.1, 0.2), [("config",)], True),  # the whole config is fingerprinted
    (config_set("a.b", 1, 2), [("config", "a")], True),  # a parent key covers its leaves
    (config_set("a", 1, 2), [("config", "a", "b")], False),  # a leaf does not cover its parent
    (config_set("lr", 0.1, 0.2), [("summary", "lr")], False),  # the same key of the other kind
    (config_set("lr", 0.1, 0.2), [("config", "other")], False),
    (Change(ChangeKind.SUMMARY, ChangeOp.RENAME, ("new",), 1, 1, ("r",), from_key=("old",)),
     [("summary", "new"), ("summary", "old")], True),
    (Change(ChangeKind.SUMMARY, ChangeOp.RENAME, ("new",), 1, 1, ("r",), from_key=("old",)),
     [("summary", "new")], False),  # the key renamed away must be fingerprinted too
    (string_set(ChangeKind.NOTES, "", "n"), [("notes",)], True),
    (string_set(ChangeKind.NOTES, "", "n"), [("name",)], False),
    (file_delete(live_file("f1", "a.pt")), [("files",)], True),
    (file_delete(live_file("f1", "a.pt")), [("tags",)], False),
])
def test_check_plan_refuses_a_change_its_fingerprint_does_not_cover(change: Change,
                                                                     fields: list[tuple[str, ...]],
                                                                     accepted: bool) -> None:
    """A saved plan whose run changes a field the run's fingerprint leaves out (edited or corrupt) is
    refused before anything is written: apply could not see a change made there since the plan."""
    rp = dataclasses.replace(run_plan(live_run("a"), [change]), fingerprint_fields=tuple(fields))
    if accepted:
        check_plan(make_plan(rp), MemoryBackend())
    else:
        with pytest.raises(PlanError, match="without fingerprinting it"):
            check_plan(make_plan(rp), MemoryBackend())


@pytest.mark.parametrize("limits", [Limits(max_changed_runs=2), Limits(max_file_deletions=1),
                                    Limits(max_bytes=10), Limits(2, 1, 10)])
def test_check_plan_accepts_a_plan_exactly_at_its_limits(limits: Limits) -> None:
    """A limit is a maximum: a plan with exactly that many runs, files or bytes is applied."""
    f1 = live_file("f1", "x.pt", 10)
    a, b = live_run("a", files=[f1]), live_run("b")
    plan = make_plan(run_plan(a, [file_delete(f1)]), run_plan(b, [config_set("lr", 0.1, 0.2)]), limits=limits)
    check_plan(plan, MemoryBackend())


@pytest.mark.parametrize(("planned", "now"), [("http://h:8080/", "http://h:8080"), ("http://h:8080", "http://h:8080/"),
                                              ("http://h:8080", "http://h:8080")])
def test_check_plan_takes_a_server_url_with_or_without_its_trailing_slash(planned: str, now: str) -> None:
    """WANDB_BASE_URL with a trailing slash names the same server as the plan's without one."""
    plan = make_plan(run_plan(live_run("a"), [config_set("lr", 0.1, 0.2)]), base_url=planned)
    check_plan(plan, MemoryBackend(base_url=now))


def _deleting(what: str) -> Plan:
    run = live_run("a", files=[live_file("f1", "x.pt")])
    if what == "files":
        return make_plan(run_plan(run, [file_delete(live_file("f1", "x.pt"))]))
    version = LiveArtifact(id="v0", collection="ckpt", type="model", version_index=0, size=5,
                           created_at=run.created_at, aliases=())
    delete = Change(ChangeKind.ARTIFACT, ChangeOp.DELETE, (version.name,), version, None, ("r",),
                    artifact=version)
    if what == "versions":
        return make_plan(dataclasses.replace(run_plan(run, []), changes=(delete,)))
    return make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)]))


@pytest.mark.parametrize(("deletes", "backup_dir", "no_backup", "refused"), [
    ("files", None, False, True), ("versions", None, False, True), ("nothing", None, False, False),
    ("files", Path("b"), False, False), ("files", None, True, False), ("versions", None, True, False),
    ("files", Path("b"), True, True), ("nothing", Path("b"), True, True),
])
def test_check_consent_asks_a_deleting_plan_for_one_choice(deletes: str, backup_dir: Path | None,
                                                           no_backup: bool, refused: bool) -> None:
    """A plan deleting files or artifact versions needs --backup-dir or --no-backup; one deleting nothing
    needs neither; both at once are refused, for any plan."""
    plan = _deleting(deletes)
    if refused:
        with pytest.raises(PlanError) as refusal:
            check_consent(plan, backup_dir=backup_dir, no_backup=no_backup)
        assert "--backup-dir" in str(refusal.value) and "--no-backup" in str(refusal.value)
    else:
        check_consent(plan, backup_dir=backup_dir, no_backup=no_backup)


def _read_back_refused(run: Any) -> MemoryBackend:
    """A backend holding ``run`` whose first read (the staleness check) works and every later one (the
    read-back) is refused."""
    backend = MemoryBackend([run])
    original = backend.get_runs
    reads = [0]

    def read_back_fails(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        if reads[0] > 1:
            raise BackendError("input: permission denied")
        return original(*args, **kwargs)

    backend.get_runs = read_back_fails  # type: ignore[method-assign]
    return backend


def test_a_run_written_but_not_read_back_is_named_as_outside_the_undo_plan(tmp_path: Path) -> None:
    """Its write took, reading it back failed: the run is reported failed, counted as unchecked, and the
    undo message says the undo plan does not cover it and how to get one that does."""
    run = live_run("a")
    backend = _read_back_refused(run)
    result, _ = _apply(make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)])), backend, tmp_path)
    assert backend.run("acme", "vision", "a").config["lr"] == 0.2
    assert [path for path, _ in result.failed] == result.unchecked == ["acme/vision/a"]
    assert result.undo is not None and result.undo.runs == ()
    lines = describe(result.undo_summary, result.lost, unchecked=result.unchecked)
    assert lines[-1] == ("It does not cover the 1 run written to but not read back (what took effect "
                         "there is unknown): acme/vision/a. Apply the same plan again to finish it; the undo "
                         "plan it writes covers it.")


def test_the_apply_command_names_a_run_not_read_back_in_its_undo_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What apply prints after writing the undo plan (``commands.apply.execute``) carries the unchecked
    runs too, not only ``describe`` when it is handed them."""
    run = live_run("a")
    backend = _read_back_refused(run)
    journal = tmp_path / "plan.journal.jsonl"
    lock = JournalLock.acquire(journal)
    try:
        result = execute(make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)])), backend,
                         plan_file=tmp_path / "plan.json", journal_path=journal,
                         undo_out=tmp_path / "plan.undo.json", backup_dir=None, no_backup=False,
                         parallelism=1, lock=lock)
    finally:
        lock.release()
    assert result.unchecked == ["acme/vision/a"]
    said = " ".join(capsys.readouterr().err.split())
    assert "It does not cover the 1 run written to but not read back (what took effect there is unknown): " \
           "acme/vision/a." in said, said


def test_a_run_failing_before_any_write_is_not_unchecked(tmp_path: Path) -> None:
    """A backup that fails before any write: failed, nothing written, and not counted as unchecked."""
    file = live_file("f1", "ckpt/1.pt", 1000)
    run = live_run("a", files=[file])
    backend = MemoryBackend([run])
    backend.contents["f1"] = b"x" * 999
    plan = make_plan(run_plan(run, [config_set("lr", 0.1, 0.5), file_delete(file)]))
    result, _ = _apply(plan, backend, tmp_path, backup_dir=tmp_path / "backups")
    assert [path for path, _ in result.failed] == ["acme/vision/a"] and result.unchecked == []
