"""The CLI's contract at its edges: exit codes of usage errors, hostile environments, pipes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconcile.cli import main
from reconcile.planfile import write_plan
from tests.unit.test_planfile import representative_plan

VALID_SPEC = ("version: 1\ntarget: {entity: acme, project: vision}\nrules:\n"
              "  - name: r\n    match: {all: true}\n    set: {notes: x}\n")


@pytest.mark.parametrize("args", [
    ["plan", "--detailed-exitcode"],  # -f missing
    ["plan", "-f", "x.yaml", "--detailed-exitcod"],  # a typo'd flag
    ["validate"],
])
def test_cli_usage_errors_exit_1_never_2(args: list[str]) -> None:
    """Invalid input exits 1: 2 means "has changes" to a CI job using --detailed-exitcode."""
    assert CliRunner().invoke(main, args).exit_code == 1


@pytest.mark.integration
@pytest.mark.parametrize(("option", "bad", "good"), [
    ("--format", "yaml", "json"),
    ("--parallelism", "0", "1"),
    ("--parallelism", "65", "64"),
])
def test_cli_bad_option_value_is_refused_on_a_plan_that_works(
        option: str, bad: str, good: str, emulator: Any, wandb_env: Any, tmp_path: Path) -> None:
    """A valid spec against a live server plans fine (exit 2: changes) with a good value; the bad value
    alone makes it exit 1 with click's message naming the option, before anything is read."""
    emu = emulator(seed={"runs": [{"entity": "acme", "project": "vision", "id": "r1", "name": "r1",
                                   "state": "finished", "created_at": "2026-01-01T00:00:00Z"}]})
    wandb_env(emu.url)
    spec = tmp_path / "s.yaml"
    spec.write_text(VALID_SPEC)
    base = ["plan", "-f", str(spec), "--detailed-exitcode", option]
    assert CliRunner().invoke(main, [*base, good]).exit_code == 2
    emu.reset_stats()
    result = CliRunner().invoke(main, [*base, bad])
    assert result.exit_code == 1, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert emu.stats()["requests"] == 0


@pytest.mark.parametrize("url", ["not-a-url", "", "ftp://host"])
def test_cli_malformed_base_url_is_a_clear_error(url: str, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A bad WANDB_BASE_URL is named with what to set, exit 1, not an unexpected failure."""
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\ntarget: {entity: e, project: p}\nrules:\n"
                    "  - name: r\n    match: {all: true}\n    set: {notes: x}\n")
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "a" * 40)
    result = CliRunner().invoke(main, ["plan", "-f", str(spec)])
    assert result.exit_code == 1
    assert "is not an http(s) URL" in result.output


def test_cli_apply_of_a_spec_points_to_apply_f(tmp_path: Path) -> None:
    """`apply spec.yaml` (forgot -f) says to use -f, and never suggests writing over the spec."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\n")
    result = CliRunner().invoke(main, ["apply", str(spec)])
    assert result.exit_code == 1
    assert f"reconcile apply -f {spec}" in result.output
    assert f"-o {spec}" not in result.output


def test_cli_closed_pipe_is_not_a_crash(tmp_path: Path) -> None:
    """`reconcile show plan.json --format json | head -1`: no crash report, no exit 3."""
    plan = representative_plan()
    plan = dataclasses.replace(plan, runs=plan.runs * 3000)
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", "show", str(path), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "unexpected failure" not in stderr
