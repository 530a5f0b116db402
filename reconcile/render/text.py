"""The text renderer: Terraform-like blocks, one per changed run, and the summary line last.

    # acme/vision/abc123 "old-name" will be updated in-place
        ~ config.optimizer.lr = 0.01 -> 0.1  # rule-a
        - file "ckpt-001.pt" (114.44 MiB, 320 days old)  # prune

With ``--show-kept`` a second section lists, per run, each retention candidate that survives (its
files, then the artifact versions it logged):

    # acme/vision/abc123 "old-name"
        = file "ckpt-009.pt" (114.44 MiB, 2 days old)  # prune: keep_last 1 of 3
        = artifact version "ckpt-abc123:v7" (12.3 MiB, aliases: best)  # ckpts: alias best

The last line is a public interface (``Plan: R runs to change ...`` or ``No changes. ...``);
colors (green ``+``, yellow ``~``, red ``-``) only when asked for. Run data is shown through
``printable``: a control or bidi character in a name or value is written as an escape, never raw.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

import click
from humanfriendly.text import pluralize

from reconcile.models import Change, Plan, RunPlan
from reconcile.render.common import (
    all_errors,
    deletion_note,
    file_note,
    has_value,
    is_noted,
    kept_label,
    kept_note,
    kept_of,
    kept_reasons,
    label,
    printable,
    run_title,
    run_verb,
    skipped_note,
    summary_line,
    symbol,
    value_part,
)

VALUE_WIDTH = 60
"""Longest rendering of one value before it is cut with an ellipsis."""

ALIGN_MAX = 48
"""Labels longer than this do not push the ``=`` of the whole block further right."""

_COLORS = {"+": "green", "~": "yellow", "-": "red"}

_CHUNK_LINES = 1000
"""Lines written at once: a line-buffered terminal is flushed once per write, not once per line."""


def _paint(text: str, color: bool, **style: Any) -> str:
    return click.style(text, **style) if color else text


def _change_lines(change: Change, plan: Plan, align: int, color: bool) -> list[str]:
    sign = symbol(change)
    mark = _paint(sign, color, fg=_COLORS[sign], bold=True)
    name = printable(label(change))
    if has_value(change):
        line = f"{name.ljust(align)} = {printable(value_part(change, VALUE_WIDTH))}"
    elif is_noted(change):
        note = printable(file_note(change, plan))
        line = f"{name} ({note})" if note else name
    else:
        line = name
    if change.rules:
        line += "  " + _paint(printable("# " + ", ".join(change.rules)), color, dim=True)
    lines = [f"      {mark} {line}"]
    if change.detail and not is_noted(change):  # a file's detail is its note above
        lines.append("        " + _paint(printable("# " + change.detail), color, dim=True))
    return lines


def _run_block(run: RunPlan, plan: Plan, color: bool) -> list[str]:
    widths = [len(printable(label(c))) for c in run.changes if has_value(c)]
    align = min(max(widths, default=0), ALIGN_MAX)
    header = _paint(f"  # {printable(run_title(run))} {run_verb(run)}", color, bold=True)
    lines = [header]
    for change in run.changes:
        lines.extend(_change_lines(change, plan, align, color))
    return [*lines, ""]


def _kept_lines(plan: Plan, color: bool) -> Iterator[str]:
    runs = plan.kept_runs
    if not runs:
        yield from ["No retention candidate survives: every file and artifact version the rules name is "
                    "deleted.", ""]
        return
    yield from ["Kept by the retention rules (candidates that survive, and why):", ""]
    for run in runs:
        yield _paint(f"  # {printable(run_title(run))}", color, bold=True)
        for kept in kept_of(run):
            why = _paint(printable("# " + kept_reasons(kept)), color, dim=True)
            yield f"      = {printable(kept_label(kept))} ({printable(kept_note(kept, plan))})  {why}"
        yield ""


def render(plan: Plan, stream: TextIO, *, color: bool = False, show_kept: bool = False) -> None:
    """Write the plan as Terraform-style text; ``color`` adds ANSI colors (never on by default);
    ``show_kept`` lists each surviving retention candidate and why (``plan --show-kept``).

    Written run by run as the runs are read: the output of a big plan is never held whole."""
    chunk: list[str] = []
    for line in _lines(plan, color, show_kept):
        chunk.append(line)
        if len(chunk) == _CHUNK_LINES:
            stream.write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        stream.write("\n".join(chunk) + "\n")


def _lines(plan: Plan, color: bool, show_kept: bool) -> Iterator[str]:
    if plan.has_changes:
        read = f" (planned from {pluralize(plan.runs_read, 'run')} read)" if plan.runs_read else ""
        yield from [
            "Changes are shown with these symbols:",
            "  " + _paint("~", color, fg="yellow", bold=True) + " update in-place",
            "  " + _paint("+", color, fg="green", bold=True) + " add",
            "  " + _paint("-", color, fg="red", bold=True) + " remove/delete",
            "",
            f"reconcile will perform the following actions{read}:",
            "",
        ]
        for run in plan.changed_runs:
            yield from _run_block(run, plan, color)
    if show_kept:
        yield from _kept_lines(plan, color)
    for error in all_errors(plan):
        yield _paint("Error:", color, fg="red", bold=True) + " " + printable(error)
    if plan.has_errors:
        yield from ["The plan has errors: fix them and plan again; apply refuses a plan with errors.", ""]
    for warning in plan.warnings:
        yield _paint("Warning:", color, fg="yellow", bold=True) + " " + printable(warning)
    if plan.warnings:
        yield ""
    for note in (skipped_note(plan), deletion_note(plan)):
        if note:
            yield from [note, ""]
    summary = summary_line(plan)
    head, _, rest = summary.partition(" ") if summary.startswith("Plan:") else ("", "", summary)
    yield _paint(head, color, bold=True) + " " + rest if head else _paint(rest, color, fg="green")
