"""Concurrent writers: a second wandb.Api client edits runs while apply runs. Its edits to fields the
plan does not manage (other config keys, tags, notes) all survive, because apply sends only the planned
leaves; runs it changed in planned fields are reported stale and never overwritten.

Nothing is left to timing: the other writer renames its runs after the plan and before apply starts,
edits a first set of runs then too, and a second set while apply is frozen half-way by the emulator's
``hold`` barrier (apply's UpsertBuckets wait after the first 40 until released), so some of those runs
were already written by apply and some not yet, every time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconcile.cli import main
from tests.reliability.conftest import record
from tests.reliability.fleet import api, fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNS = 120
PLANNED_EDITS = [f"r{i:04d}" for i in range(100, 110)]
BEFORE_APPLY = [f"r{i:04d}" for i in range(0, RUNS, 9) if f"r{i:04d}" not in PLANNED_EDITS]
WHILE_HELD = [f"r{i:04d}" for i in range(4, RUNS, 7) if f"r{i:04d}" not in PLANNED_EDITS]
WRITES_BEFORE_HOLD = 40
SPEC = """
version: 1
target: {entity: acme, project: fleet}
rules:
  - name: audit
    match: {all: true}
    set:
      config: {audit: {reviewed: true}}
      name: "audited-{id}"
"""
UPSERT = """
mutation OtherTeamUpsert($id: String!, $config: JSONString, $tags: [String!], $notes: String,
                      $display_name: String) {
  upsertBucket(input: {id: $id, config: $config, tags: $tags, notes: $notes, displayName: $display_name}) {
    bucket { id }
  }
}
"""


class Editor:
    """The other team, with its own wandb.Api client: sends only what it changes."""

    def __init__(self, url: str) -> None:
        self.api = api(url)
        self.planned: dict[str, str] = {}
        self.unplanned: dict[str, int] = {}

    def send(self, run_id: str, **variables: Any) -> None:
        run = self.api.run(f"acme/fleet/{run_id}")
        self.api._service_api.execute_graphql(UPSERT, {"id": run.storage_id, **variables})

    def rename(self, run_id: str) -> None:
        """A planned field: apply must find the run stale."""
        self.planned[run_id] = f"theirs-{run_id}"
        self.send(run_id, display_name=self.planned[run_id])

    def edit(self, run_id: str) -> None:
        """Unplanned fields only: its own config key, a tag, notes."""
        edit = len(self.unplanned) + 1
        tags = sorted(set(self.api.run(f"acme/fleet/{run_id}").tags) | {"theirs"})
        self.send(run_id, config=json.dumps({"theirs": {"value": edit, "desc": None}}), tags=tags,
                  notes=f"edit {edit}")
        self.unplanned[run_id] = edit


def test_concurrent_writer_edits_survive_and_planned_conflicts_are_stale(
        emulator: Callable[..., Any], subprocess_env: Any, tmp_path: Path) -> None:
    """Another client renames 10 runs and edits other runs' unplanned fields, before apply and while it is
    half-way: all of its edits are live at the end; exactly the renamed runs are stale, never written."""
    emu = emulator(seed=fleet(RUNS, files_every=RUNS + 1))
    env = subprocess_env(emu.url)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    plan = tmp_path / "plan.json"
    assert CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)]).exit_code == 0
    editor = Editor(emu.url)
    for run_id in PLANNED_EDITS:
        editor.rename(run_id)
    for run_id in BEFORE_APPLY:
        editor.edit(run_id)
    emu.set_faults(hold="UpsertBucket", hold_after=WRITES_BEFORE_HOLD)
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "apply", str(plan), "--no-backup",
                             "--parallelism", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert emu.wait_held(timeout=90) >= 1, "apply never reached the barrier"
        written_before = {m["run"] for m in emu.mutations() if m["operation"] == "UpsertBucket"}
        for run_id in WHILE_HELD:
            editor.edit(run_id)
    finally:
        emu.set_faults(hold=None)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # stale runs are an error exit
    while_held = {f"acme/fleet/{r}" for r in WHILE_HELD}
    assert while_held & written_before and while_held - written_before, "the barrier split nothing"
    record(edits=len(editor.unplanned) + len(editor.planned))
    print(f"other writer: {len(editor.planned)} planned-field edits, {len(editor.unplanned)} runs edited "
          f"elsewhere ({len(while_held & written_before)} after apply wrote them); {out.strip()}")

    mutations = emu.mutations()
    ours = [m for m in mutations if "audit" in (m["fields"].get("config") or {})]
    stale = {line.split(": ")[1] for line in err.splitlines() if line.startswith("stale: ")}
    assert stale == {f"acme/fleet/{r}" for r in PLANNED_EDITS}, err
    assert not [m for m in ours if m["run"] in stale], "a stale run was written"
    assert f"Apply complete: {RUNS - len(PLANNED_EDITS)} runs changed" in out

    reader = api(emu.url)
    for run in reader.runs("acme/fleet", per_page=1000):
        if run.id in editor.planned:
            assert run.name == editor.planned[run.id]  # never overwritten by apply
        else:
            assert run.name == f"audited-{run.id}"
            assert run.config["audit"] == {"reviewed": True}
        if run.id in editor.unplanned:
            assert run.config["theirs"] == editor.unplanned[run.id], run.id
            assert "theirs" in run.tags, run.id
            assert run.notes == f"edit {editor.unplanned[run.id]}", run.id
