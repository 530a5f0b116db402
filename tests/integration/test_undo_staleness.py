"""When an undo plan is stale: it covers what the undo writes and overwrites, not the whole run, and a
stale run names its drifted fields and says what to do with an undo plan (it cannot be planned again).
Real wandb client against the emulator; the later edits go through the public API as a user's would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner, Result

from reconcile.cli import main
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

RUN = {"entity": "acme", "project": "vision", "id": "r1", "name": "r1", "state": "finished",
       "created_at": "2026-01-02T03:04:05Z", "config": {"lr": 0.1}, "summary": {}, "tags": ["wip"],
       "notes": "", "files": [{"name": "ckpt/1.pt", "content": "first checkpoint\n"},
                              {"name": "best.pt", "content": "best"}]}
SPEC = """\
version: 1
target: {entity: acme, project: vision}
rules:
  - name: prune
    match: {ids: [r1]}
    set: {notes: pruned}
    files: {delete: ["ckpt/*.pt"]}
"""


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _applied(tmp_path: Path, emulator: Callable[..., Any], wandb_env: Any) -> tuple[Any, Path]:
    """r1 planned (notes, delete ckpt/1.pt) and applied with a backup; returns the run and its undo plan."""
    emu = emulator(seed={"runs": [RUN]})
    wandb_env(emu.url)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    plan = tmp_path / "p.json"
    assert _cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    applied = _cli("apply", str(plan), "--backup-dir", str(tmp_path / "bk"))
    assert applied.exit_code == 0, applied.output
    run = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY).run("acme/vision/r1")
    return run, tmp_path / "p.undo.json"


def _upload(run: Any, tmp_path: Path, name: str) -> None:
    source = tmp_path / "upload" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("someone else's file\n")
    run.upload_file(str(source), root=str(tmp_path / "upload"))


def test_an_unrelated_upload_does_not_make_the_undo_stale(tmp_path: Path, emulator: Any,
                                                          wandb_env: Any) -> None:
    """A file uploaded after the apply under another name: the undo neither writes nor overwrites it, so
    it still applies (notes back, ckpt/1.pt re-uploaded) and the new file stays."""
    run, undo = _applied(tmp_path, emulator, wandb_env)
    _upload(run, tmp_path, "eval/report.txt")
    undone = _cli("apply", str(undo))
    assert undone.exit_code == 0, undone.output
    assert "0 stale" in undone.stdout and "1 file restored" in undone.stdout, undone.output
    run.load(force=True)
    assert run.notes == ""
    assert sorted(f.name for f in run.files()) == ["best.pt", "ckpt/1.pt", "eval/report.txt"]


@pytest.mark.parametrize(("edit", "named"), [("notes", "notes"), ("same-name file", "file ckpt/1.pt")])
def test_a_stale_undo_names_the_fields_and_says_what_to_do(tmp_path: Path, emulator: Any, wandb_env: Any,
                                                          edit: str, named: str) -> None:
    """A change the undo would overwrite (the notes it restores, or a new file under the name it
    re-uploads) makes it stale: the line names the field and says what to do with an undo plan, not
    "plan again" (an undo plan cannot be made again); nothing is written."""
    run, undo = _applied(tmp_path, emulator, wandb_env)
    if edit == "notes":
        run.notes = "edited by hand"
        run.update()
    else:
        _upload(run, tmp_path, "ckpt/1.pt")
    undone = _cli("apply", str(undo))
    assert undone.exit_code == 1, undone.output
    [line] = [line for line in undone.stderr.splitlines() if line.startswith("stale:")]
    assert line.startswith(f"stale: acme/vision/r1: {named}"), line
    assert "(plan again)" not in line, line
    assert "undo plan" in line, line
    run.load(force=True)
    assert run.notes == ("edited by hand" if edit == "notes" else "pruned")
