"""W&B -> W&B imports between two emulators: runs logged with the real SDK on the source, planned,
applied, read back with the real ``wandb.Api``; a source run edited between plan and apply is stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wandb
from click.testing import CliRunner, Result

from reconcile.cli import main
from tests.conftest import TEST_API_KEY
from tests.imports.test_apply_mlflow import assert_client_vocabulary, sent  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

KEY_ENV = "SOURCE_WANDB_API_KEY"
SOURCE_KEY = "local-" + "fedcba9876543210" * 2 + "76543210"  # the source server's own key


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def log_source_runs(url: str, tmp: Path) -> list[str]:
    """Five runs through the real SDK: config, history, a saved file, tags, notes, group, job type; one
    failed, one without the `migrate` tag (the import's filters leave it out)."""
    settings = wandb.Settings(base_url=url, x_stats_sampling_interval=0.1)
    ids = []
    for i in range(5):
        run = wandb.init(entity="acme", project="vision", id=f"src-{i}", name=f"resnet-{i}",
                         config={"lr": 0.1 * (i + 1), "arch": "resnet"}, notes=f"note {i}", group="sweep-1",
                         job_type="train", tags=["migrate"] if i != 4 else ["keep-here"], settings=settings,
                         dir=str(tmp))
        for step in range(30 + i):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 40})
        artifact = Path(run.dir) / f"notes-{i}.txt"
        artifact.write_text(f"run {i}\n" * 10)
        run.save(str(artifact), base_path=run.dir, policy="now")
        run.finish(exit_code=1 if i == 2 else 0)
        ids.append(run.id)
    return ids


def state(url: str, key: str, run_id: str, tmp: Path) -> dict[str, Any]:
    """What the public API reads of a run (all but its created time)."""
    api = wandb.Api(overrides={"base_url": url}, api_key=key)
    run = api.run(f"acme/vision/{run_id}")
    files = {}
    for file in run.files():
        root = tmp / run_id
        file.download(root=str(root), replace=True).close()
        files[file.name] = (root / file.name).read_bytes()
    return {"name": run.name, "state": run.state, "group": run.group, "job_type": run.job_type,
            "notes": run.notes, "tags": sorted(run.tags), "config": dict(run.config),
            "summary": dict(run.summary_metrics), "history": list(run.scan_history()),
            "system_metrics": run.system_metrics, "events": list(run.history(stream="events", pandas=False)),
            "files": files}


def test_wandb_to_wandb_import_copies_every_field_and_skips_a_run_edited_since_the_plan(
        emulator: Any, wandb_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        sent: list[str]) -> None:  # noqa: F811 - the fixture
    # Any key is accepted (an emulator started with api_key= refuses the SDK's upload PUTs, which carry
    # no key: W&B's upload URLs are signed instead); the source key still only travels by KEY_ENV.
    source = emulator(seed={"runs": []})
    destination = emulator(seed={"runs": []})
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", source.url)
    monkeypatch.setenv("WANDB_API_KEY", SOURCE_KEY)
    wandb.teardown()  # wandb reads its process-wide settings again, with the source's URL and key
    try:
        ids = log_source_runs(source.url, tmp_path / "sdk")
    finally:
        wandb.teardown()
    sent.clear()  # the SDK's own documents: only reconcile's are checked
    wandb_env(destination.url)
    monkeypatch.setenv(KEY_ENV, SOURCE_KEY)
    spec = tmp_path / "import.yaml"
    spec.write_text("version: 1\ntarget: {entity: acme, project: vision}\nimports:\n"
                    "  - name: vision-from-cloud\n    from:\n      wandb:\n"
                    f"        base_url: {source.url}\n        api_key_env: {KEY_ENV}\n"
                    "        entity: acme\n        project: vision\n"
                    '        filters: {tags: {"$in": [migrate]}}\n')
    plan = tmp_path / "plan.json"
    planned = invoke("plan", "-f", str(spec), "-o", str(plan))
    assert planned.exit_code == 0, planned.output
    assert "Plan: 4 runs to create" in planned.stdout
    saved = plan.read_text()
    assert SOURCE_KEY not in saved and KEY_ENV in saved  # the variable's name, never the key
    assert {r["path"] for r in json.loads(saved)["runs"]} == {f"acme/vision/{i}" for i in ids[:4]}

    planning = list(sent)
    api = wandb.Api(overrides={"base_url": source.url}, api_key=SOURCE_KEY)
    edited = api.run("acme/vision/src-1")
    edited.notes = "edited after the plan"
    edited.update()
    sent.clear()
    applied = invoke("apply", str(plan))
    applying = len(sent)  # what apply sent (the reads below are the test's)
    assert applied.exit_code == 1, applied.output  # the edited run is stale
    assert "stale: acme/vision/src-1: the source run changed since the plan" in applied.output
    assert "Apply complete: 3 runs changed" in applied.stdout
    assert SOURCE_KEY not in applied.output

    for run_id in ("src-0", "src-2", "src-3"):
        want = state(source.url, SOURCE_KEY, run_id, tmp_path / "source")
        got = state(destination.url, TEST_API_KEY, run_id, tmp_path / "destination")
        assert got == want, run_id
        assert len(got["history"]) >= 30 and got["files"] and got["events"] and got["system_metrics"]
    absent = wandb.Api(overrides={"base_url": destination.url}, api_key=TEST_API_KEY)
    assert {r.id for r in absent.runs("acme/vision")} == {"src-0", "src-2", "src-3"}
    assert_client_vocabulary(planning + sent[:applying])

    second = tmp_path / "plan2.json"
    again = invoke("plan", "-f", str(spec), "-o", str(second))
    assert "Plan: 1 run to create" in again.stdout, again.output  # the stale one, with its new notes
    finished = invoke("apply", str(second))
    assert finished.exit_code == 0, finished.output
    assert state(destination.url, TEST_API_KEY, "src-1", tmp_path / "d2")["notes"] == "edited after the plan"
    assert "No changes" in invoke("plan", "-f", str(spec)).stdout
