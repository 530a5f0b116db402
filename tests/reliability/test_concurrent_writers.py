"""Concurrent writers: a second wandb.Api client edits runs while apply runs. Its edits to fields the
plan does not manage (other config keys, tags, notes) all survive, because apply sends only the planned
leaves; runs it changed in planned fields are reported stale and never overwritten."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
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
PLANNED_EDITS = [f"r{i:04d}" for i in range(100, 110)]  # the last re-read batch: edited before it is read
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
mutation UpsertBucket($id: String!, $config: JSONString, $tags: [String!], $notes: String,
                      $display_name: String) {
  upsertBucket(input: {id: $id, config: $config, tags: $tags, notes: $notes, displayName: $display_name}) {
    bucket { id }
  }
}
"""


class Editor(threading.Thread):
    """The other team: first renames a few runs (a planned field), then keeps adding its own config key,
    tag and notes to random runs (unplanned fields) until told to stop. Sends only what it changes."""

    def __init__(self, url: str, rng: random.Random) -> None:
        super().__init__(daemon=True, name="other-writer")
        self.api, self.rng, self.stop = api(url), rng, threading.Event()
        self.planned: dict[str, str] = {}
        self.unplanned: dict[str, int] = {}
        self.error: BaseException | None = None

    def send(self, run_id: str, **variables: Any) -> None:
        run = self.api.run(f"acme/fleet/{run_id}")
        self.api._service_api.execute_graphql(UPSERT, {"id": run.storage_id, **variables})

    def run(self) -> None:
        try:
            for run_id in PLANNED_EDITS:
                self.planned[run_id] = f"theirs-{run_id}"
                self.send(run_id, display_name=self.planned[run_id])
            edit = 0
            while not self.stop.is_set() and edit < 200:
                edit += 1
                run_id = f"r{self.rng.randrange(RUNS):04d}"
                tags = sorted(set(self.api.run(f"acme/fleet/{run_id}").tags) | {"theirs"})
                self.send(run_id, config=json.dumps({"theirs": {"value": edit, "desc": None}}), tags=tags,
                          notes=f"edit {edit}")
                self.unplanned[run_id] = edit
        except BaseException as exc:
            self.error = exc


def test_concurrent_writer_edits_survive_and_planned_conflicts_are_stale(
        emulator: Callable[..., Any], subprocess_env: Any, tmp_path: Path) -> None:
    """While apply runs, another client edits 10 runs' names and random runs' other config keys, tags
    and notes: all of its edits are live at the end; the renamed runs are stale and untouched by us."""
    emu = emulator(seed=fleet(RUNS, files_every=RUNS + 1))
    env = subprocess_env(emu.url)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    plan = tmp_path / "plan.json"
    assert CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)]).exit_code == 0
    emu.set_faults(latency_ms=15)  # keep apply busy for a few seconds while the editor works
    editor = Editor(emu.url, random.Random(8))
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "apply", str(plan), "--parallelism", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    editor.start()
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        editor.stop.set()
        editor.join(timeout=30)
    assert editor.error is None, repr(editor.error)
    emu.set_faults(latency_ms=0)
    assert proc.returncode == 1, err  # stale runs are an error exit
    assert len(editor.unplanned) >= 10, "the editor did not get to work while apply ran"
    record(edits=len(editor.unplanned) + len(editor.planned))
    print(f"other writer: {len(editor.planned)} planned-field edits, {len(editor.unplanned)} runs edited "
          f"elsewhere; {out.strip()}")

    mutations = emu.mutations()
    ours = [m for m in mutations if "audit" in (m["fields"].get("config") or {})]
    theirs_at = {m["run"]: m["seq"] for m in mutations
                 if str(m["fields"].get("displayName", "")).startswith("theirs-")}
    stale = {line.split(": ")[1] for line in err.splitlines() if line.startswith("stale: ")}
    for run_id in PLANNED_EDITS:
        path = f"acme/fleet/{run_id}"
        our_writes = [m["seq"] for m in ours if m["run"] == path]
        # Stale and never written, or (had apply reached it first) written before their edit.
        assert (path in stale and not our_writes) or (our_writes and max(our_writes) < theirs_at[path]), path
    for path in stale:
        assert not [m for m in ours if m["run"] == path], f"{path} was written after being reported stale"
    assert stale <= {f"acme/fleet/{r}" for r in PLANNED_EDITS}, "an unplanned field's edit made a run stale"

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
