"""Unit tests of the apply journal, the progress/log observers and the command's plumbing."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconcile.apply import events as ev
from reconcile.apply.executor import ApplyResult
from reconcile.apply.journal import Journal, JournalLock, PlanLock, plan_digest, unfinished
from reconcile.apply.progress import LogObserver
from reconcile.commands.apply import beside
from reconcile.errors import PlanError, PlanLocked
from reconcile.models import Plan
from tests.unit.apply_helpers import config_set, live_run, make_plan, run_plan


def _plan() -> Plan:
    run = live_run("a")
    return make_plan(run_plan(run, [config_set("lr", 0.1, 0.2)]))


def test_journal_records_each_phase_as_a_json_line(tmp_path: Path) -> None:
    """Each event becomes one JSON line with the run, phase and time; the header names the plan."""
    plan = _plan()
    journal = Journal.open(tmp_path / "j.jsonl", plan)
    journal(ev.RunStarted("acme/vision/a"))
    journal(ev.RunMetadataWritten("acme/vision/a"))
    journal(ev.RunStale("acme/vision/b", "changed"))
    journal.close()
    lines = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "plan"
    assert lines[0]["plan_digest"] == plan_digest(plan)
    assert [(x["run"], x["phase"]) for x in lines[1:]] == [
        ("acme/vision/a", "started"), ("acme/vision/a", "metadata_written"), ("acme/vision/b", "stale")]
    assert all("time" in x for x in lines)


def test_journal_records_what_each_event_says(tmp_path: Path) -> None:
    """Every apply event becomes its own record, with the counts, fields and undo data the resume and
    the undo plan read back; the apply's end is a `complete` record with the summary line."""
    undo = ev.UndoRecord("sha256:fp", (("config", "lr"),), (0,))
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, _plan())
    for event in (ev.RunMetadataWritten("r", already=True), ev.RunFilesDeleted("r", files=2, bytes=30),
                  ev.RunArtifactsDeleted("r", versions=1, bytes=7), ev.RunArtifactTTLsSet("r", versions=3),
                  ev.RunFilesUploaded("r", files=4),
                  ev.RunImported("r", created=True, rows=10, files=1, bytes=5),
                  ev.RunApplied("r", changes=1, files_deleted=2, bytes_freed=30, undo=undo),
                  ev.RunStale("s", "changed since the plan"),
                  ev.RunUnconverged("u", ("config.lr",), undo=undo, files_deleted=1, bytes_freed=9),
                  ev.RunUnconverged("v", ("tags",))):
        journal(event)
    result = ApplyResult()
    journal(ev.ApplyComplete(result))
    journal.close()
    records = [json.loads(x) for x in path.read_text().splitlines()[1:]]
    assert all(r.pop("time") for r in records)
    assert records == [
        {"type": "run", "run": "r", "phase": "metadata_written", "already": True},
        {"type": "run", "run": "r", "phase": "files_deleted", "files": 2, "bytes": 30},
        {"type": "run", "run": "r", "phase": "artifacts_deleted", "versions": 1, "bytes": 7},
        {"type": "run", "run": "r", "phase": "artifact_ttls_set", "versions": 3},
        {"type": "run", "run": "r", "phase": "files_uploaded", "files": 4},
        {"type": "run", "run": "r", "phase": "imported", "created": True, "rows": 10, "files": 1, "bytes": 5},
        {"type": "run", "run": "r", "phase": "done", "files_deleted": 2, "bytes_freed": 30,
         "undo": undo.to_json()},
        {"type": "run", "run": "s", "phase": "stale", "reason": "changed since the plan"},
        {"type": "run", "run": "u", "phase": "unconverged", "fields": ["config.lr"], "files_deleted": 1,
         "bytes_freed": 9, "undo": undo.to_json()},
        {"type": "run", "run": "v", "phase": "unconverged", "fields": ["tags"], "files_deleted": 0,
         "bytes_freed": 0, "undo": None},
        {"type": "complete", "summary": result.summary_line},
    ]
    again = Journal.open(path, _plan())
    assert again.record_for("r").final == "done" and again.record_for("r").last["undo"] == undo.to_json()
    assert again.record_for("u").phases == {"unconverged"}
    again.close()


def test_journal_records_that_wait_for_an_fsync_share_the_next_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: while one record's fsync runs, three other threads append theirs; one more fsync
    then covers all three, and none of them returns before a fsync that covers its line."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, _plan())
    covered: list[int] = []  # lines on disk when each fsync started
    first_fsync, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        covered.append(len(path.read_text().splitlines()))
        if len(covered) == 1:
            first_fsync.set()
            release.wait(timeout=30)  # held until the others have appended
        real_fsync(fd)

    monkeypatch.setattr("reconcile.apply.journal.os.fsync", fsync)
    returned: dict[str, int] = {}  # run -> fsyncs done when its record() returned

    def record(run: str) -> None:
        journal.record(run, "started")
        returned[run] = len(covered)

    first = threading.Thread(target=record, args=("acme/vision/a",))
    first.start()
    assert first_fsync.wait(timeout=30)
    others = [threading.Thread(target=record, args=(f"acme/vision/{r}",)) for r in "bcd"]
    for thread in others:
        thread.start()
    try:
        for _ in range(1000):  # until the three lines are appended (flushed) behind the held fsync
            if len(path.read_text().splitlines()) == 5:
                break
            threading.Event().wait(0.01)
        assert "acme/vision/b" not in returned  # waiting for a fsync
    finally:
        release.set()
        for thread in (first, *others):
            thread.join(timeout=30)
    journal.close()
    assert covered == [2, 5]  # the header and a's line, then b, c and d together
    assert returned["acme/vision/a"] >= 1
    assert [returned[f"acme/vision/{r}"] for r in "bcd"] == [2, 2, 2]


def test_an_event_without_a_record_waits_for_no_fsync(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An event the journal does not record (a run written, awaiting its read-back) returns at once, even
    while other threads' records await their fsync; a recorded one waits for its own."""
    journal = Journal.open(tmp_path / "j.jsonl", _plan())
    fsyncs: list[int] = []
    monkeypatch.setattr("reconcile.apply.journal.os.fsync", fsyncs.append)
    line = journal.append(ev.RunStarted("acme/vision/b"))  # another worker's, not yet synced
    journal(ev.RunWritten("acme/vision/a"))
    assert fsyncs == []
    journal.sync(line)
    journal(ev.RunMetadataWritten("acme/vision/a"))
    assert len(fsyncs) == 2
    journal.close()


def test_a_new_journal_s_header_is_fsynced_by_open_and_a_resumed_one_waits_for_no_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal started afresh has its header on disk (fsynced) when ``open`` returns, so a crash right
    after leaves a journal naming its plan; reopened to resume, it writes no header, and an event without
    a record still waits for no fsync there, while a recorded one gets its own."""
    path = tmp_path / "j.jsonl"
    lines_at_fsync: list[int] = []  # lines in the journal when each of its fsyncs ran (not the lock's)

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == str(path):
            lines_at_fsync.append(len(path.read_text().splitlines()))

    monkeypatch.setattr("reconcile.apply.journal.os.fsync", fsync)
    Journal.open(path, _plan()).close()
    assert lines_at_fsync == [1]
    again = Journal.open(path, _plan())
    again(ev.RunWritten("acme/vision/a"))
    assert lines_at_fsync == [1]
    again(ev.RunStarted("acme/vision/a"))
    assert lines_at_fsync == [1, 2]
    again.close()


def test_journal_reopen_reads_phases_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    """A record cut short by a crash is ignored; earlier records are kept for the resume."""
    plan = _plan()
    journal = Journal.open(tmp_path / "j.jsonl", plan)
    journal(ev.RunStarted("acme/vision/a"))
    journal(ev.RunApplied("acme/vision/b", changes=1, files_deleted=0, bytes_freed=0))
    journal.close()
    with (tmp_path / "j.jsonl").open("a") as fh:
        fh.write('{"type": "run", "run": "acme/vision/a", "pha')
    again = Journal.open(tmp_path / "j.jsonl", plan)
    assert again.record_for("acme/vision/a").phases == {"started"}
    assert again.record_for("acme/vision/b").final == "done"
    assert again.record_for("acme/vision/c").phases == set()
    again.close()


def test_unfinished_is_a_journal_without_its_complete_record(tmp_path: Path) -> None:
    """`apply -f` keeps an unfinished apply's journal: one with the plan's header and no `complete`
    record, even if the process died mid-line (the torn line is cut); no file or an empty one is not."""
    path = tmp_path / "j.jsonl"
    assert not unfinished(path)
    path.write_text("")
    assert not unfinished(path)
    path.unlink()
    journal = Journal.open(path, _plan())
    journal(ev.RunStarted("acme/vision/a"))
    journal.close()
    with path.open("a") as fh:
        fh.write('{"type": "run", "run": "acme/vision/a", "pha')
    assert unfinished(path)
    assert path.read_text().endswith("}\n")  # the torn line is gone
    journal = Journal.open(path, _plan())
    journal(ev.ApplyComplete(ApplyResult()))
    journal.close()
    assert not unfinished(path)


def test_an_empty_journal_file_gets_the_plan_header(tmp_path: Path) -> None:
    """A journal file that exists but is empty (`--journal "$(mktemp)"`) is started like a new one: its
    header names the plan, so an unfinished apply is known as such and another plan's apply is refused."""
    path = tmp_path / "j.jsonl"
    path.write_text("")
    journal = Journal.open(path, _plan())
    journal(ev.RunStarted("acme/vision/a"))
    journal.close()
    assert json.loads(path.read_text().splitlines()[0])["plan_digest"] == plan_digest(_plan())
    assert unfinished(path)
    other = make_plan(run_plan(live_run("b"), [config_set("lr", 0.1, 0.3)]))
    with pytest.raises(PlanError) as refused:
        Journal.open(path, other)
    assert str(refused.value) == (
        f"the journal {path} belongs to another plan ({plan_digest(_plan())}) whose apply did not finish "
        "(1 run recorded, no completion). It is the only record of what that apply changed and how to undo "
        "it. If you still have that plan file, finish it first: "
        f"`reconcile apply THAT_PLAN.json --journal {path}` "
        f"(the journal skips what is done, then writes the undo plan). Otherwise move {path} aside to keep "
        "that record, or pass --journal with a new file for this plan. Nothing was written.")


def test_journal_damaged_in_the_middle_is_refused(tmp_path: Path) -> None:
    """Garbage before the last line is not a crash artefact: refuse with a way out."""
    path = tmp_path / "j.jsonl"
    path.write_text("{}\nnot json\n{}\n")
    with pytest.raises(PlanError, match=f"^{re.escape(str(path))}:2: the journal is damaged"):
        Journal.open(path, _plan())


def test_a_last_whole_line_that_is_not_json_is_ignored_and_a_failure_recorded(tmp_path: Path) -> None:
    """The last line, even ended, may be garbage a crash left: ignored. A failed run's record is kept as
    its final outcome for the resume."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, _plan())
    journal(ev.RunFailed("acme/vision/a", "boom"))
    journal.close()
    with path.open("a") as fh:
        fh.write("\x00\x00garbage\n")
    again = Journal.open(path, _plan())
    assert again.record_for("acme/vision/a").final == "failed"
    assert again.record_for("acme/vision/a").last["message"] == "boom"
    again.close()


def test_log_observer_binds_run_and_level_by_outcome() -> None:
    """Non-TTY: one structlog line per event with run=..., problems at warning/error."""
    observer = LogObserver()
    with capture_logs() as logs:
        observer(ev.RunApplied("acme/vision/a", changes=2, files_deleted=1, bytes_freed=10))
        observer(ev.RunStale("acme/vision/b", "changed"))
        observer(ev.RunFailed("acme/vision/c", "HTTP 500"))
        observer(ev.RunUnconverged("acme/vision/d", ("config.lr",)))
    assert [(x["event"], x["run"], x["log_level"]) for x in logs] == [
        ("run_applied", "acme/vision/a", "info"), ("run_stale", "acme/vision/b", "warning"),
        ("run_failed", "acme/vision/c", "error"), ("run_unconverged", "acme/vision/d", "error")]


def test_apply_result_summary_line_mentions_unconverged_only_when_any() -> None:
    """The final line's shape is a public interface."""
    result = ApplyResult(runs_changed=3, files_deleted=2, bytes_freed=2048)
    assert result.summary_line == \
        "Apply complete: 3 runs changed, 2 files deleted (2 KiB freed), 0 stale, 0 failed."
    result.unconverged.append(("acme/vision/a", ("config.lr",)))
    assert result.summary_line.endswith("0 stale, 0 failed, 1 did not converge.")
    assert not result.ok


def test_beside_names_journal_and_undo_next_to_the_plan(tmp_path: Path) -> None:
    """plan.json -> plan.journal.jsonl and plan.undo.json in the same directory."""
    assert beside(tmp_path / "plan.json", ".journal.jsonl") == tmp_path / "plan.journal.jsonl"
    assert beside(tmp_path / "p.undo.json", ".undo.json") == tmp_path / "p.undo.undo.json"


def test_journal_lock_refuses_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    """Two opens of one journal: the second raises PlanLocked naming the holder's pid; after close, it
    opens."""
    first = Journal.open(tmp_path / "j.jsonl", _plan())
    try:
        with pytest.raises(PlanLocked, match=rf"the plan is locked: .*pid {os.getpid()} on host"):
            Journal.open(tmp_path / "j.jsonl", _plan())
    finally:
        first.close()
    assert not JournalLock.path_for(tmp_path / "j.jsonl").exists()
    Journal.open(tmp_path / "j.jsonl", _plan()).close()


def test_journal_lock_refusal_names_the_holder_s_host_user_and_since(tmp_path: Path) -> None:
    """The refusal says who holds the lock as its lock file records it (pid, host, user, since), or that
    the holder is unknown when the file says nothing (a holder that has locked it but not written yet)."""
    journal = tmp_path / "j.jsonl"
    held = JournalLock.acquire(journal)
    try:
        me = json.loads(JournalLock.path_for(journal).read_text())
        with pytest.raises(PlanLocked) as refused:
            JournalLock.acquire(journal)
        assert str(refused.value) == (
            f"the plan is locked: another apply is running it (pid {me['pid']} on host {me['host']}, user "
            f"{me['user']}, since {me['since']}; lock file {JournalLock.path_for(journal)}). Two applies of "
            "one plan never run at once: wait for it to finish, then apply again (the journal skips what it "
            "did).")
    finally:
        held.release()
    fd = os.open(JournalLock.path_for(journal), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PlanLocked, match="holder unknown"):
            JournalLock.acquire(journal)
    finally:
        os.close(fd)


def test_journal_lock_creates_the_missing_directories_of_its_journal(tmp_path: Path) -> None:
    """A journal two directories deep that do not exist yet: taking its lock creates both and the lock
    file in the deepest; releasing it removes the lock file and leaves the directories, where the lock is
    taken again."""
    journal = tmp_path / "a" / "b" / "j.jsonl"
    lock = JournalLock.acquire(journal)
    try:
        assert JournalLock.path_for(journal).parent == tmp_path / "a" / "b"
        assert json.loads(JournalLock.path_for(journal).read_text())["journal"] == str(journal)
    finally:
        lock.release()
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []
    JournalLock.acquire(journal).release()


@pytest.mark.parametrize("content", ["[1, 2]", '"a text"', "{not json", ""])
def test_a_lock_file_that_names_no_holder_is_refused_as_holder_unknown(tmp_path: Path, content: str) -> None:
    """A held lock file whose content is not a JSON object (damaged, or written by something else) says
    the holder is unknown instead of failing to read it."""
    journal = tmp_path / "j.jsonl"
    path = JournalLock.path_for(journal)
    path.write_text(content)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PlanLocked, match=re.escape("(holder unknown; lock file")):
            JournalLock.acquire(journal)
    finally:
        os.close(fd)


def test_a_run_record_keeps_the_fields_given_with_it(tmp_path: Path) -> None:
    """``record`` writes the extra fields it is given into the run's line (a failure's message, say)."""
    journal = Journal.open(tmp_path / "j.jsonl", _plan())
    journal.record("acme/vision/a", "failed", message="refused")
    journal.close()
    last = json.loads((tmp_path / "j.jsonl").read_text().splitlines()[-1])
    assert (last["run"], last["phase"], last["message"]) == ("acme/vision/a", "failed", "refused")


def test_journal_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    """A lock file whose holder died (no flock held any more, like after SIGKILL) does not block."""
    lock_file = JournalLock.path_for(tmp_path / "j.jsonl")
    lock_file.write_text(json.dumps({"pid": 999999, "host": "gone", "user": "u", "since": "then"}))
    lock = JournalLock.acquire(tmp_path / "j.jsonl")
    try:
        assert lock.previous == {"pid": 999999, "host": "gone", "user": "u", "since": "then"}
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def _assert_held(path: Path) -> None:
    """Someone holds the flock of ``path``: another open of it cannot take it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.mark.parametrize("replaced", [False, True])
def test_a_lock_file_released_while_it_is_being_taken_is_taken_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replaced: bool) -> None:
    """The holder releases (removes) the lock file between our open and our flock, and another apply may
    already have created a new one: the lock we got is on a file nobody else will open, so it is dropped
    and the lock file now at the path is taken (never two holders, one of them on a removed file)."""
    journal = tmp_path / "j.jsonl"
    path = JournalLock.path_for(journal)
    real_flock = fcntl.flock
    calls = [0]

    def released_meanwhile(fd: int, operation: int) -> None:
        calls[0] += 1
        if calls[0] == 1:
            path.unlink()
            if replaced:
                path.write_text("")
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", released_meanwhile)
    lock = JournalLock.acquire(journal)
    monkeypatch.undo()
    try:
        assert calls[0] == 2
        assert json.loads(path.read_text())["pid"] == os.getpid()
        _assert_held(path)
    finally:
        lock.release()


def test_releasing_a_lock_twice_or_after_its_file_was_removed_is_harmless(tmp_path: Path) -> None:
    """release is idempotent, and a lock file someone removed while it was held is no error: the lock is
    dropped either way and can be taken again."""
    lock = JournalLock.acquire(tmp_path / "j.jsonl")
    JournalLock.path_for(tmp_path / "j.jsonl").unlink()
    lock.release()
    lock.release()
    JournalLock.acquire(tmp_path / "j.jsonl").release()


def test_journal_lock_held_by_another_process_blocks(tmp_path: Path) -> None:
    """The lock is the kernel's (flock): a child process holding it makes us refuse; when it exits, we
    get it."""
    script = ("import sys, time; from pathlib import Path; from reconcile.apply.journal import JournalLock; "
              "JournalLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "j.jsonl")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(PlanLocked, match=f"pid {child.pid}"):
            JournalLock.acquire(tmp_path / "j.jsonl")
    finally:
        child.kill()
        child.wait()
    JournalLock.acquire(tmp_path / "j.jsonl").release()


DIGEST = "sha256:" + "ab12" * 16


def test_a_plan_s_lock_file_is_named_by_its_digest_beside_it(tmp_path: Path) -> None:
    """``.reconcile-apply.<16 hex of the digest>.lock`` in the plan file's directory: a copy of the plan
    there shares it, whatever the copy is called."""
    expected = tmp_path / f".reconcile-apply.{'ab12' * 4}.lock"
    assert PlanLock.path_for(tmp_path / "plan.json", DIGEST) == expected
    assert PlanLock.path_for(tmp_path / "copy.json", DIGEST) == expected


def test_a_held_plan_refuses_another_apply_naming_its_holder_journal_and_digest(tmp_path: Path) -> None:
    """While one apply holds the plan, another (a copy in the same directory, another journal) is refused
    naming who holds it, its journal, the lock file and the plan's digest; another plan in that directory
    is not held; after release the lock file is gone and the plan can be taken again."""
    path = PlanLock.path_for(tmp_path / "plan.json", DIGEST)
    held = PlanLock.acquire(tmp_path / "plan.json", DIGEST, tmp_path / "a.jsonl")
    try:
        me = json.loads(path.read_text())
        assert (me["journal"], me["plan"], me["pid"]) == (str(tmp_path / "a.jsonl"), DIGEST, os.getpid())
        with pytest.raises(PlanLocked) as refused:
            PlanLock.acquire(tmp_path / "copy.json", DIGEST, tmp_path / "b.jsonl")
        assert str(refused.value) == (
            f"the plan is locked: another apply is running it (pid {me['pid']} on host {me['host']}, user "
            f"{me['user']}, since {me['since']}, journal {tmp_path / 'a.jsonl'}; lock file {path}). Two "
            f"applies of one plan ({DIGEST}) never run at once, whatever --journal says: wait for it to "
            "finish, then apply again with its journal (the journal skips what it did). Nothing was written.")
        PlanLock.acquire(tmp_path / "plan.json", "sha256:" + "cd34" * 16, tmp_path / "c.jsonl").release()
    finally:
        held.release()
    assert not path.exists()
    PlanLock.acquire(tmp_path / "plan.json", DIGEST, tmp_path / "b.jsonl").release()


def test_a_plan_lock_whose_holder_wrote_nothing_says_so(tmp_path: Path) -> None:
    """A holder that has locked the file but not written who it is yet: the refusal says the holder is
    unknown, and names no journal."""
    path = PlanLock.path_for(tmp_path / "plan.json", DIGEST)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PlanLocked) as refused:
            PlanLock.acquire(tmp_path / "plan.json", DIGEST, tmp_path / "a.jsonl")
        assert str(refused.value).startswith(f"the plan is locked: another apply is running it (holder "
                                             f"unknown; lock file {path}). Two applies")
    finally:
        os.close(fd)


def test_a_plan_in_a_directory_that_cannot_be_written_locks_the_plan_file_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No lock file can be created beside the plan (the directory is not writable: root here can write
    anywhere, so creating it is made to fail as it would for a user): the plan file itself is locked,
    the holder then unknown; releasing it leaves the plan file in place."""
    plan = tmp_path / "plan.json"
    plan.write_text("{}")

    def cannot_write(*_args: object) -> PlanLock:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(PlanLock, "_take", cannot_write)
    held = PlanLock.acquire(plan, DIGEST, tmp_path / "a.jsonl")
    try:
        assert (held.path, held.previous) == (plan, None)
        with pytest.raises(PlanLocked) as refused:
            PlanLock.acquire(plan, DIGEST, tmp_path / "b.jsonl")
        assert str(refused.value).startswith(
            f"the plan is locked: another apply is running it (holder unknown; lock file "
            f"{PlanLock.path_for(plan, DIGEST)}). Two applies of one plan ({DIGEST}) never run at once")
        _assert_held(plan)
    finally:
        held.release()
    assert plan.read_text() == "{}"
    PlanLock.acquire(plan, DIGEST, tmp_path / "b.jsonl").release()


@pytest.mark.parametrize("final", ["done", "stale", "unconverged", "failed"])
def test_a_run_this_apply_finished_is_not_kept_in_memory(tmp_path: Path, final: str) -> None:
    """Once a run reaches its outcome (failed included) the journal keeps nothing of it in memory (it is
    on disk for the next apply): memory stays flat however many runs an apply finishes."""
    journal = Journal.open(tmp_path / "j.jsonl", _plan())
    try:
        journal.record("acme/vision/a", "started")
        journal.record("acme/vision/a", "metadata_written")
        assert "acme/vision/a" in journal.runs
        journal.record("acme/vision/a", final)
        assert journal.runs == {}
    finally:
        journal.close()


def test_a_finished_journal_of_another_plan_is_started_afresh(tmp_path: Path) -> None:
    """Another plan's journal whose apply completed (re-planning into the same file): the journal starts
    afresh, the new plan's header then its records, and ``replaced`` names the plan it replaced."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, _plan())
    journal(ev.RunStarted("acme/vision/a"))
    journal(ev.ApplyComplete(ApplyResult()))
    journal.close()
    other = make_plan(run_plan(live_run("b"), [config_set("lr", 0.1, 0.3)]))
    journal = Journal.open(path, other)
    journal(ev.RunStarted("acme/vision/b"))
    journal.close()
    assert journal.replaced == plan_digest(_plan())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["type"], r.get("run")) for r in records] == [("plan", None), ("run", "acme/vision/b")]
    assert records[0]["plan_digest"] == plan_digest(other)


def test_a_journal_opened_with_the_caller_s_lock_leaves_that_lock_to_the_caller(tmp_path: Path) -> None:
    """Journal.open with the lock the caller took (apply takes it before checking its outputs) does not
    take it again, and close leaves it held."""
    path = tmp_path / "j.jsonl"
    lock = JournalLock.acquire(path)
    try:
        Journal.open(path, _plan(), lock=lock).close()
        with pytest.raises(PlanLocked):
            JournalLock.acquire(path)
    finally:
        lock.release()
    JournalLock.acquire(path).release()
