"""The markdown renderer: a pull-request comment or ``$GITHUB_STEP_SUMMARY``.

A hidden marker (so a CI job can find and update its own comment), the summary line,
errors (per run and plan-wide, kept above the runs so truncation never hides them), then
one table per changed run, collapsed in ``<details>`` when long. The output never
exceeds GitHub's comment limit of 65,536 characters: runs that do not fit are left out
and counted in a last line that says how to see them.
"""

from __future__ import annotations

import html
import re
from typing import TextIO

from humanfriendly.text import pluralize

from reconcile.models import Change, ChangeKind, ChangeOp, KeptArtifact, Plan, RunPlan
from reconcile.render.common import (
    Kept,
    all_errors,
    deletion_note,
    file_note,
    is_noted,
    kept_note,
    kept_of,
    kept_reasons,
    label,
    printable,
    run_title,
    skipped_note,
    summary_line,
    symbol,
    truncate,
    value_text,
)

MARKER = "<!-- reconcile-plan -->"
"""First line of every markdown plan; CI jobs look for it to update their comment in place."""

MAX_CHARS = 65_536
"""GitHub's limit on a comment body (and on a step summary's size in practice)."""

COLLAPSE_OVER = 10
"""A run with more changes than this gets its table inside ``<details>``."""

VALUE_WIDTH = 80
MAX_ROWS_PER_RUN = 200
"""Rows shown per run; one more row counts the rest, so a huge run cannot crowd out others."""

ERRORS_BUDGET = MAX_CHARS // 4
"""At most this many characters of error lines; the rest are counted."""

_FOOTER_RESERVE = 400  # room for the "left out" line, whatever the counts
_SPECIAL = re.compile(r"[\\`*_\[\]|<>&]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Where GitHub would act on plain text: an @mention (notifies a user or team, and makes an
# email address a link), an issue reference (#1, GH-1) and an autolinked URL (scheme://,
# www.). A WORD JOINER (U+2060, invisible) placed there keeps the text as it reads but
# no longer matches GitHub's patterns.
_ACTIONABLE = re.compile(
    r"(?<=@)(?=[0-9A-Za-z])|(?<=#)(?=[0-9])|(?<=GH)(?=-[0-9])|(?<=:)(?=//)|(?<=www)(?=\.)", flags=re.I)
WORD_JOINER = "\u2060"


def inert(text: str) -> str:
    """``text`` that GitHub can never turn into a mention, an issue link or a URL."""
    return _ACTIONABLE.sub(WORD_JOINER, text)


def escape(text: str) -> str:
    """Run data safe inside a table cell: control and bidi characters shown as escapes; pipes,
    backticks, emphasis and HTML escaped; newlines as ``<br>``; mentions, issue references and
    URLs made inert."""
    lines = (_SPECIAL.sub(lambda m: _ESCAPES.get(m.group(), "\\" + m.group()), printable(line))
             for line in text.replace("\r\n", "\n").split("\n"))
    return inert("<br>".join(lines))


def _cells(change: Change, plan: Plan) -> tuple[str, str, str]:
    """(change, before, after) cell texts, unescaped."""
    sign = symbol(change)
    what = f"{sign} {label(change)}"
    if is_noted(change):
        note = file_note(change, plan)
        return (what, note, "deleted") if change.op is ChangeOp.DELETE else (what, "", note)
    if change.kind is ChangeKind.TAGS:
        tag = value_text(change.key[0] if change.key else change.after, VALUE_WIDTH)
        return (f"{sign} tags", "", tag) if sign == "+" else (f"{sign} tags", tag, "")
    if change.op is ChangeOp.RENAME:  # the value moves unchanged: show it on both sides
        moved = value_text(change.before, VALUE_WIDTH)
        return what, moved, moved
    before = "" if sign == "+" else value_text(change.before, VALUE_WIDTH)
    after = value_text(change.after, VALUE_WIDTH)
    return what, before, after


def _run_section(run: RunPlan, plan: Plan) -> str:
    lines = ["| Change | Before | After | Rule |", "|---|---|---|---|"]
    for change in run.changes[:MAX_ROWS_PER_RUN]:
        what, before, after = _cells(change, plan)
        rules = escape(", ".join(change.rules))
        if change.detail and not is_noted(change):  # a file's detail is in its row
            rules += f"<br>({escape(change.detail)})"
        lines.append(f"| {escape(what)} | {escape(before)} | {escape(after)} | {rules} |")
    hidden = len(run.changes) - MAX_ROWS_PER_RUN
    if hidden > 0:
        more = pluralize(hidden, "more change")
        lines.append(f"| … {more} of this run: see `reconcile show plan.json` | | | |")
    if len(run.changes) > COLLAPSE_OVER:
        # Inside an HTML block markdown escapes are not processed: escape as HTML only.
        title = inert(html.escape(printable(run_title(run)), quote=False))
        summary = f"{title} ({pluralize(len(run.changes), 'change')})"
        return "\n".join([f"<details><summary>{summary}</summary>", "", *lines, "", "</details>", ""])
    return "\n".join([f"#### {escape(run_title(run))}", "", *lines, ""])


def _errors_section(plan: Plan) -> list[str]:
    if not plan.has_errors:
        return []
    lines = ["**Errors** (apply refuses a plan with errors):", ""]
    used = 0
    for i, error in enumerate(all_errors(plan)):
        line = f"- {escape(truncate(error, 1000))}"
        if used + len(line) > ERRORS_BUDGET:
            more = pluralize(plan.error_count - i, "more error")
            lines.append(f"- … and {more}: see `reconcile show plan.json`")
            break
        lines.append(line)
        used += len(line) + 1
    return [*lines, ""]


def _kept_section(run: RunPlan, plan: Plan) -> str:
    lines = ["| Kept | Size, age or aliases | Why |", "|---|---|---|"]
    survivors = kept_of(run)
    for kept in survivors[:MAX_ROWS_PER_RUN]:
        lines.append(f"| {escape(label_of_kept(kept))} | {escape(kept_note(kept, plan))} "
                     f"| {escape(kept_reasons(kept))} |")
    hidden = len(survivors) - MAX_ROWS_PER_RUN
    if hidden > 0:
        more = pluralize(hidden, "more kept candidate")
        lines.append(f"| … {more} of this run: see `reconcile show plan.json` | | |")
    summary = f"{inert(html.escape(printable(run_title(run)), quote=False))} ({len(survivors)} kept)"
    return "\n".join([f"<details><summary>{summary}</summary>", "", *lines, "", "</details>", ""])


def label_of_kept(kept: Kept) -> str:
    """``= file "name"`` or ``= artifact version "name:vN"``: kept, unchanged."""
    if isinstance(kept, KeptArtifact):
        return f"= artifact version {value_text(kept.artifact.name, VALUE_WIDTH)}"
    return f"= file {value_text(kept.file.name, VALUE_WIDTH)}"


def render(plan: Plan, stream: TextIO, *, color: bool = False, show_kept: bool = False) -> None:
    """Write the plan as GitHub-flavoured markdown of at most 65,536 characters (``color`` is ignored);
    ``show_kept`` adds a collapsed table per run of the retention candidates that survive, and why."""
    del color
    head = [MARKER, "", f"**{escape(summary_line(plan))}**", ""]
    for note in (skipped_note(plan), deletion_note(plan)):
        if note:
            head += [f"_{escape(note)}_", ""]
    head += _errors_section(plan)
    if plan.warnings:
        head += ["**Warnings:**", "", *(f"- {escape(truncate(w, 1000))}" for w in plan.warnings), ""]
    out = "\n".join(head) + "\n"
    shown = plan.changed_runs  # runs with errors only are listed in the errors section above
    runs = iter(shown)
    left_runs = left_changes = 0
    for i, run in enumerate(runs):
        section = _run_section(run, plan) + "\n"
        if len(out) + len(section) + _FOOTER_RESERVE > MAX_CHARS:
            # The rest are only counted, read one at a time like the runs shown.
            left_runs, left_changes = len(shown) - i, len(run.changes) + sum(len(r.changes) for r in runs)
            break
        out += section
    if left_runs:
        verb = "is" if left_runs == 1 else "are"
        left = f"{pluralize(left_runs, 'more run')} ({pluralize(left_changes, 'change')})"
        out += (f"**{left} {verb} not shown** to stay under GitHub's {MAX_CHARS:,}-character limit. "
                "See them all with `reconcile show plan.json`.\n")
    elif show_kept:
        out += _kept_sections(plan, len(out))
    stream.write(out)


def _kept_sections(plan: Plan, used: int) -> str:
    """The kept files and artifact versions of each run, as long as they fit; the rest are counted."""
    runs = plan.kept_runs
    out = "### Kept by the retention rules\n\n"
    if not runs:
        return out + "No retention candidate survives.\n"
    for i, run in enumerate(runs):
        section = _kept_section(run, plan) + "\n"
        if used + len(out) + len(section) + _FOOTER_RESERVE > MAX_CHARS:
            left, verb = len(runs) - i, "is" if len(runs) - i == 1 else "are"
            return out + (f"**{pluralize(left, 'more run')} with kept candidates {verb} not shown** to stay "
                          f"under GitHub's {MAX_CHARS:,}-character limit. "
                          "See them with `reconcile show plan.json --show-kept`.\n")
        out += section
    return out
