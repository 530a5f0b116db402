"""Artifact version retention end to end, through the real CLI and the real wandb client: a
Lightning-style checkpoint collection logged every epoch (20 versions, aliases latest and best),
a rule keeping aliased versions and the last 3 -> the plan lists exactly the others with sizes ->
apply (with backups) -> api.artifacts() shows the survivors with their aliases. A version that
gains an alias between plan and apply is stale and survives."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner, Result

from reconcile.cli import main
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

MIB = 1 << 20
EPOCHS = 20
BEST = 12


def _size(epoch: int) -> int:
    return (40 + epoch) * MIB // 10  # 4.0 MiB .. 5.9 MiB


def _mib(size: int) -> str:
    """``4.1 MiB``: two decimals at most, trailing zeros dropped."""
    return f"{size / MIB:.2f}".rstrip("0").rstrip(".") + " MiB"


FIXTURE = {
    "runs": [
        {
            "entity": "acme",
            "project": "vision",
            "id": "train1",
            "name": "lightning-1",
            "state": "finished",
            "created_at": "2026-03-01T00:00:00Z",
            "summary": {"val_acc": 0.9},
            # ModelCheckpoint + WandbLogger(log_model="all"): one version of model-<run id> per epoch.
            "artifacts": [
                {
                    "name": "model-train1",
                    "type": "model",
                    "created_at": f"2026-03-01T{epoch:02d}:00:00Z",
                    "files": [{"name": "model.ckpt", "size": _size(epoch)}],
                    "aliases": ["best"] if epoch == BEST else [],
                }
                for epoch in range(EPOCHS)
            ]
            + [{"name": "cifar10", "type": "dataset", "size": 1000}],
        },
    ]
}

SPEC = """
version: 1
target: {entity: acme, project: vision}
rules:
  - name: prune-checkpoints
    match: {all: true}
    artifacts:
      type: model
      name: "model-*"
      keep_last: 3
"""

KEPT = {16, 17, 18, 19, BEST}  # the last 3 unaliased versions, latest (v19) and best
DELETED = [v for v in range(EPOCHS) if v not in KEPT]


def invoke(*args: str) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def setup(emulator: Any, wandb_env: Any, tmp_path: Path) -> tuple[Any, Path]:
    """A seeded emulator and the spec file."""
    handle = emulator(seed=FIXTURE)
    wandb_env(handle.url)
    spec = tmp_path / "retention.yaml"
    spec.write_text(SPEC)
    return handle, spec


def _versions(url: str, collection: str = "model-train1") -> dict[int, list[str]]:
    api = wandb.Api(overrides={"base_url": url}, api_key=TEST_API_KEY)
    return {
        int(a.version[1:]): sorted(a.aliases) for a in api.artifacts("model", f"acme/vision/{collection}")
    }


def test_plan_lists_exactly_the_other_versions_then_apply_keeps_survivors(
    setup: tuple[Any, Path], tmp_path: Path
) -> None:
    """Plan text and JSON list the 15 unaliased older versions with sizes; apply deletes them (backed
    up first) with DeleteArtifact; latest and best keep their versions."""
    handle, spec = setup
    text = invoke("plan", "-f", str(spec), "--no-color")
    assert text.exit_code == 0, text.output
    for v in DELETED:
        assert f'- artifact version "model-train1:v{v}" ({_mib(_size(v))}, aliases: none)' in text.output
    for v in KEPT:
        assert f'"model-train1:v{v}"' not in text.output
    assert "cifar10" not in text.output
    freed = sum(_size(v) for v in DELETED)
    assert text.output.rstrip().splitlines()[-1] == (
        f"Plan: 1 run to change (0 attribute changes), 0 files to delete (0 bytes), "
        f"15 artifact versions to delete ({_mib(freed)})."
    )

    out = tmp_path / "plan.json"
    assert invoke("plan", "-f", str(spec), "-o", str(out), "--format", "json").exit_code == 0
    [run] = json.loads(out.read_text())["runs"]
    changes = run["changes"]
    assert {(c["kind"], c["op"]) for c in changes} == {("artifact", "delete")}
    assert sorted(c["artifact"]["version_index"] for c in changes) == DELETED
    assert all(c["artifact"]["size"] == _size(c["artifact"]["version_index"]) for c in changes)
    assert all(c["artifact"]["aliases"] == [] for c in changes)

    backups = tmp_path / "backups"
    applied = invoke("apply", str(out), "--backup-dir", str(backups))
    assert applied.exit_code == 0, applied.output
    assert "15 artifact versions deleted" in applied.output
    assert _versions(handle.url) == {19: ["latest"], 18: [], 17: [], 16: [], BEST: ["best"]}
    for v in DELETED:  # in this apply's own folder, DIR/<apply id>/artifacts/...
        [backup] = backups.glob(f"*/artifacts/acme/vision/train1/model-train1/v{v}/model.ckpt")
        assert backup.stat().st_size == _size(v)
    deletes = [m for m in handle.mutations() if m["operation"] == "DeleteArtifact"]
    assert sorted(m["fields"]["artifact"] for m in deletes) == sorted(
        f"acme/vision/model-train1:v{v}" for v in DELETED
    )
    again = invoke("plan", "-f", str(spec), "--detailed-exitcode")
    assert again.exit_code == 0, again.output


def test_a_version_that_gains_an_alias_after_the_plan_is_stale(
    setup: tuple[Any, Path], tmp_path: Path
) -> None:
    """Someone promotes v3 between plan and apply: the run is stale, nothing of it is deleted, exit 1."""
    handle, spec = setup
    out = tmp_path / "plan.json"
    assert invoke("plan", "-f", str(spec), "-o", str(out)).exit_code == 0
    api = wandb.Api(overrides={"base_url": handle.url}, api_key=TEST_API_KEY)
    promoted = api.artifact("acme/vision/model-train1:v3")
    promoted.aliases.append("production")
    promoted.save()
    applied = invoke("apply", str(out), "--backup-dir", str(tmp_path / "b"))
    assert applied.exit_code == 1
    assert "model-train1:v3 gained the alias production" in applied.output
    assert len(_versions(handle.url)) == EPOCHS
    assert not [m for m in handle.mutations() if m["operation"] == "DeleteArtifact"]


def test_delete_aliased_allows_named_aliases_but_never_latest(
    emulator: Any, wandb_env: Any, tmp_path: Path
) -> None:
    """delete_aliased: [best] lets the best version go (its alias with it); latest still survives."""
    handle = emulator(seed=FIXTURE)
    wandb_env(handle.url)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("keep_last: 3", "keep_last: 1\n      delete_aliased: [best]"))
    out = tmp_path / "plan.json"
    assert invoke("plan", "-f", str(spec), "-o", str(out)).exit_code == 0
    applied = invoke("apply", str(out), "--backup-dir", str(tmp_path / "b"))
    assert applied.exit_code == 0, applied.output
    assert _versions(handle.url) == {19: ["latest"], 18: []}


@pytest.fixture
def sdk_project(emulator: Any, wandb_env: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """An emulator whose project is made by the real SDK: one training run that logs a Lightning-style
    checkpoint artifact every epoch (20 versions; `best` on epoch 12, `latest` on the last)."""
    handle = emulator(seed={"viewer": {"entity": "acme", "username": "alice"}, "runs": []})
    wandb_env(handle.url)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    wandb.teardown()
    run = wandb.init(
        project="vision", entity="acme", settings=wandb.Settings(base_url=handle.url, console="off")
    )
    for epoch in range(EPOCHS):
        checkpoint = tmp_path / "model.ckpt"
        checkpoint.write_bytes(bytes([epoch]) * _size(epoch))
        # What WandbLogger(log_model="all") does after each ModelCheckpoint save.
        artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={"epoch": epoch})
        artifact.add_file(str(checkpoint), name="model.ckpt")
        run.log_artifact(artifact, aliases=["latest", "best"] if epoch == BEST else ["latest"])
    run.finish()
    wandb.teardown()
    return handle, run.id


def test_sdk_made_checkpoints_keep_aliases_and_the_last_three(sdk_project: Any, tmp_path: Path) -> None:
    """The issue's acceptance flow on versions the SDK logged: plan lists exactly the 15 others with
    their sizes; apply deletes them; api.artifacts() shows v12 (best), v16-v18 and v19 (latest)."""
    handle, run_id = sdk_project
    assert _versions(handle.url, f"model-{run_id}") == {
        v: ["best"] if v == BEST else ["latest"] if v == EPOCHS - 1 else [] for v in range(EPOCHS)
    }
    spec = tmp_path / "retention.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "plan.json"
    planned = invoke("plan", "-f", str(spec), "-o", str(out), "--no-color")
    assert planned.exit_code == 0, planned.output
    for v in DELETED:
        assert f'- artifact version "model-{run_id}:v{v}" ({_mib(_size(v))}, aliases: none)' in planned.output
    [run] = json.loads(out.read_text())["runs"]
    assert sorted((c["artifact"]["version_index"], c["artifact"]["size"]) for c in run["changes"]) == [
        (v, _size(v)) for v in DELETED
    ]
    applied = invoke("apply", str(out), "--backup-dir", str(tmp_path / "backups"))
    assert applied.exit_code == 0, applied.output
    assert _versions(handle.url, f"model-{run_id}") == {
        19: ["latest"],
        18: [],
        17: [],
        16: [],
        BEST: ["best"],
    }
    [backup] = (tmp_path / "backups").glob(f"*/artifacts/acme/vision/{run_id}/model-{run_id}/v3")
    assert (backup / "model.ckpt").read_bytes() == bytes([3]) * _size(3)


def test_show_kept_lists_each_surviving_version_and_why(setup: tuple[Any, Path], tmp_path: Path) -> None:
    """--show-kept (text and markdown) and the JSON plan (always) list every candidate version that
    survives with its reason: latest and best by alias, the newest three by keep_last."""
    _, spec = setup
    text = invoke("plan", "-f", str(spec), "--no-color", "--show-kept")
    assert text.exit_code == 0, text.output
    kept_section = text.output.split("Kept by the retention rules")[1]
    why = {
        19: "prune-checkpoints: alias latest",
        BEST: "prune-checkpoints: alias best",
        18: "prune-checkpoints: keep_last 1 of 3",
        17: "prune-checkpoints: keep_last 2 of 3",
        16: "prune-checkpoints: keep_last 3 of 3",
    }
    for v, reason in why.items():
        aliases = "latest" if v == 19 else "best" if v == BEST else "none"
        line = f'= artifact version "model-train1:v{v}" ({_mib(_size(v))}, aliases: {aliases})  # {reason}'
        assert line in kept_section
    assert kept_section.count("= artifact version") == len(KEPT)
    assert "Kept by the retention rules" not in invoke("plan", "-f", str(spec), "--no-color").output

    markdown = invoke("plan", "-f", str(spec), "--format", "markdown", "--show-kept")
    assert markdown.exit_code == 0, markdown.output
    assert "(5 kept)" in markdown.output
    assert (f"| = artifact version \"model-train1:v{BEST}\" | {_mib(_size(BEST))}, aliases: best "
            "| prune-checkpoints: alias best |") in markdown.output

    out = tmp_path / "plan.json"
    assert invoke("plan", "-f", str(spec), "-o", str(out), "--format", "json").exit_code == 0
    [run] = json.loads(out.read_text())["runs"]
    assert {k["version_index"]: [f"{r['rule']}: {r['selector']} {r['detail']}" for r in k["reasons"]]
            for k in run["kept_artifacts"]} == {v: [reason] for v, reason in why.items()}
    assert run["kept"] == []


TTL_SPEC = """
version: 1
target: {entity: acme, project: vision}
rules:
  - name: expire-checkpoints
    match: {all: true}
    artifacts:
      type: model
      name: "model-*"
      ttl: 365d
"""


def test_a_desired_ttl_is_planned_applied_read_back_by_the_client_and_then_no_change(
    setup: tuple[Any, Path], tmp_path: Path
) -> None:
    """ttl alone: the plan sets the TTL of each unaliased version (none -> 365d) and deletes nothing;
    apply sends the client's UpdateArtifact once per version; `api.artifact(...).ttl` reads 365 days;
    latest and best keep no TTL; planning again finds no change."""
    handle, _ = setup
    spec = tmp_path / "ttl.yaml"
    spec.write_text(TTL_SPEC)
    unaliased = [v for v in range(EPOCHS) if v not in (19, BEST)]
    text = invoke("plan", "-f", str(spec), "--no-color")
    assert text.exit_code == 0, text.output
    line = r'~ artifact version "model-train1:v(\d+)" ttl += "none" -> "365d"  # expire-checkpoints'
    changed = re.findall(line, text.output)  # `ttl +=`: the block aligns its `=`
    assert sorted(int(v) for v in changed) == unaliased
    assert text.output.rstrip().splitlines()[-1] == (
        "Plan: 1 run to change (0 attribute changes), 0 files to delete (0 bytes), "
        f"{len(unaliased)} artifact version TTLs to set."
    )

    out = tmp_path / "plan.json"
    assert invoke("plan", "-f", str(spec), "-o", str(out)).exit_code == 0
    applied = invoke("apply", str(out))
    assert applied.exit_code == 0, applied.output
    assert f"{len(unaliased)} artifact version TTLs set" in applied.output
    updates = [m for m in handle.mutations() if m["operation"] == "UpdateArtifact"]
    assert sorted(m["fields"]["artifact"] for m in updates) == sorted(
        f"acme/vision/model-train1:v{v}" for v in unaliased)
    assert {m["fields"]["ttl_seconds"] for m in updates} == {365 * 86_400}

    api = wandb.Api(overrides={"base_url": handle.url}, api_key=TEST_API_KEY)
    assert api.artifact("acme/vision/model-train1:v3").ttl == timedelta(days=365)
    assert api.artifact(f"acme/vision/model-train1:v{BEST}").ttl is None
    assert api.artifact("acme/vision/model-train1:latest").ttl is None
    assert _versions(handle.url)[BEST] == ["best"]  # nothing deleted, aliases intact
    assert len(_versions(handle.url)) == EPOCHS

    again = invoke("plan", "-f", str(spec), "--detailed-exitcode", "--no-color")
    assert again.exit_code == 0, again.output
    assert again.output.rstrip().splitlines()[-1] == "No changes. Runs match the spec."
