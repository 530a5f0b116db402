"""Tests of the markdown renderer (pull-request comments, ``$GITHUB_STEP_SUMMARY``).

Golden file: ``tests/testdata/golden/plan.md`` renders ``representative_plan()`` from
``test_planfile``. Regenerate it after an intended change with
``RECONCILE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_render_markdown.py``
and review the diff.
"""

from __future__ import annotations

import io

from reconcile.models import Change, ChangeKind, ChangeOp, KeepReason, KeptFile, LiveFile, Plan, RunPlan
from reconcile.render import render
from reconcile.render.markdown import COLLAPSE_OVER, MARKER, MAX_CHARS, MAX_ROWS_PER_RUN, escape
from tests.unit.test_planfile import NOW, check_golden, representative_plan


def _markdown(plan: Plan) -> str:
    out = io.StringIO()
    render(plan, out, "markdown")
    return out.getvalue()


def _run(run_id: str, n_changes: int, *, value: str = "v") -> RunPlan:
    changes = tuple(Change(ChangeKind.CONFIG, ChangeOp.SET, (f"key{i}",), f"{value}-old", f"{value}-{i}",
                           ("rule-a",)) for i in range(n_changes))
    return RunPlan(entity="acme", project="vision", run_id=run_id, storage_id="s", name=f"run {run_id}",
                   fingerprint="sha256:0", fingerprint_fields=(), changes=changes)


def _plan(*runs: RunPlan, **kwargs: object) -> Plan:
    return Plan(spec_digest="sha256:d", created_at=NOW, base_url="http://127.0.0.1:8080", runs=runs,
                **kwargs)  # type: ignore[arg-type]


def test_render_markdown_matches_golden() -> None:
    """The representative plan renders exactly as the reviewed golden file."""
    check_golden("plan.md", _markdown(representative_plan()))


def test_render_markdown_starts_with_marker_and_summary() -> None:
    """The hidden marker comes first and the summary line right after it."""
    lines = _markdown(representative_plan()).splitlines()
    assert lines[0] == MARKER
    assert lines[2] == "**Plan: 2 runs to change (18 attribute changes), 2 files to delete (114.44 MiB).**"


def test_render_markdown_lists_errors_and_skipped() -> None:
    """Per-run and plan-wide errors and the skipped-runs note appear before any run table."""
    text = _markdown(representative_plan())
    first_table = text.index("| Change | Before | After | Rule |")
    for needle in ("acme/vision/def456: rules 'rule-a' and 'rule-c'", "limits.max\\_file\\_deletions is 1",
                   "3 running or pending runs were left alone"):
        assert -1 < text.index(needle) < first_table


def test_render_markdown_escapes_cell_values() -> None:
    """Pipes, backticks, angle brackets and newlines in values cannot break the table or inject HTML."""
    assert escape("a|b") == "a\\|b"
    assert escape("`x`") == "\\`x\\`"
    assert escape("<b>&") == "&lt;b&gt;&amp;"
    assert escape("one\ntwo") == "one<br>two"
    row = next(line for line in _markdown(representative_plan()).splitlines() if line.startswith("| + notes"))
    assert row.count(" | ") == 3  # exactly four cells: the pipe in the value is escaped
    assert "<b>" not in row
    assert "\n" not in row


def test_render_markdown_collapses_long_runs() -> None:
    """A run with more than COLLAPSE_OVER changes is inside <details>; a short one is a heading."""
    text = _markdown(_plan(_run("long", COLLAPSE_OVER + 1), _run("short", COLLAPSE_OVER)))
    assert f'<details><summary>acme/vision/long "run long" ({COLLAPSE_OVER + 1} changes)</summary>' in text
    assert '#### acme/vision/short "run short"' in text
    assert text.count("<details>") == 1
    assert text.count("</details>") == 1


def test_render_markdown_caps_rows_per_run() -> None:
    """A run with more changes than MAX_ROWS_PER_RUN shows that many rows and counts the rest."""
    text = _markdown(_plan(_run("huge", MAX_ROWS_PER_RUN + 25)))
    assert text.count("| ~ config.key") == MAX_ROWS_PER_RUN
    assert "25 more changes of this run" in text


def _kept_run(run_id: str, n_kept: int) -> RunPlan:
    why = (KeepReason("r", "keep_last", "1 of 9"),)
    kept = tuple(KeptFile(LiveFile(f"f{i}", f"ckpt-{i}.pt", 10, NOW), why) for i in range(n_kept))
    return RunPlan(entity="acme", project="vision", run_id=run_id, storage_id="s", name=run_id,
                   fingerprint="sha256:0", fingerprint_fields=(), changes=(), kept=kept)


def _kept_markdown(plan: Plan) -> str:
    out = io.StringIO()
    render(plan, out, "markdown", show_kept=True)
    return out.getvalue()


def test_render_markdown_counts_one_hidden_kept_file_and_one_hidden_run_in_the_singular() -> None:
    """One kept file over the row cap reads "1 more kept candidate" (files and artifact versions share
    the table); one run over the size limit reads "1 more run with kept candidates is not shown"."""
    text = _kept_markdown(_plan(_kept_run("r", MAX_ROWS_PER_RUN + 1)))
    assert "| … 1 more kept candidate of this run:" in text
    many = [_kept_run(f"r{i:05d}", 3) for i in range(2000)]
    shown = _kept_markdown(_plan(*many)).count("<details><summary>")
    text = _kept_markdown(_plan(*many[:shown + 1]))
    assert "**1 more run with kept candidates is not shown**" in text, text[-300:]


def test_render_markdown_truncates_to_comment_limit() -> None:
    """5,000 runs stay under 65,536 characters, keep the summary first and count what was left out."""
    runs = tuple(_run(f"r{i:05d}", 3, value="x" * 40) for i in range(5000))
    plan = _plan(*runs)
    text = _markdown(plan)
    assert len(text) <= MAX_CHARS
    lines = text.splitlines()
    assert lines[0] == MARKER
    assert lines[2] == "**Plan: 5000 runs to change (15000 attribute changes), 0 files to delete (0 bytes).**"
    shown = text.count("#### acme/vision/")
    assert 0 < shown < 5000
    assert lines[-1].startswith(f"**{5000 - shown} more runs ({(5000 - shown) * 3} changes) are not shown**")
    assert "reconcile show plan.json" in lines[-1]


def test_render_markdown_truncates_huge_error_lists() -> None:
    """Thousands of errors are cut to a budget with a count, still under the limit."""
    runs = tuple(RunPlan(entity="acme", project="vision", run_id=f"r{i}", storage_id="s", name=None,
                         fingerprint="sha256:0", fingerprint_fields=(), changes=(), errors=("e" * 200,))
                 for i in range(5000))
    text = _markdown(_plan(*runs))
    assert len(text) <= MAX_CHARS
    assert "more errors: see `reconcile show plan.json`" in text
    assert "No changes can be planned until the errors are fixed." in text.splitlines()[2]


def test_render_markdown_no_changes() -> None:
    """A plan without changes is the marker and the no-changes line, with no table."""
    text = _markdown(_plan())
    assert text.splitlines()[:3] == [MARKER, "", "**No changes. Runs match the spec.**"]
    assert "| Change |" not in text
