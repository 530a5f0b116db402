"""Tests of ``reconcile show PLAN.json``: render a saved plan, refuse a bad file with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconcile.cli import main
from reconcile.planfile import write_plan
from tests.unit.test_planfile import GOLDEN, representative_plan


def _show(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["show", *args])
    return result.exit_code, result.stdout, result.stderr


def test_show_renders_saved_plan_in_every_format(tmp_path: Path) -> None:
    """A saved plan renders as the golden text and markdown, and as the saved JSON."""
    path = tmp_path / "plan.json"
    write_plan(representative_plan(), path)
    code, out, _ = _show(str(path))
    assert code == 0
    assert out == (GOLDEN / "plan.txt").read_text(encoding="utf-8")
    code, out, _ = _show(str(path), "--format", "markdown")
    assert code == 0
    assert out == (GOLDEN / "plan.md").read_text(encoding="utf-8")
    code, out, _ = _show(str(path), "--format", "json")
    assert code == 0
    assert out == path.read_text(encoding="utf-8")


def test_show_missing_file_exits_1_naming_it(tmp_path: Path) -> None:
    """A missing plan file exits 1 with a message naming the file, no traceback."""
    code, out, err = _show(str(tmp_path / "missing.json"))
    assert code == 1
    assert out == ""
    assert "missing.json does not exist" in err
    assert "Traceback" not in err


def test_show_corrupt_file_exits_1_naming_it(tmp_path: Path) -> None:
    """A corrupt plan file (bad JSON, or a field missing) exits 1 naming the file."""
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = _show(str(broken))
    assert code == 1
    assert "broken.json is not valid JSON" in err
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"format_version": 1}))
    code, _, err = _show(str(incomplete))
    assert code == 1
    assert "incomplete.json is not a valid reconcile plan" in err


def test_show_other_format_version_exits_1(tmp_path: Path) -> None:
    """A plan from another format version exits 1 and says to make a new plan."""
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"format_version": 99}))
    code, _, err = _show(str(path))
    assert code == 1
    assert "future.json" in err
    assert "reconcile plan -o" in err
