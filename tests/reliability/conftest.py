"""Shared helpers of the reliability suite: the reconcile CLI as a subprocess, tree snapshots, and the
figures (kills survived, faults injected, inputs tried) printed in one line when the session ends."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

FIGURES: Counter[str] = Counter()
"""Totals the tests add to: ``kills`` survived, ``faults`` injected (and by kind), ``inputs`` tried,
``edits`` made by a concurrent writer, ``secret_checks`` (outputs searched for the API key),
``concurrent_applies`` of one plan, ``tampered_plans`` applied, ``bytes_lost`` (deleted bytes without
a complete, checksummed backup: must stay 0)."""


def record(**counts: int) -> None:
    """Add to the session's figures (printed by ``pytest_terminal_summary``)."""
    FIGURES.update(counts)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line with the suite's figures, when any reliability test ran."""
    if FIGURES:
        terminalreporter.write_line(
            f"reliability: {FIGURES['kills']} SIGKILLs survived, {FIGURES['faults']} faults injected "
            f"({FIGURES['faults_500']} x 500, {FIGURES['faults_429']} x 429, {FIGURES['faults_dropped']} "
            f"hung or dropped), {FIGURES['edits']} concurrent edits kept, {FIGURES['inputs']} hostile inputs "
            f"tried, {FIGURES['secret_checks']} outputs checked for the API key, "
            f"{FIGURES['concurrent_applies']} concurrent applies of one plan, {FIGURES['tampered_plans']} "
            f"tampered plans tried, bytes lost: {FIGURES['bytes_lost']}")


def reconcile(*args: str, env: dict[str, str], timeout: float = 60,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m reconcile ARGS`` in a subprocess and wait (bounded) for it."""
    return subprocess.run([sys.executable, "-m", "reconcile", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m reconcile ARGS`` without waiting (for SIGKILL tests)."""
    return subprocess.Popen([sys.executable, "-m", "reconcile", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256), directories as ``<dir>``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "<dir>"
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def subprocess_env(wandb_env: Any, tmp_path: Path) -> Any:
    """``env(url, **extra)``: the environment for a reconcile subprocess against an emulator."""

    def make(url: str, **extra: str) -> dict[str, str]:
        env: dict[str, str] = dict(wandb_env(url))
        env.update(extra)
        return env

    return make
