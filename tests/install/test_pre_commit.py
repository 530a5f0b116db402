"""The pre-commit hook as a user's repository runs it: `pre-commit try-repo` with this repository's
.pre-commit-hooks.yaml installs reconcile from this repository (non-editable, into pre-commit's own
environment) and checks the examples; a typo fails the commit with its file and line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.install.conftest import offline_pip, outside_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent


def _git(cwd: Path, env: dict[str, str], *argv: str) -> None:
    subprocess.run(["git", *argv], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


def test_pre_commit_try_repo_validates_the_examples(tmp_path: Path, wheelhouse: Path) -> None:
    """The hook installs this repository (pip install ., the pinned versions, from the wheelhouse) and
    passes a valid spec; a typo fails with its file and line."""
    home = tmp_path / "home"
    home.mkdir()
    env = offline_pip(outside_env(home, [BIN]), wheelhouse)
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-cache")  # a fresh hook environment, built now
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}.items():
        env[key] = value
    user = tmp_path / "user-repo"
    shutil.copytree(REPO / "examples" / "gitops", user / "reconcile")  # one spec in several files
    _git(user, env, "init", "--quiet")
    _git(user, env, "add", ".")

    def try_repo() -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "pre-commit"), "try-repo", str(REPO), "reconcile-validate", "--all-files",
                "--color", "never"]
        return subprocess.run(argv, cwd=user, env=env, capture_output=True, text=True, timeout=600)

    ok = try_repo()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "reconcile validate" in ok.stdout and "Passed" in ok.stdout, ok.stdout

    (user / "reconcile" / "typo.yaml").write_text(
        "version: 1\nrules:\n  - name: x\n    match: {all: true}\n    sett: {notes: hi}\n"
    )
    _git(user, env, "add", ".")
    failed = try_repo()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Failed" in failed.stdout
    assert "reconcile/typo.yaml:5:" in failed.stdout, failed.stdout
