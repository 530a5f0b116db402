"""What the install tests share: the real pip cache (so a fresh venv installs from it, not the network),
and an environment for tools run outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CONSTRAINTS = REPO / "constraints.txt"

# Read at import, before the autouse fixture points HOME at a temporary directory: the install tests
# reuse pip's real cache, so a fresh venv costs seconds and no download of what was fetched before.
PIP_CACHE_DIR = subprocess.run(
    [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False
).stdout.strip() or str(Path.home() / ".cache" / "pip")


def outside_env(home: Path, path: list[Path]) -> dict[str, str]:
    """A user's shell outside the checkout: ``path`` first on PATH, nothing of the checkout importable,
    no W&B settings (the caller adds what it needs)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WANDB_", "RECONCILE_", "PYTHON", "VIRTUAL_ENV", "PRE_COMMIT"))
    }
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join([*map(str, path), "/usr/local/bin", "/usr/bin", "/bin"])
    env["PIP_CACHE_DIR"] = PIP_CACHE_DIR
    env["PYTHONNOUSERSITE"] = "1"
    return env
