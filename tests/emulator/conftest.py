"""Module-scoped emulator and wandb.Api for emulator tests (building an Api spawns wandb-core, ~0.3 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wandb

from reconcile.emulator.testing import EmulatorHandle, running_emulator
from tests.conftest import TEST_API_KEY

FIXTURE = Path(__file__).with_name("fixture.yaml")


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation as the autouse guard, for module-scoped objects built before it runs."""
    home = tmp_path_factory.mktemp("module-home")
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("WANDB_", "RECONCILE_")):
                mp.delenv(var, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("NETRC", str(home / ".netrc"))
        mp.setenv("WANDB_DIR", str(home / "wandb"))
        mp.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
        mp.setenv("WANDB_CACHE_DIR", str(home / "wandb-cache"))
        mp.setenv("WANDB_DATA_DIR", str(home / "wandb-data"))
        mp.setenv("WANDB_ERROR_REPORTING", "false")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB__GRAPHQL_RETRY_MAX", "3")
        mp.setenv("WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS", "1")
        mp.setenv("WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS", "1")
        yield home


@pytest.fixture(scope="module")
def emu(module_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    """An emulator seeded with tests/emulator/fixture.yaml, shared by one test module."""
    db = tmp_path_factory.mktemp("emulator") / "emulator.sqlite"
    with running_emulator(seed=FIXTURE, db=db) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(emu: EmulatorHandle) -> Any:
    """A real wandb.Api pointed at the module's emulator."""
    return wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)


def names(runs: Any) -> list[str]:
    """Run ids of an iterable of wandb runs, in order."""
    return [run.id for run in runs]
