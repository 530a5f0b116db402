"""Tests of the Terraform-like text renderer.

Golden files: ``tests/testdata/golden/plan.txt`` (no color) and ``plan.color.txt`` (ANSI
colors) render ``representative_plan()`` from ``test_planfile``. Regenerate them after an
intended change with ``RECONCILE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_render_text.py``
and review the diff.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator

import click

from reconcile.models import Change, ChangeKind, ChangeOp, Plan, RunPlan
from reconcile.render import render
from reconcile.render.text import VALUE_WIDTH
from tests.unit.test_planfile import NOW, check_golden, representative_plan

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _text(plan: Plan, *, color: bool = False) -> str:
    out = io.StringIO()
    render(plan, out, "text", color=color)
    return out.getvalue()


def _run(*changes: Change, name: str | None = "n", errors: tuple[str, ...] = ()) -> RunPlan:
    return RunPlan(entity="acme", project="vision", run_id="r1", storage_id="s1", name=name,
                   fingerprint="sha256:0", fingerprint_fields=(), changes=changes, errors=errors)


def _plan(*runs: RunPlan, **kwargs: object) -> Plan:
    return Plan(spec_digest="sha256:d", created_at=NOW, base_url="http://127.0.0.1:8080", runs=runs,
                **kwargs)  # type: ignore[arg-type]


def _set(key: str, before: object, after: object, **kwargs: object) -> Change:
    return Change(ChangeKind.CONFIG, ChangeOp.SET, tuple(key.split(".")), before, after, ("r",),
                  **kwargs)  # type: ignore[arg-type]


def test_render_text_matches_golden() -> None:
    """The representative plan renders exactly as the reviewed golden file."""
    check_golden("plan.txt", _text(representative_plan()))


def test_render_text_color_matches_golden() -> None:
    """With color the output is the golden colored file, and equals the plain one without ANSI codes."""
    colored = _text(representative_plan(), color=True)
    check_golden("plan.color.txt", colored)
    assert ANSI.sub("", colored) == _text(representative_plan())
    assert click.style("+", fg="green", bold=True) in colored
    assert click.style("~", fg="yellow", bold=True) in colored
    assert click.style("-", fg="red", bold=True) in colored


def test_render_text_no_color_has_no_escape_codes() -> None:
    """Without color there is no ANSI escape in the output."""
    assert "\x1b" not in _text(representative_plan())


def test_render_text_last_line_is_summary() -> None:
    """The last line counts runs, attribute changes, files and bytes from the plan's properties."""
    plan = representative_plan()
    last = _text(plan).splitlines()[-1]
    assert last == "Plan: 2 runs to change (18 attribute changes), 2 files to delete (114.44 MiB)."
    assert str(len(plan.changed_runs)) in last
    assert str(plan.attribute_changes) in last


def test_render_text_run_block_header_and_lines() -> None:
    """A run block has the Terraform-style header and one line per change with its rules."""
    text = _text(representative_plan())
    assert '  # acme/vision/abc123 "old-name" will be updated in-place\n' in text
    assert "  # acme/vision/def456 will be updated in-place\n" in text
    assert re.search(r"\n      ~ config\.optimizer\.lr += 0\.01 -> 0\.1  # rule-a\n", text)
    assert '+ tag "baseline"  # rule-a' in text
    assert '- tag "wip"  # cleanup' in text
    assert '- file "checkpoints/ckpt-001.pt" (114.44 MiB, 320 days old)  # prune-checkpoints' in text
    assert '- file "media/images/sample 1.png" (2 KiB, less than a day old)  # prune-media' in text
    assert "# rule-a, rule-b" in text


def test_render_text_symbols_per_op() -> None:
    """Created keys get +, unsets -, renames ~ with the moved value, updates before -> after."""
    plan = _plan(_run(
        _set("dataset", None, "cifar10", created=True),
        Change(ChangeKind.SUMMARY, ChangeOp.UNSET, ("tmp",), 3, None, ("r",)),
        Change(ChangeKind.CONFIG, ChangeOp.RENAME, ("learning_rate",), 0.01, 0.01, ("r",), from_key=("lr",)),
        Change(ChangeKind.NAME, ChangeOp.SET, (), "old", "new", ("r",)),
        Change(ChangeKind.NOTES, ChangeOp.SET, (), None, "hi", ("r",)),
    ))
    lines = [line.strip() for line in _text(plan).splitlines()]
    assert any(re.fullmatch(r'\+ config\.dataset +=\s"cifar10"  # r', line) for line in lines)
    assert any(re.fullmatch(r"- summary\.tmp +=\s3 -> null  # r", line) for line in lines)
    assert "~ config: lr => learning_rate = 0.01  # r" in lines
    assert any(re.fullmatch(r'~ name +=\s"old" -> "new"  # r', line) for line in lines)
    assert any(re.fullmatch(r'\+ notes +=\s"hi"  # r', line) for line in lines)


def test_render_text_aligns_equals_within_block() -> None:
    """Every '=' of one run block is in the same column."""
    plan = _plan(_run(_set("a", 1, 2), _set("much.longer.key", 1, 2), _set("bb", None, 3, created=True)))
    columns = {line.index(" = ") for line in _text(plan).splitlines() if " = " in line}
    assert len(columns) == 1


def test_render_text_truncates_long_values() -> None:
    """A value longer than the width is cut with an ellipsis."""
    plan = _plan(_run(_set("blob", None, "y" * 500, created=True)))
    line = next(line for line in _text(plan).splitlines() if "config.blob" in line)
    assert "…" in line
    assert "y" * VALUE_WIDTH not in line
    assert len(line) < 200


def test_render_text_no_changes() -> None:
    """A plan without changes says so in its only line."""
    assert _text(_plan()) == "No changes. Runs match the spec.\n"


def test_render_text_errors_without_changes_never_claim_the_runs_match() -> None:
    """Errors (per run and plan-wide) are shown, and the last line does not say the runs match."""
    plan = _plan(_run(errors=("boom",)), errors=("limit",))
    lines = _text(plan).splitlines()
    assert "Error: acme/vision/r1: boom" in lines
    assert "Error: limit" in lines
    assert lines[-1] == "No changes can be planned until the errors are fixed."


def test_render_text_skipped_running_note() -> None:
    """Skipped running runs are counted in a note, singular or plural."""
    one = _text(_plan(skipped_running=1))
    many = _text(dataclasses.replace(representative_plan(), skipped_running=7))
    assert "1 running or pending run was left alone" in one
    assert "7 running or pending runs were left alone" in many
    assert "wandb" not in one.splitlines()[-1]


def test_render_text_file_note_from_detail_or_file() -> None:
    """A file line shows the planner's detail when set, else size and age from the file, never both."""
    text = _text(representative_plan())
    assert text.count("114.44 MiB, 320 days old") == 1
    assert '+ file "restored.pt" (re-upload from backups/acme/vision/def456/restored.pt)  # undo' in text
    assert '(2 KiB, less than a day old)' in text


def test_render_text_writes_as_it_goes() -> None:
    """A big plan's text is written in pieces while its runs are still being read, never built whole
    first."""
    out = io.StringIO()
    written_at_read: list[int] = []

    class Runs(tuple[RunPlan, ...]):
        def __iter__(self) -> Iterator[RunPlan]:
            for run in super().__iter__():
                written_at_read.append(out.tell())
                yield run

    runs = Runs(dataclasses.replace(_run(_set("lr", 0.1, 0.2), _set("bs", 1, 2)), run_id=f"r{i:04d}")
                for i in range(1000))
    plan = Plan(spec_digest="sha256:d", created_at=NOW, base_url="http://127.0.0.1:8080", runs=runs)
    written_at_read.clear()  # the Plan counted its runs when it was made
    render(plan, out, "text")
    assert len(written_at_read) == 1000
    assert written_at_read[500] > 0  # half the runs read: some of the text is out already
