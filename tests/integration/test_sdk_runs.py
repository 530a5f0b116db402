"""reconcile plans and applies runs the real SDK made: running runs are left alone, and a run that
finishes between plan and apply is stale for that plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb

from reconcile.emulator.testing import EmulatorHandle, running_emulator
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

SPEC = """
version: 1
target: {entity: acme, project: live}
rules:
  - name: label-everything
    match: {all: true}
    add_tags: [seen]
  - name: watch-running
    match: {state: [running]}
    set: {notes: "still training"}
"""


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    """An emulator without runs: the SDK makes them."""
    with running_emulator(
        seed={"viewer": {"entity": "acme", "username": "alice"}, "runs": []}, db=tmp_path / "emulator.sqlite"
    ) as handle:
        yield handle


def reconcile(emu: EmulatorHandle, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The reconcile CLI in its own process (this one holds a live wandb run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_BASE_URL=emu.url,
        WANDB_API_KEY=TEST_API_KEY,
        WANDB_SILENT="true",
        WANDB_DIR=str(cwd),
        WANDB_CONFIG_DIR=str(cwd / "cfg"),
        WANDB_CACHE_DIR=str(cwd / "cache"),
    )
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
    )


def test_sdk_runs_running_left_alone_and_finished_after_plan_is_stale(
    emu: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished SDK run is planned like a seeded one; a running one only by a rule naming `running`;
    when that run finishes before apply, apply calls it stale and leaves it untouched."""
    monkeypatch.setenv("WANDB_BASE_URL", emu.url)
    monkeypatch.setenv("WANDB_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()
    settings = wandb.Settings(base_url=emu.url)
    done = wandb.init(entity="acme", project="live", id="done-1", config={"lr": 0.1}, settings=settings)
    done.log({"loss": 0.5})
    done.finish()
    live = wandb.init(entity="acme", project="live", id="live-1", config={"lr": 0.2}, settings=settings)
    try:
        live.log({"loss": 0.9})
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        plan = reconcile(emu, tmp_path, "plan", "-f", str(spec), "-o", str(tmp_path / "plan.json"))
        assert plan.returncode == 0, plan.stdout + plan.stderr
        planned = {r["path"]: r for r in json.loads((tmp_path / "plan.json").read_text())["runs"]}
        assert set(planned) == {"acme/live/done-1", "acme/live/live-1"}
        # the running run gets only the rule that names its state, not label-everything
        assert {r for c in planned["acme/live/live-1"]["changes"] for r in c["rules"]} == {"watch-running"}
        live.finish()
        before = len(emu.mutations())
        applied = reconcile(emu, tmp_path, "apply", str(tmp_path / "plan.json"))
        assert applied.returncode == 1, applied.stdout + applied.stderr
        assert "stale: acme/live/live-1" in applied.stderr
        written = [m for m in emu.mutations()[before:] if m["operation"] == "UpsertBucket"]
        assert {m["run"] for m in written} == {"acme/live/done-1"}
    finally:
        wandb.teardown()
    api = wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)
    assert "seen" in api.run("acme/live/done-1").tags
    assert api.run("acme/live/live-1").notes in (None, "")
