"""`reconcile plan` and `show` against a seeded emulator with the real wandb client: the JSON
plan's content for the shipped examples, exit codes 0/1/2, --target, running runs, and the
checkpoint-retention example deleting exactly the expected files in one request per run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner, Result

from reconcile.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
MB = 1_000_000


def _ckpt(name: str, day: int, size: int = 120 * MB) -> dict[str, Any]:
    return {"name": name, "size": size, "updated_at": f"2026-09-{day:02d}T10:00:00Z"}


def _run(run_id: str, **extra: Any) -> dict[str, Any]:
    run = {"entity": "acme", "project": "vision", "id": run_id, "name": f"name-{run_id}",
           "state": "finished", "created_at": "2026-09-01T00:00:00Z",
           "config": {"model": "resnet50", "lr": 0.1, "batch_size": 64},
           "summary": {"val_acc": 0.9, "loss": 0.3}, "tags": [], "group": "g", "job_type": "train",
           "notes": ""}
    run.update(extra)
    return run


FIXTURE = {"runs": [
    _run("a1", files=[_ckpt(f"checkpoints/epoch-{i}.pt", i) for i in range(1, 7)]
         + [_ckpt("checkpoints/model-best.pt", 3), _ckpt("small.ckpt", 2, size=1 * MB),
            {"name": "output.log", "size": 50 * MB, "updated_at": "2026-09-01T00:00:00Z"}]),
    _run("a2", files=[_ckpt("model.ckpt", 5), _ckpt("nested/dir/step-9.ckpt", 6),
                      _ckpt("checkpoints/x.pt", 7), _ckpt("checkpoints/y.pt", 8),
                      _ckpt("checkpoints/z.pt", 9)]),
    _run("a3", files=[_ckpt("checkpoints/only.pt", 4)]),
    _run("live", state="running", files=[_ckpt(f"checkpoints/{i}.pt", i) for i in range(1, 6)]),
    _run("b1", summary={"val_acc": 0.8, "val_loss": 0.5, "loss": 0.2}),
]}


def invoke(*args: str) -> Result:
    """Run the CLI in-process (the wandb-core service is shared between calls)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


NOW = datetime(2026, 10, 8, 12, 0, tzinfo=timezone.utc)
"""Plan time for these tests (the CLI runs in-process, so the clock is moved, not the fixture's dates):
30 days before it is 2026-09-08 12:00, between the fixture's checkpoint dates."""


@pytest.fixture
def seeded(emulator: Any, wandb_env: Any) -> Iterator[Any]:
    """An emulator seeded with FIXTURE, with WANDB_* pointing at it; the clock reads NOW (and ticks)."""
    handle = emulator(seed=FIXTURE)
    wandb_env(handle.url)
    with time_machine.travel(NOW, tick=True):
        yield handle


def _plan_json(tmp_path: Path, *specs: Path, extra: tuple[str, ...] = ()) -> tuple[Result, dict[str, Any]]:
    out = tmp_path / "plan.json"
    args = [a for spec in specs for a in ("-f", str(spec))]
    result = invoke("plan", *args, "-o", str(out), "--format", "json", "--detailed-exitcode", *extra)
    return result, json.loads(out.read_text()) if out.exists() else {}


def test_plan_checkpoint_retention_example_deletes_exactly_the_expected_files(seeded: Any,
                                                                              tmp_path: Path) -> None:
    """keep / keep_last 3 / larger_than / system files decide the candidates; apply deletes them in one
    deleteFiles per run and nothing else."""
    result, plan = _plan_json(tmp_path, EXAMPLES / "checkpoint-retention.yaml")
    assert result.exit_code == 2, result.output
    planned = {run["path"]: sorted(c["file"]["name"] for c in run["changes"] if c["kind"] == "file")
               for run in plan["runs"] if run["changes"]}  # a3 is listed only for its kept checkpoint
    assert planned == {
        # 6 epochs + model-best (kept by name) + small.ckpt (under 10MB) + output.log (system file):
        # the newest 3 of the 6 candidates survive.
        "acme/vision/a1": ["checkpoints/epoch-1.pt", "checkpoints/epoch-2.pt", "checkpoints/epoch-3.pt"],
        # checkpoints/z.pt (09-09) is younger than 30 days: not a candidate; of the 4 candidates the
        # newest 3 (y, x, step-9) survive.
        "acme/vision/a2": ["model.ckpt"],
    }
    assert all(c["rules"] == ["prune-checkpoints"] and c["op"] == "delete"
               for run in plan["runs"] for c in run["changes"])
    assert plan["summary"]["files_to_delete"] == 4
    assert plan["summary"]["bytes_to_free"] == 4 * 120 * MB
    assert plan["created_at"].startswith("2026-10-08T12:00")  # planned at the injected time

    seeded.reset_stats()
    applied = invoke("apply", str(tmp_path / "plan.json"), "--backup-dir", str(tmp_path / "backups"))
    assert applied.exit_code == 0, applied.output
    assert seeded.stats()["operations"].get("deleteFiles") == 2
    deletes = [m for m in seeded.mutations() if m["operation"] == "deleteFiles"]
    assert sorted(m["run"] for m in deletes) == ["acme/vision/a1", "acme/vision/a2"]

    again = invoke("plan", "-f", str(EXAMPLES / "checkpoint-retention.yaml"), "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes. Runs match the spec." in again.output


def test_plan_rename_metric_example_then_apply_converges(seeded: Any, tmp_path: Path) -> None:
    """Summary renames are planned per run with before/after and rule, applied, and planned away."""
    result, plan = _plan_json(tmp_path, EXAMPLES / "rename-metric.yaml")
    assert result.exit_code == 2, result.output
    b1 = next(r for r in plan["runs"] if r["path"] == "acme/vision/b1")
    renames = {(c["from_key"][0], c["key"][0]): c["after"] for c in b1["changes"] if c["op"] == "rename"}
    assert renames == {("val_acc", "val/accuracy"): 0.8, ("val_loss", "val/loss"): 0.5}
    assert plan["skipped_running"] == 1  # `live` is running and the rule does not name that state
    assert "acme/vision/live" not in {r["path"] for r in plan["runs"]}
    assert b1["fingerprint"].startswith("sha256:")
    applied = invoke("apply", str(tmp_path / "plan.json"))
    assert applied.exit_code == 0, applied.output
    again = invoke("plan", "-f", str(EXAMPLES / "rename-metric.yaml"), "--detailed-exitcode")
    assert again.exit_code == 0, again.output


def test_plan_target_restricts_to_the_named_runs(seeded: Any, tmp_path: Path) -> None:
    """--target plans only the named runs."""
    result, plan = _plan_json(tmp_path, EXAMPLES / "rename-metric.yaml", extra=("--target", "acme/vision/b1"))
    assert result.exit_code == 2, result.output
    assert [r["path"] for r in plan["runs"]] == ["acme/vision/b1"]


def test_plan_exit_1_on_plan_errors_and_no_plan_file(seeded: Any, tmp_path: Path) -> None:
    """A template naming a missing key and a config unset on a merging server are run errors: exit 1,
    the errors are printed, and -o is not written."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntarget: {entity: acme, project: vision}\nrules:\n"
                    "  - name: bad-template\n    match: {ids: [a1]}\n    set: {name: '{config.nope}'}\n"
                    "  - name: drop-debug\n    match: {ids: [a2]}\n    unset: {config: [lr]}\n")
    result, plan = _plan_json(tmp_path, spec)
    assert result.exit_code == 1
    assert plan == {}
    assert "config.nope" in result.output
    assert "11055" in result.output  # the merge behaviour behind the refusal is named


def test_plan_no_changes_exits_0(seeded: Any, tmp_path: Path) -> None:
    """A spec that already holds exits 0 with --detailed-exitcode and says so."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntarget: {entity: acme, project: vision}\nrules:\n"
                    "  - name: already\n    match: {all: true}\n"
                    "    set: {config: {model: resnet50}, group: g}\n")
    result = invoke("plan", "-f", str(spec), "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("No changes. Runs match the spec.")


def test_show_renders_a_saved_plan_as_markdown(seeded: Any, tmp_path: Path) -> None:
    """`show --format markdown` of a saved plan has the marker, the summary and each run."""
    result, _ = _plan_json(tmp_path, EXAMPLES / "rename-metric.yaml")
    assert result.exit_code == 2
    shown = invoke("show", str(tmp_path / "plan.json"), "--format", "markdown")
    assert shown.exit_code == 0
    assert shown.output.startswith("<!-- reconcile-plan -->")
    assert "acme/vision/b1" in shown.output
    assert "Plan: 4 runs to change" in shown.output


def test_plan_target_that_selects_no_run_is_an_error(seeded: Any) -> None:
    """A --target typo fails loudly instead of planning nothing."""
    result = invoke("plan", "-f", str(EXAMPLES / "rename-metric.yaml"), "--target", "acme/vision/nosuch")
    assert result.exit_code == 1
    assert "acme/vision/nosuch: no such run is selected" in result.output


TOP_SPEC = ("version: 1\ntarget: {entity: acme, project: ranked}\nrules:\n  - name: top\n"
            "    match: {all: true}\n    files:\n      delete: ['*.ckpt']\n"
            "      unless_top: {metric: acc, goal: maximize, count: 1}\n"
            "  - name: other-project\n    target: {project: vision}\n    match: {all: true}\n"
            "    add_tags: [seen]\n")


def _ranked_run(run_id: str, acc: float) -> dict[str, Any]:
    return {"entity": "acme", "project": "ranked", "id": run_id, "name": run_id, "state": "finished",
            "created_at": "2026-09-01T00:00:00Z", "summary": {"acc": acc}, "files": [_ckpt("m.ckpt", 2)]}


@pytest.fixture
def ranked(emulator: Any, wandb_env: Any) -> Any:
    """Three runs ranked by acc (r1 0.9, r3 0.7, r2 0.5) and the vision fixture, WANDB_* pointing there."""
    handle = emulator(seed={"runs": [_ranked_run("r1", 0.9), _ranked_run("r2", 0.5), _ranked_run("r3", 0.7),
                                     *FIXTURE["runs"]]})
    wandb_env(handle.url)
    return handle


def _changes(plan: dict[str, Any]) -> dict[str, list[Any]]:
    """Path -> changes of each run that has any (a run may be listed for its kept files only)."""
    return {r["path"]: r["changes"] for r in plan["runs"] if r["changes"]}


def test_plan_target_with_unless_top_changes_the_run_as_the_whole_plan_does(ranked: Any,
                                                                             tmp_path: Path) -> None:
    """--target limits which runs change, not the ranking: r3 (second of three, the top of the targeted
    runs alone) loses its checkpoint exactly as in the untargeted plan, and nothing else is planned;
    r1, the top run, plans nothing."""
    spec = tmp_path / "top.yaml"
    spec.write_text(TOP_SPEC)
    result, whole = _plan_json(tmp_path, spec)
    assert result.exit_code == 2, result.output
    assert [c["key"] for c in _changes(whole)["acme/ranked/r3"]] == [["m.ckpt"]]
    assert "acme/ranked/r1" not in _changes(whole)
    result, targeted = _plan_json(tmp_path, spec, extra=("--target", "acme/ranked/r3"))
    assert result.exit_code == 2, result.output
    assert _changes(targeted) == {"acme/ranked/r3": _changes(whole)["acme/ranked/r3"]}
    result, top = _plan_json(tmp_path, spec, extra=("--target", "acme/ranked/r1"))
    assert result.exit_code == 0, result.output
    assert _changes(top) == {}


def test_plan_target_a_project_plans_only_that_project(ranked: Any, tmp_path: Path) -> None:
    """--target ENTITY/PROJECT plans every run of that project the rules select, and no other project's;
    a project no rule targets is an error naming the spec's projects."""
    spec = tmp_path / "top.yaml"
    spec.write_text(TOP_SPEC)
    result, plan = _plan_json(tmp_path, spec, extra=("--target", "acme/ranked"))
    assert result.exit_code == 2, result.output
    assert sorted(_changes(plan)) == ["acme/ranked/r2", "acme/ranked/r3"]
    result, plan = _plan_json(tmp_path, spec, extra=("--target", "acme/vision"))
    assert result.exit_code == 2, result.output
    assert {path.rsplit("/", 1)[0] for path in _changes(plan)} == {"acme/vision"}
    result = invoke("plan", "-f", str(spec), "--target", "acme/elsewhere")
    assert result.exit_code == 1
    assert "--target acme/elsewhere: no rule of the spec targets that project" in result.output


def test_plan_target_warns_only_of_rules_inside_it(ranked: Any, tmp_path: Path) -> None:
    """--target acme/vision: rule 'top' (acme/ranked, outside the target, not read) gets no "globs match
    no file" warning; a files rule of the targeted project whose globs match nothing still gets one."""
    spec = tmp_path / "top.yaml"
    spec.write_text(TOP_SPEC + "  - name: nothing\n    target: {project: vision}\n    match: {all: true}\n"
                    "    files: {delete: ['*.nomatch']}\n")
    result = invoke("plan", "-f", str(spec), "--target", "acme/vision")
    assert result.exit_code == 0, result.output
    assert "rule 'top'" not in result.output, result.output
    assert "rule 'nothing': files.delete globs ['*.nomatch'] match no file" in result.output, result.output


@pytest.mark.parametrize("other", ["{state: [finished]}", "{all: true}"])
def test_plan_filter_the_server_refuses_names_the_rule_file_and_line(seeded: Any, tmp_path: Path,
                                                                     other: str) -> None:
    """A filter that passes validate but the server refuses is exit 1, no traceback, one line naming the
    rule and the file and line of its filters, with what the server said; the rule it accepts is not
    blamed, and no plan file is written. The same when the other rule reads every run (`all: true`:
    the listing sends no filter, so the rule's own is asked of the server)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntarget: {entity: acme, project: vision}\nrules:\n"
                    f"  - name: fine\n    match: {other}\n    add_tags: [x]\n"
                    '  - name: picky\n    match:\n      filters: {"config.a..b": 1}\n    add_tags: [y]\n')
    # reconcile can evaluate it (a key may contain a dot), so validate passes; the server refuses it
    assert invoke("validate", str(spec)).exit_code == 0
    result, plan = _plan_json(tmp_path, spec)
    assert result.exit_code == 1, result.output
    assert plan == {}
    assert "Traceback" not in result.output
    line = next(line for line in result.output.splitlines() if "refused" in line)
    prefix = (f"Error: {spec}:9:7: rule 'picky': W&B refused its match.filters while listing runs of "
              "acme/vision: ")
    assert line.startswith(prefix), result.output
    assert "path segments" in line[len(prefix):]  # the server's own words follow
    assert "'fine'" not in result.output


def test_export_ids_not_found_is_an_error(seeded: Any) -> None:
    """--ids naming a run that does not exist fails instead of writing an empty spec."""
    result = invoke("export", "acme/vision", "--ids", "a1,nosuch")
    assert result.exit_code == 1
    assert "nosuch" in result.output and "a1" not in result.output.split("--ids", 1)[1]
