"""`reconcile plan` as a subprocess when its surroundings fail: a temp dir that cannot take the plan's
spool (one error line naming the dir, exit 1, no traceback, nothing left behind) and a reader of stdout
that stops after one line (`plan -o plan.json | head -1`: the plan file is saved all the same, quietly,
exit 1)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

RUNS = 400
FIXTURE = {"runs": [
    {"entity": "acme", "project": "vision", "id": f"r{i:03d}", "name": f"name-{i:03d}", "state": "finished",
     "created_at": "2026-09-01T00:00:00Z", "config": {"model": "resnet50", "lr": 0.1},
     "summary": {"val_acc": 0.9}, "tags": ["wip"], "group": "g", "job_type": "train", "notes": ""}
    for i in range(RUNS)]}
SPEC = """\
version: 1
target: {entity: acme, project: vision}
limits: {max_changed_runs: 1000}
rules:
  - name: label-every-run
    match: {all: true}
    set:
      config: {dataset: cifar10, epochs: 90}
      notes: "Labelled by reconcile: enough text that the plan's spool and output are large."
    add_tags: [baseline]
    remove_tags: [wip]
"""
"""Six lines of text per run (2,800 for the 400 runs, well past the renderer's 1,000-line chunks and
a 64 KiB pipe buffer), and a spool of hundreds of KB."""


@pytest.fixture
def spec_env(emulator: Any, wandb_env: Any, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    handle = emulator(seed=FIXTURE)
    env = wandb_env(handle.url)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    return spec, env


def _plan(spec: Path, env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconcile", "plan", "-f", str(spec), "--no-color", *args],
                          env=env, capture_output=True, text=True, timeout=600, **kwargs)


def _assert_spool_refused(result: subprocess.CompletedProcess[str], tmpdir: Path, why: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and str(tmpdir) in lines[0], lines[0]
    assert why in lines[0] and lines[0].endswith(": free space or set TMPDIR to another directory")
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def _limit_file_size() -> None:
    # Every file the plan writes may grow to 64 KiB: the spool (hundreds of KB) cannot. A write past
    # the limit is cut short without an error, so the child writes no .pyc (it would be truncated).
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))


def test_a_temp_dir_that_cannot_take_the_spool_is_one_error_line(spec_env: tuple[Path, dict[str, str]],
                                                                 tmp_path: Path) -> None:
    """Runs everywhere: a file-size limit (RLIMIT_FSIZE) makes the spool's writes fail (EFBIG) as a full
    disk does; the error names the temp dir, nothing is left in it, no crash log."""
    spec, env = spec_env
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "plan.json"
    result = _plan(spec, {**env, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1"}, "-o", str(out),
                   preexec_fn=_limit_file_size)
    _assert_spool_refused(result, tmpdir, "cannot write the plan's spool in")
    assert "(File too large)" in result.stderr
    assert list(tmpdir.iterdir()) == []
    assert not out.exists()


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs with 16 KiB free (mounting needs root: skipped, saying so, without it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE test covers the same path")
    mount = tmp_path / "full"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        # 16 KiB stay free: Python's tempfile passes over a temp dir where it cannot write 4 bytes
        # (for /tmp), so a dir filled to the last byte would not reproduce a spool outgrowing it.
        (mount / "fill").write_bytes(b"\0" * 48 * 1024)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_full_temp_dir_is_one_error_line_naming_it(spec_env: tuple[Path, dict[str, str]], full_tmpfs: Path,
                                                      tmp_path: Path, command: str) -> None:
    """The review's reproduction: TMPDIR on a full tmpfs, for `plan -f` and `apply -f` (which plans
    first): one line, exit 1, no traceback, nothing left (no 0-byte crash log)."""
    spec, env = spec_env
    env = {**env, "TMPDIR": str(full_tmpfs)}
    if command == "plan":
        result = _plan(spec, env)
    else:
        result = subprocess.run([sys.executable, "-m", "reconcile", "apply", "-f", str(spec),
                                 "--auto-approve", "--no-color"],
                                env=env, capture_output=True, text=True, timeout=600)
    _assert_spool_refused(result, full_tmpfs, "no space left in")
    assert result.stderr.startswith(f"Error: no space left in the temp directory {full_tmpfs} for the plan's "
                                    "spool")
    assert [p.name for p in full_tmpfs.iterdir()] == ["fill"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_plan_file_is_saved_when_stdout_closes_after_one_line(spec_env: tuple[Path, dict[str, str]],
                                                                   tmp_path: Path, fmt: str) -> None:
    """`plan -o plan.json | head -1`: the plan file is whole, the "Saved" line is on stderr, no
    traceback, exit 1 (the output to stdout is incomplete)."""
    spec, env = spec_env
    out = tmp_path / "plan.json"
    args = [sys.executable, "-m", "reconcile", "plan", "-f", str(spec), "--no-color", "--format", fmt,
            "-o", str(out)]
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does
        stderr = proc.stderr.read()
        code = proc.wait(timeout=600)
    assert first.strip(), stderr
    assert code == 1, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Error" not in stderr
    assert f"Saved the plan to {out}." in stderr
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == RUNS
