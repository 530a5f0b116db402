"""How the CLI talks to a person: colors only where wanted (NO_COLOR, --no-color), flags only where
they mean something, help for every option, and counts in correct English."""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from reconcile.apply.executor import ApplyResult
from reconcile.cli import main
from reconcile.log import configure_logging
from reconcile.planfile import write_plan
from reconcile.render.common import summary_line
from tests.terminal import run_on_terminal
from tests.unit.test_planfile import representative_plan

ESC = "\x1b["


def _saved_plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    write_plan(representative_plan(), path)
    return path


def test_show_on_a_terminal_is_colored_unless_no_color_is_set(tmp_path: Path) -> None:
    """On a terminal the plan is colored; NO_COLOR (any non-empty value) or --no-color turns it off."""
    plan = str(_saved_plan(tmp_path))
    code, colored = run_on_terminal(["show", plan])
    assert code == 0, colored
    assert ESC in colored
    code, plain = run_on_terminal(["show", plan], env={"NO_COLOR": "1"})
    assert code == 0, plain
    assert ESC not in plain
    assert "will be updated in-place" in plain
    code, flagged = run_on_terminal(["show", plan, "--no-color"])
    assert code == 0 and ESC not in flagged


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "colored"), [("", True), ("1", False)])
def test_log_lines_on_a_terminal_honour_no_color(no_color: str, colored: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Console log lines on a terminal are colored, unless NO_COLOR is set (to anything but "")."""
    stderr = _Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setenv("NO_COLOR", no_color)
    configure_logging(log_format="console", verbosity=1)
    structlog.get_logger().warning("retrying", attempt=2)
    assert "retrying" in stderr.getvalue()
    assert (ESC in stderr.getvalue()) is colored


@pytest.mark.parametrize("command", ["validate", "show", "emulator", "export"])
def test_parallelism_is_only_offered_where_it_means_something(command: str) -> None:
    """validate, show, emulator and export do not take --parallelism; plan and apply do."""
    assert "--parallelism" not in CliRunner().invoke(main, [command, "--help"]).output
    for meaningful in ("plan", "apply"):
        assert "--parallelism" in CliRunner().invoke(main, [meaningful, "--help"]).output


@pytest.mark.parametrize("command", ["plan", "show"])
def test_format_option_has_help_text(command: str) -> None:
    """--format says what each format is for."""
    text = CliRunner().invoke(main, [command, "--help"]).output
    options = " ".join(text.partition("Options:")[2].split())
    described = options.partition("--format")[2].partition(" --")[0]
    assert "markdown: for a pull-request comment" in described, options


def test_counts_of_one_are_singular() -> None:
    """"1 run", "1 file", "1 attribute change" — never "1 runs"."""
    plan = representative_plan()
    one = dataclasses.replace(plan, runs=plan.runs[:1], errors=())
    line = summary_line(one)
    assert line.startswith("Plan: 1 run to change ("), line
    result = ApplyResult(runs_changed=1, files_deleted=1, bytes_freed=10, files_restored=1)
    assert result.summary_line == ("Apply complete: 1 run changed, 1 file deleted (10 bytes freed), 0 stale, "
                                   "0 failed, 1 file restored.")
    many = ApplyResult(runs_changed=2, files_deleted=0)
    assert many.summary_line.startswith("Apply complete: 2 runs changed, 0 files deleted")
