"""The edges of `reconcile apply` a user meets: the `apply -f` prompt (only a literal `yes` proceeds),
`apply PLAN --target` refused, `--journal` / `--undo-out` honoured, `--log-format json` with `-v`
levels, and the progress bar on a real terminal (a pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click.testing
import pytest
from click.testing import CliRunner, Result

from reconcile.cli import main
from reconcile.commands.apply import CONFIRM
from reconcile.render.common import size_text
from tests.integration.test_apply import BULK, api, bulk_runs, cli, write

pytestmark = pytest.mark.integration

Start = Callable[..., Any]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")

TAGS_ONLY = """
version: 1
target: {entity: acme, project: bulk}
rules:
  - name: audit
    match: {all: true}
    add_tags: [audited]
"""

FILES_SPEC = BULK + """    files: {delete: ["*.ckpt"]}
"""


def runs_with_files(count: int, files_each: int, size: int) -> list[dict[str, Any]]:
    """bulk_runs with ``files_each`` deletable checkpoints of ``size`` bytes and one kept file each."""
    runs = bulk_runs(count)
    for run in runs:
        run["files"] = [{"name": f"c{j}.ckpt", "content": "x" * size} for j in range(files_each)] + [
            {"name": "keep.txt", "content": "kept"}]
    return runs


def writes(emu: Any) -> list[dict[str, Any]]:
    """The writes the emulator applied (reads are not logged)."""
    return [m for m in emu.mutations() if m["operation"] in ("UpsertBucket", "deleteFiles")]


# --------------------------------------------------------------------------- pseudo-terminal runs


class Terminal:
    """``python -m reconcile ARGS`` with stdin, stdout and stderr on a pseudo-terminal."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "reconcile", *args], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=cwd, env=env, close_fds=True)
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        """Everything shown so far, escape sequences and carriage returns removed."""
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def _read(self, timeout: float) -> bool | None:
        """Read what is shown: True if something came, False at the end, None after ``timeout`` s."""
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return None
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.raw += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 60) -> None:
        """Read until ``text`` is shown (fails after ``timeout`` seconds of waiting)."""
        deadline = time.monotonic() + timeout
        while text not in self.text:
            got = self._read(deadline - time.monotonic())
            why = "ended" if got is False else "timed out"
            assert got, f"never showed {text!r} ({why}):\n{self.text[-3000:]}"

    def type(self, line: str) -> None:
        """Type ``line`` and Enter."""
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 120) -> int:
        """Read to the end (fails if nothing is shown for ``timeout`` seconds); the exit code."""
        while (got := self._read(timeout)) is not False:
            assert got is not None, f"the command went silent for {timeout} s:\n{self.text[-3000:]}"
        code = self.proc.wait(timeout=timeout)
        os.close(self.master)
        return code


@pytest.fixture
def tty_env(emulator: Start, wandb_env: Any) -> Callable[..., Any]:
    """An emulator seeded with ``runs``, WANDB_* pointing at it (inherited by the terminal's process)."""

    def start(runs: list[dict[str, Any]]) -> Any:
        emu = emulator(seed={"runs": runs})
        wandb_env(emu.url)
        return emu

    return start


@pytest.mark.slow
def test_apply_f_prompt_proceeds_only_on_a_literal_yes(tty_env: Callable[..., Any], tmp_path: Path) -> None:
    """On a terminal, apply -f shows the plan and asks; "y" and an empty answer cancel with nothing
    written (exit 1); "yes" applies. (More answers in-process below: each terminal run costs seconds.)"""
    emu = tty_env(bulk_runs(2))
    write(tmp_path / "s.yaml", BULK)
    for answer in ("y", ""):
        term = Terminal(["apply", "-f", "s.yaml"], tmp_path)
        term.expect(CONFIRM)
        assert "audited" in term.text  # the plan is shown before the question
        term.type(answer)
        assert term.finish() == 1, term.text
        assert "Apply cancelled." in term.text, answer
        assert not writes(emu), answer
        assert not (tmp_path / "reconcile.plan.json").exists()
    term = Terminal(["apply", "-f", "s.yaml"], tmp_path)
    term.expect(CONFIRM)
    term.type("yes")
    assert term.finish() == 0, term.text
    assert "Apply complete: 2 runs changed" in term.text
    assert sorted(m["run"] for m in writes(emu)) == ["acme/bulk/b000", "acme/bulk/b001"]


@pytest.mark.parametrize("answer", ["yes ", "yess", "YES", "Yes", "no", "ok", "y"])
def test_apply_f_prompt_answers_in_process(answer: str, emulator: Start, wandb_env: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same prompt in-process (stdin made to look like a terminal): only "yes" (surrounding blanks
    aside, as Terraform) proceeds."""
    emu = emulator(seed={"runs": bulk_runs(1)})
    wandb_env(emu.url)
    spec = write(tmp_path / "s.yaml", BULK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda _self: True)
    result = CliRunner().invoke(main, ["apply", "-f", str(spec)], input=answer + "\n")
    if answer.strip() == "yes":
        assert result.exit_code == 0, result.output
        assert len(writes(emu)) == 1
    else:
        assert result.exit_code == 1, result.output
        assert "Apply cancelled." in result.stderr
        assert not writes(emu)


@pytest.mark.slow
def test_progress_bar_on_a_terminal_counts_runs_files_and_bytes(tty_env: Callable[..., Any],
                                                                 tmp_path: Path) -> None:
    """apply on a terminal draws a progress bar that ends at every run done, with the files deleted and
    bytes freed counted; no JSON/log lines for runs applied normally."""
    runs, files_each, size = 3, 2, 1500
    tty_env(runs_with_files(runs, files_each, size))
    spec = write(tmp_path / "s.yaml", FILES_SPEC)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    term = Terminal(["apply", "plan.json", "--backup-dir", "backups"], tmp_path)
    assert term.finish() == 0, term.text
    files, freed = runs * files_each, size_text(runs * files_each * size)
    assert f"Apply complete: {runs} runs changed, {files} files deleted ({freed} freed)" in term.text
    (bar,) = {line for line in term.text.splitlines() if f"{runs}/{runs}" in line}
    assert f"{files}/{files} files deleted" in bar and freed in bar, term.text
    assert "run_applied" not in term.text


# --------------------------------------------------------------------------- saved plans


def test_apply_saved_plan_with_target_is_refused(emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """`apply PLAN --target ...`: a saved plan is applied exactly as it is, so --target is refused with
    exit 1 before anything is written or journalled."""
    emu = emulator(seed={"runs": bulk_runs(2)})
    wandb_env(emu.url)
    work = tmp_path / "work"
    work.mkdir()
    plan = work / "plan.json"
    assert cli("plan", "-f", str(write(work / "s.yaml", BULK)), "-o", str(plan)).exit_code == 0
    refused = cli("apply", str(plan), "--target", "acme/bulk/b000")
    assert refused.exit_code == 1
    assert "--target only works with -f" in refused.output
    assert not writes(emu)
    assert sorted(p.name for p in work.iterdir()) == ["plan.json", "s.yaml"]  # no journal, no undo plan


def test_journal_and_undo_out_override_the_defaults(emulator: Start, wandb_env: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--journal and --undo-out put the journal and undo plan where asked (for a saved plan and for
    apply -f), nothing at the default places; the undo plan written there restores the runs."""
    emu = emulator(seed={"runs": bulk_runs(2)})
    wandb_env(emu.url)
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path / "s.yaml", TAGS_ONLY)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    (tmp_path / "j").mkdir()
    (tmp_path / "u").mkdir()
    journal, undo = tmp_path / "j" / "mine.jsonl", tmp_path / "u" / "back.json"
    applied = cli("apply", str(plan), "--journal", str(journal), "--undo-out", str(undo))
    assert applied.exit_code == 0, applied.output
    assert not (tmp_path / "plan.journal.jsonl").exists() and not (tmp_path / "plan.undo.json").exists()
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert {e.get("run") for e in lines if e.get("run")} == {"acme/bulk/b000", "acme/bulk/b001"}
    assert str(undo) in applied.stderr
    assert "audited" in api(emu.url).run("acme/bulk/b000").tags
    undone = cli("apply", str(undo), "--journal", str(tmp_path / "j" / "undo.jsonl"))
    assert undone.exit_code == 0, undone.output
    assert api(emu.url).run("acme/bulk/b000").tags == ["t"]
    assert (tmp_path / "j" / "undo.jsonl").exists() and not (tmp_path / "u" / "back.journal.jsonl").exists()

    spec2 = write(tmp_path / "s2.yaml", TAGS_ONLY.replace("audited", "twice"))
    journal2, undo2 = tmp_path / "j" / "f.jsonl", tmp_path / "u" / "f.json"
    from_spec = cli("apply", "-f", str(spec2), "--auto-approve", "--journal", str(journal2),
                    "--undo-out", str(undo2))
    assert from_spec.exit_code == 0, from_spec.output
    assert journal2.exists() and undo2.exists()
    assert not (tmp_path / "reconcile.plan.journal.jsonl").exists()
    assert not (tmp_path / "reconcile.plan.undo.json").exists()


# --------------------------------------------------------------------------- logs


def json_events(result: Result) -> list[dict[str, Any]]:
    """stderr as JSON events: every line must be one."""
    return [json.loads(line) for line in result.stderr.splitlines() if line.strip()]


def test_log_format_json_and_verbosity_levels(emulator: Start, wandb_env: Any, tmp_path: Path) -> None:
    """With --log-format json every stderr line is a JSON event: warnings (a stale run) always, info
    (run_applied, apply_start) from -v, debug (run_started, run_metadata_written) from -vv."""
    spec = write(tmp_path / "s.yaml", BULK)
    levels: dict[str, set[str]] = {}
    names: dict[str, set[str]] = {}
    for flags in ("", "-v", "-vv"):
        emu = emulator(seed={"runs": bulk_runs(3)})
        wandb_env(emu.url)
        plan = tmp_path / f"plan{flags}.json"
        assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
        edited = api(emu.url).run("acme/bulk/b001")
        edited.tags = ["someone-else"]
        edited.update()
        result = cli("apply", str(plan), "--log-format", "json", *([flags] if flags else []))
        assert result.exit_code == 1, result.output  # one stale run
        assert "Apply complete: 2 runs changed" in result.stdout
        events = json_events(result)
        levels[flags] = {e["level"] for e in events}
        names[flags] = {e["event"] for e in events}
        stale = [e for e in events if e["event"] == "run_stale"]
        assert [e["run"] for e in stale] == ["acme/bulk/b001"]
    assert levels[""] == {"warning"}
    assert levels["-v"] == {"warning", "info"}
    assert levels["-vv"] == {"warning", "info", "debug"}
    assert {"apply_start", "run_applied", "undo_written"} <= names["-v"] - names[""]
    assert {"run_started", "run_metadata_written"} <= names["-vv"] - names["-v"]
