"""Formatting shared by the text and markdown renderers: symbols, labels, values, sizes, ages.

Pure formatting of what the plan holds; nothing here counts or decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from humanfriendly import format_size
from humanfriendly.text import pluralize

from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    KeptArtifact,
    KeptFile,
    LiveFile,
    Plan,
    PlanLike,
    RunAction,
    RunPlan,
)

ELLIPSIS = "…"

_SIMPLE_FIELDS = {ChangeKind.NAME, ChangeKind.NOTES, ChangeKind.GROUP, ChangeKind.JOB_TYPE, ChangeKind.STATE,
                  ChangeKind.CREATED_AT}
NOTED_KINDS = (ChangeKind.FILE, ChangeKind.ARTIFACT, ChangeKind.HISTORY)
"""Changes shown with a note in parentheses (size, age, aliases; rows and steps) instead of ``= value``."""


def is_noted(change: Change) -> bool:
    """Whether ``change`` is shown with a note instead of ``= value`` (an artifact version's TTL has a
    value: ``none -> 30d``)."""
    ttl = change.kind is ChangeKind.ARTIFACT and change.op is ChangeOp.SET
    return change.kind in NOTED_KINDS and not ttl


# Every control (C0, DEL, C1), format (bidi overrides and isolates, zero-width, soft hyphen),
# line/paragraph separator and surrogate code point (Unicode categories Cc, Cf, Zl, Zp, Cs),
# except ZERO WIDTH JOINER, which only joins emoji. Run data shown with any of these raw
# could reorder (U+202E), hide, or drive the terminal (U+009B is a CSI).
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b\u200c\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff"
    "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that could reorder, hide or control what a terminal or
    browser shows written as a visible escape (``\\u202e``, ``\\n``)."""
    return _UNPRINTABLE.sub(lambda m: _SHORT_ESCAPES.get(m.group()) or _code_escape(ord(m.group())), text)


def _code_escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def size_text(size: int) -> str:
    """Bytes as binary units, e.g. ``114.44 MiB``."""
    return str(format_size(size, binary=True))


def summary_line(plan: Plan) -> str:
    """The last line of every plan: a public interface, so its shape never changes."""
    if plan.has_errors and not plan.has_changes:
        return "No changes can be planned until the errors are fixed."
    if not plan.has_changes:
        return "No changes. Runs match the spec."
    created = f"{pluralize(len(plan.created_runs), 'run')} to create, " if plan.created_runs else ""
    uploads = (f"{pluralize(plan.file_uploads, 'file')} to upload ({size_text(plan.bytes_to_upload)}), "
               if plan.created_runs or plan.has_imports else "")
    line = (f"Plan: {created}{pluralize(len(plan.updated_runs), 'run')} to change "
            f"({pluralize(plan.attribute_changes, 'attribute change')}), {uploads}"
            f"{pluralize(plan.file_deletions, 'file')} to delete ({size_text(plan.bytes_to_free)})")
    if plan.artifact_deletions:
        line += (f", {pluralize(plan.artifact_deletions, 'artifact version')} to delete "
                 f"({size_text(plan.artifact_bytes_to_free)})")
    if plan.artifact_ttl_changes:
        line += f", {pluralize(plan.artifact_ttl_changes, 'artifact version TTL')} to set"
    return line + "."


def deleted_text(plan: PlanLike) -> str:
    """``2 files (1.5 MiB)``, ``3 artifact versions (20 MiB)``, or both joined by ``and``."""
    parts = []
    if plan.file_deletions:
        parts.append(f"{pluralize(plan.file_deletions, 'file')} ({size_text(plan.bytes_to_free)})")
    if plan.artifact_deletions:
        parts.append(f"{pluralize(plan.artifact_deletions, 'artifact version')} "
                     f"({size_text(plan.artifact_bytes_to_free)})")
    return " and ".join(parts)


def deletion_note(plan: Plan) -> str | None:
    """How many files and artifact versions (and bytes) the plan deletes for good, and the choice
    apply will ask for."""
    if not plan.file_deletions and not plan.artifact_deletions:
        return None
    return (f"{deleted_text(plan)} will be permanently deleted: W&B keeps no copy. Apply needs "
            f"--backup-dir DIR (a verified copy first; {undo_promise(plan)}) or --no-backup.")


def undo_promise(plan: PlanLike) -> str:
    """What an undo can bring back of the plan's deletions: the undo plan re-uploads files from their
    backups, but a deleted artifact version cannot be re-created (its id and version number are gone),
    so of a version only its files remain, in the backup directory."""
    if not plan.artifact_deletions:
        return "the undo plan re-uploads it"
    if not plan.file_deletions:
        return "a deleted artifact version cannot be re-created: its files stay in DIR, to log again"
    return ("the undo plan re-uploads the files, but cannot re-create the artifact versions: their files "
            "stay in DIR, to log again")


def skipped_note(plan: Plan) -> str | None:
    """Why running/pending runs were not planned, or ``None`` when none were skipped."""
    n = plan.skipped_running
    if not n:
        return None
    runs = "run was" if n == 1 else "runs were"
    # wandb/wandb#4377: a live run rewrites config and summary when it finishes.
    return (f"{n} running or pending {runs} left alone: a live run rewrites its config and summary when it "
            f"finishes, so a change would be lost. Name the state in a rule's match.state to include them.")


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def value_text(value: Any, width: int) -> str:
    """A config/summary/field value as JSON (``null``, ``"text"``, ``NaN``), truncated to ``width``."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True, sort_keys=True)
    except (TypeError, ValueError):  # not JSON-safe despite the model's promise: still show it
        text = repr(value)
    return truncate(text, width)


def quoted(text: str | None) -> str:
    """A string as a JSON literal, for names, tags and file paths."""
    return json.dumps(text, ensure_ascii=False)


def run_title(run: RunPlan) -> str:
    """``entity/project/run_id "display name"`` (the name only when known)."""
    return run.path if run.name is None else f"{run.path} {quoted(run.name)}"


def run_verb(run: RunPlan) -> str:
    """``will be created`` or ``will be updated in-place``."""
    return "will be created" if run.action is RunAction.CREATE else "will be updated in-place"


def symbol(change: Change) -> str:
    """``+`` add/create, ``-`` remove/delete/unset, ``~`` update in place or rename."""
    if change.op in (ChangeOp.ADD,) or change.created:
        return "+"
    if change.op is ChangeOp.SET and change.kind in _SIMPLE_FIELDS and change.before is None:
        return "+"
    if change.op in (ChangeOp.UNSET, ChangeOp.REMOVE, ChangeOp.DELETE):
        return "-"
    return "~"


def _dotted(key: tuple[str, ...]) -> str:
    return ".".join(key)


def label(change: Change) -> str:
    """What a change touches, as shown: ``config.optimizer.lr``, ``config: lr => learning_rate``,
    ``tag "wip"``, ``file "ckpt.pt"``."""
    if change.op is ChangeOp.RENAME and change.from_key is not None:
        return f"{change.kind.value}: {_dotted(change.from_key)} => {_dotted(change.key)}"
    if change.kind is ChangeKind.TAGS:
        return f"tag {quoted(change.key[0] if change.key else change.after or change.before)}"
    if change.kind is ChangeKind.FILE:
        name = change.file.name if change.file is not None else _dotted(change.key)
        return f"file {quoted(name)}"
    if change.kind is ChangeKind.ARTIFACT:
        what = " ".join(change.key[1:])  # the attribute set (``ttl``), nothing for a deletion
        return f"artifact version {quoted(change.key[0])}" + (f" {what}" if what else "")
    return change.path


def has_value(change: Change) -> bool:
    """Whether the change is shown with ``= value`` (tags and files are not)."""
    return change.kind is not ChangeKind.TAGS and not is_noted(change)


def value_part(change: Change, width: int) -> str:
    """The right-hand side after ``=``: ``before -> after``, the new value, or the moved value."""
    if change.op is ChangeOp.RENAME:
        return value_text(change.before, width)
    if symbol(change) == "+":
        return value_text(change.after, width)
    return f"{value_text(change.before, width)} -> {value_text(change.after, width)}"


def age_text(updated_at: datetime, now: datetime) -> str:
    """How long before ``now`` (the plan's creation time) a file was last updated."""
    days = (now - updated_at).days
    if days < 1:
        return "less than a day old"
    return "1 day old" if days == 1 else f"{days} days old"


def original_upload_text(original: datetime | None) -> str:
    """What a file's age is counted from when it is not W&B's upload time: `` by its original upload
    (2026-01-02 01:00 UTC; an undo re-uploaded it since)``, or nothing."""
    if original is None:
        return ""
    when = original.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    return f" by its original upload ({when} UTC; an undo re-uploaded it since)"


def _size_and_age(file: LiveFile, original: datetime | None, now: datetime) -> str:
    """``10 bytes, 334 days old``, the age counted from ``original`` (and saying so) when retention
    ranked the file by the original upload time an undo recorded."""
    return (f"{size_text(file.size)}, {age_text(original or file.updated_at, now)}"
            f"{original_upload_text(original)}")


def file_note(change: Change, plan: Plan) -> str:
    """``114.44 MiB, 320 days old`` for a deletion; size and backup for an undo re-upload.

    The planner's display-only ``detail`` wins when set (it says the same, from the same
    reference time); otherwise the note is formatted from the file itself.
    """
    if change.detail:
        return change.detail
    if change.file is not None:
        return _size_and_age(change.file, change.original_updated_at, plan.created_at)
    parts = []
    if isinstance(change.after, int) and not isinstance(change.after, bool):
        parts.append(size_text(change.after))
    if change.source:
        parts.append(f"from backup {change.source}")
    return ", ".join(parts)


def all_errors(plan: Plan) -> Iterator[str]:
    """Every error of the plan (``plan.error_count`` of them), per run (prefixed with the run's path)
    then plan-wide; read one run at a time."""
    for run in plan.error_runs:
        for err in run.errors:
            yield f"{run.path}: {err}"
    yield from plan.errors


Kept = KeptFile | KeptArtifact


def kept_label(kept: Kept) -> str:
    """``file "ckpt.pt"`` or ``artifact version "ckpt-run1:v3"``."""
    if isinstance(kept, KeptArtifact):
        return f"artifact version {quoted(kept.artifact.name)}"
    return f"file {quoted(kept.file.name)}"


def kept_note(kept: Kept, plan: Plan) -> str:
    """``1.2 MiB, 2 days old`` for a surviving file, ``12.3 MiB, aliases: best`` for a version."""
    if isinstance(kept, KeptArtifact):
        aliases = ", ".join(kept.artifact.aliases) or "none"
        return f"{size_text(kept.artifact.size)}, aliases: {aliases}"
    return _size_and_age(kept.file, kept.original_updated_at, plan.created_at)


def kept_reasons(kept: Kept) -> str:
    """``prune: keep_last 1 of 3; archive: keep "best.*"`` (rule, then why it spared the candidate)."""
    return "; ".join(f"{reason.rule}: {reason}" for reason in kept.reasons)


def kept_of(run: RunPlan) -> tuple[Kept, ...]:
    """The run's surviving candidates: its files, then the artifact versions it logged."""
    return (*run.kept, *run.kept_artifacts)


