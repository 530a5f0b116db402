"""The crash handler (``handle_errors``' last line of defence) when its crash log cannot be written: it
says so in one line and exits 3, never raises, and leaves no empty or partial log behind."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from reconcile.errors_handler import EXIT_UNEXPECTED, handle_errors


def _bug() -> int:
    raise RuntimeError("a bug")


def test_no_usable_temp_dir_for_the_crash_log_is_said_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_dir))
    monkeypatch.delenv("RECONCILE_DEBUG", raising=False)
    assert handle_errors(_bug) == EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert err == (f"Error: unexpected failure (RuntimeError: a bug). This is a bug in reconcile; no crash "
                   f"log could be written in {not_a_dir} (Not a directory); run again with RECONCILE_DEBUG=1 "
                   "to see the details here.\n")


def _limit_file_size() -> None:
    # With it, a short write is not an error: the child must write no .pyc (PYTHONDONTWRITEBYTECODE),
    # or it would leave truncated ones behind.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))


def test_a_crash_log_the_disk_cannot_take_is_removed_not_left_empty(tmp_path: Path) -> None:
    """A traceback bigger than the files the process may write (RLIMIT_FSIZE, as a full temp dir): the
    started log is removed, the message says no log was written, exit 3, no second traceback."""
    code = ("import sys\n"
            "from reconcile.errors_handler import handle_errors\n"
            "def bug():\n"
            "    raise RuntimeError('x' * 10_000)\n"
            "sys.exit(handle_errors(bug))\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    result = subprocess.run([sys.executable, "-c", code], env={"TMPDIR": str(tmpdir), "PATH": "/usr/bin:/bin",
                                                                           "PYTHONDONTWRITEBYTECODE": "1"},
                            capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size)
    assert result.returncode == EXIT_UNEXPECTED, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: unexpected failure (RuntimeError: xxx")
    assert line.endswith(f"no crash log could be written in {tmpdir} (File too large); run again with "
                         "RECONCILE_DEBUG=1 to see the details here.")
    assert list(tmpdir.iterdir()) == []
