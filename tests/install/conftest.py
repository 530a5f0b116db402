"""What the install tests share: the sdist and wheel, a wheelhouse of every dependency at the constrained
version (fetched once per session through pip, so each fresh environment installs with no index), and an
environment for tools run outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CONSTRAINTS = REPO / "constraints.txt"

# Read at import, before the autouse fixture points HOME at a temporary directory: pip keeps using the
# real cache.
PIP_CACHE_DIR = subprocess.run(
    [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False
).stdout.strip() or str(Path.home() / ".cache" / "pip")


def outside_env(home: Path, path: list[Path]) -> dict[str, str]:
    """A user's shell outside the checkout: ``path`` first on PATH, nothing of the checkout importable,
    no W&B settings (the caller adds what it needs)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WANDB_", "RECONCILE_", "PYTHON", "VIRTUAL_ENV", "PRE_COMMIT", "PIP_"))
    }
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join([*map(str, path), "/usr/local/bin", "/usr/bin", "/bin"])
    env["PIP_CACHE_DIR"] = PIP_CACHE_DIR
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ from `make test` (RECONCILE_DIST), or a fresh sdist + wheel built from it here."""
    given = os.environ.get("RECONCILE_DIST")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("wandb_reconcile-*.whl")
    return found


@pytest.fixture(scope="session")
def wheelhouse(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reconcile's wheel, every dependency at its constrained version, and the build backend: what a
    fresh environment needs, fetched once (the registries are the only network used)."""
    house = tmp_path_factory.mktemp("wheelhouse")
    home = tmp_path_factory.mktemp("pip-home")
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--dest", str(house),
         "--constraint", str(CONSTRAINTS), str(wheel), "setuptools"],
        capture_output=True, text=True, timeout=600, env={**outside_env(home, []), **_pip_config()},
    )
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    return house


def _pip_config() -> dict[str, str]:
    """This machine's pip settings (extra local indexes, certificates) stay in force for the download."""
    return {key: value for key, value in os.environ.items() if key.startswith("PIP_")}


def offline_pip(env: dict[str, str], wheelhouse: Path) -> dict[str, str]:
    """``env`` with pip installing from the wheelhouse alone (no index at all), without compiling
    bytecode up front (each module compiles when first imported)."""
    return {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse), "PIP_NO_COMPILE": "1",
            "PIP_CONSTRAINT": str(CONSTRAINTS), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
