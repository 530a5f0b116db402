"""The first ten minutes and the PR check: the GitHub workflow's own commands, export's
round trip, the pre-commit hook and `make demo`'s script, against the emulator."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration

WORKFLOW = REPO / "examples" / "github" / "reconcile.yml"
DEMO = REPO / "examples" / "demo"
BIN = Path(sys.executable).parent

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
"""The clock the CLI reads in these tests. The demo fixture's runs date from June to October 2026;
30 days before NOW is 2026-10-02 12:00, so `media-of-weak-runs` (older_than: 30d) finds prediction
images on both sides of its cutoff."""

CLOCK_SHIM = f"""#!{sys.executable}
import sys
from datetime import datetime

import time_machine

from reconcile.cli import main

with time_machine.travel(datetime.fromisoformat({NOW.isoformat()!r}), tick=True):
    main()
"""


def _clock_shim(directory: Path) -> Path:
    """A directory holding a `reconcile` command that runs the CLI with its clock at NOW (and ticking):
    put first on PATH, the workflow's scripts and the hook run it instead of the real entry point."""
    directory.mkdir()
    command = directory / "reconcile"
    command.write_text(CLOCK_SHIM)
    command.chmod(0o755)
    return directory


def _steps(job: str) -> dict[str, str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return {s["name"]: s["run"] for s in workflow["jobs"][job]["steps"] if "run" in s}


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def ci_env(emulator: Any, wandb_env: Any, tmp_path: Path) -> dict[str, str]:
    """The environment a CI job would have, pointed at a demo-seeded emulator."""
    handle = emulator(seed=DEMO / "fixture.yaml")
    env = wandb_env(handle.url)
    env["PATH"] = os.pathsep.join([str(_clock_shim(tmp_path / "clock")), str(BIN), env["PATH"]])
    (tmp_path / "specs").symlink_to(DEMO / "spec")
    env["SPEC_DIR"] = "specs"
    env["GITHUB_OUTPUT"] = str(tmp_path / "github_output")
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "step_summary.md")
    return env


def test_workflow_is_valid_github_actions() -> None:
    """The example workflow validates against the GitHub Actions workflow schema."""
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_shell_steps_pass_shellcheck(tmp_path: Path) -> None:
    """Every `run:` script of the workflow passes shellcheck as the bash GitHub runs it with, each
    ${{ expression }} standing in as a plain word (as actionlint does)."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    scripts = [(job, step["name"], step["run"]) for job, spec in workflow["jobs"].items()
               for step in spec["steps"] if "run" in step]
    assert len(scripts) >= 4
    for job, name, script in scripts:
        slug = re.sub(r"\W+", "-", name)
        path = tmp_path / f"{job}-{slug}.sh"
        path.write_text(re.sub(r"\$\{\{.*?\}\}", lambda m: "_" * len(m.group()), script))
        result = subprocess.run([str(BIN / "shellcheck"), "--shell=bash", "--severity=style", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{job} / {name}:\n{result.stdout}{result.stderr}"


def test_workflow_commands_plan_then_apply_then_no_changes(ci_env: dict[str, str], tmp_path: Path) -> None:
    """The workflow's validate/plan steps report changes (exit code 2 recorded), its apply step applies the
    saved plan, and planning again reports no changes."""
    plan_steps = _steps("plan")
    validate = _bash(plan_steps["Validate"], tmp_path, ci_env)
    assert validate.returncode == 0, validate.stderr
    lines = validate.stdout.strip().splitlines()
    assert sorted(lines) == lines and len(lines) == len(list((DEMO / "spec").glob("*.yaml")))
    assert all(re.fullmatch(r"specs/\S+\.yaml: valid \(\d+ rules?\)", line) for line in lines), lines

    planned = _bash(plan_steps["Plan"], tmp_path, ci_env)
    assert planned.returncode == 0, planned.stderr
    assert "exitcode=2" in Path(ci_env["GITHUB_OUTPUT"]).read_text()
    markdown = (tmp_path / "plan.md").read_text()
    assert markdown.startswith("<!-- reconcile-plan -->")
    assert re.search(r"Plan: \d+ runs to change \(\d+ attribute changes\), \d+ files to delete", markdown)
    assert len(markdown) <= 65_536
    assert Path(ci_env["GITHUB_STEP_SUMMARY"]).read_text() == markdown
    _assert_media_retention_reads_the_clock(json.loads((tmp_path / "plan.json").read_text()))

    applied = _bash(_steps("apply")["Apply exactly the reviewed plan"], tmp_path, ci_env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete:" in applied.stdout
    assert (tmp_path / "undo.json").exists()

    Path(ci_env["GITHUB_OUTPUT"]).write_text("")
    again = _bash(plan_steps["Plan"], tmp_path, ci_env)
    assert again.returncode == 0, again.stderr
    assert "exitcode=0" in Path(ci_env["GITHUB_OUTPUT"]).read_text()
    assert "No changes" in (tmp_path / "plan.md").read_text()


def _time(text: str) -> datetime:
    """An ISO 8601 time as the plan and the fixture write it (``Z`` for UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _assert_media_retention_reads_the_clock(plan: dict[str, Any]) -> None:
    """The saved plan was made at NOW: `media-of-weak-runs` deletes only prediction images older than
    30 days before NOW (each said to be as many days old as it is at NOW) and keeps the newer ones."""
    assert abs(_time(plan["created_at"]) - NOW) < timedelta(minutes=10)
    cutoff = NOW - timedelta(days=30)
    deleted = {}
    for run in plan["runs"]:
        for change in run["changes"]:
            if change["kind"] == "file" and "media-of-weak-runs" in change["rules"]:
                updated = _time(change["file"]["updated_at"])
                deleted[(run["path"], change["file"]["name"])] = updated
                assert change["detail"].endswith(f", {(NOW - updated).days} days old"), change
    assert deleted and all(updated < cutoff for updated in deleted.values())
    fixture = yaml.safe_load((DEMO / "fixture.yaml").read_text())["runs"]
    recent = {(f"{r['entity']}/{r['project']}/{r['id']}", f["name"])
              for r in fixture if r["state"] == "finished" for f in r.get("files", [])
              if f["name"].startswith("media/images/") and _time(f["updated_at"]) >= cutoff}
    assert recent and not recent & deleted.keys()
    kept_for_age = {(run["path"], kept["name"]) for run in plan["runs"] for kept in run["kept"]
                    if any(r["selector"] == "older_than" for r in kept["reasons"])}
    assert kept_for_age == recent


def test_export_then_plan_gives_no_changes(ci_env: dict[str, str], tmp_path: Path) -> None:
    """A spec exported from the demo fixture validates and plans to no changes at once."""
    for project in ("vision", "nlp"):
        out = tmp_path / f"{project}.yaml"
        exported = _bash(f"reconcile export acme/{project} -o {out}", tmp_path, ci_env)
        assert exported.returncode == 0, exported.stderr
        rules = yaml.safe_load(out.read_text())["rules"]
        assert len(rules) == (30 if project == "vision" else 20)
        checked = _bash(f"reconcile validate {out} && reconcile plan -f {out} --detailed-exitcode",
                        tmp_path, ci_env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "No changes. Runs match the spec." in checked.stdout


def test_export_ids_pins_only_those_runs(ci_env: dict[str, str], tmp_path: Path) -> None:
    """--ids limits the export to the named runs."""
    fixture = yaml.safe_load((DEMO / "fixture.yaml").read_text())["runs"]
    ids = [r["id"] for r in fixture if r["project"] == "vision"][:2]
    exported = _bash(f"reconcile export acme/vision --ids {','.join(ids)}", tmp_path, ci_env)
    assert exported.returncode == 0, exported.stderr
    spec = yaml.safe_load(exported.stdout)
    assert sorted(r["match"]["ids"][0] for r in spec["rules"]) == sorted(ids)


def test_pre_commit_hook_entry_validates_specs(tmp_path: Path) -> None:
    """The hook's entry, run the way pre-commit runs it (entry + matching file names), passes good specs
    and fails a typo with its line."""
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    pattern = re.compile(hook["files"])
    good = sorted(str(p) for p in (DEMO / "spec").glob("*.yaml") if pattern.search(p.name))
    assert good
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    ok = subprocess.run([*hook["entry"].split(), *good], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "typo.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    match: {all: true}\n    sett: {notes: hi}\n")
    failed = subprocess.run([*hook["entry"].split(), str(bad)], capture_output=True, text=True, env=env,
                            timeout=120)
    assert failed.returncode == 1
    assert f"{bad}:5:" in failed.stderr


@pytest.mark.slow
def test_make_demo_script_plans_applies_and_converges(tmp_path: Path) -> None:
    """The demo script prints a plan, applies it and ends with no changes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["RECONCILE_DEMO_OUT"] = str(tmp_path / "demo-out")
    result = subprocess.run([sys.executable, str(DEMO / "run_demo.py")], capture_output=True, text=True,
                            env=env, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"Plan: \d+ runs to change", result.stdout)
    assert "Apply complete:" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("Demo done.")
    assert "No changes. Runs match the spec." in result.stdout
