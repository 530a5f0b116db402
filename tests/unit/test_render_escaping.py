"""Run data is hostile: a display name, config key, tag, file name or value can carry bidi overrides,
C1 controls, @mentions, issue references and URLs. The text and markdown renderers must show them, but
never let them reorder the text, drive the terminal, notify anyone or link anywhere."""

from __future__ import annotations

import io
import re
import sys
import unicodedata
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.models import Change, ChangeKind, ChangeOp, LiveFile, Plan, RunPlan
from reconcile.render import render
from reconcile.render.common import printable
from tests.unit.test_planfile import NOW

EVIL = "\u202eevil\u009b31m @acme/admins #1 GH-2 https://evil.example www.evil.example me@x.io"
"""A right-to-left override, a C1 CSI, a team mention, issue references, URLs and an email address."""

# What GitHub acts on in a comment, and what a terminal or browser acts on.
MENTION = re.compile(r"(?<![0-9A-Za-z])@[0-9A-Za-z]")
ISSUE_REF = re.compile(r"(?<![0-9A-Za-z])(?:#|GH-)[0-9]", re.I)
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|www\.", re.I)
RAW_CONTROLS = re.compile("[\u0080-\u009f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\x00-\x08\x0b-\x1f\x7f]")


def _hostile_plan() -> Plan:
    file = LiveFile(id="f1", name=f"ckpt {EVIL}.pt", size=10, updated_at=NOW - timedelta(days=2))
    run = RunPlan(
        entity="acme", project="vision", run_id="r1", storage_id="s1", name=EVIL,
        fingerprint="sha256:0", fingerprint_fields=(),
        changes=(
            Change(ChangeKind.NAME, ChangeOp.SET, (), EVIL, f"new {EVIL}", ("rule-a",)),
            Change(ChangeKind.CONFIG, ChangeOp.SET, (f"key {EVIL}",), 1, 2, ("rule-a",)),
            Change(ChangeKind.TAGS, ChangeOp.ADD, (EVIL,), None, EVIL, ("rule-a",)),
            Change(ChangeKind.NOTES, ChangeOp.SET, (), None, f"line one\n{EVIL}", ("rule-a",)),
            Change(ChangeKind.FILE, ChangeOp.DELETE, (file.name,), file, None, ("prune",), file=file),
        ),
        errors=(f"template for name: the run has no config key {EVIL!r}",),
    )
    many = RunPlan(entity="acme", project="vision", run_id="r2", storage_id="s2", name=EVIL,
                   fingerprint="sha256:0", fingerprint_fields=(),
                   changes=tuple(Change(ChangeKind.CONFIG, ChangeOp.SET, (f"k{i}",), 0, EVIL, ("r",))
                                 for i in range(12)))  # collapsed into <details>: the summary is HTML
    return Plan(spec_digest="sha256:d", created_at=NOW, base_url="http://127.0.0.1:8080", runs=(run, many))


def _rendered(fmt: str) -> str:
    out = io.StringIO()
    render(_hostile_plan(), out, fmt, color=fmt == "text")
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_control_and_bidi_characters_in_run_data_are_shown_escaped(fmt: str) -> None:
    """U+202E and U+009B never reach the output raw; they appear as visible escapes instead."""
    output = _rendered(fmt)
    without_colors = re.sub(r"\x1b\[[0-9;]*m", "", output)  # the renderer's own colors
    assert not RAW_CONTROLS.search(without_colors), RAW_CONTROLS.findall(without_colors)
    assert "\\u202eevil\\u009b31m" in output.replace("\\\\", "\\")


def test_markdown_run_data_cannot_notify_link_or_reference() -> None:
    """No @mention, issue reference, URL or email autolink survives from run data into markdown,
    yet the text still reads the same (only invisible word joiners are added)."""
    markdown = _rendered("markdown")
    assert not MENTION.search(markdown), MENTION.findall(markdown)
    assert not ISSUE_REF.search(markdown), ISSUE_REF.findall(markdown)
    assert not URL.search(markdown), URL.findall(markdown)
    visible = markdown.replace("\u2060", "")
    assert "@acme/admins #1 GH-2 https://evil.example www.evil.example me@x.io" in visible


def test_text_keeps_mentions_and_urls_readable() -> None:
    """The terminal is not GitHub: mentions and URLs print as they are, only controls are escaped."""
    assert "@acme/admins #1 GH-2 https://evil.example" in _rendered("text")


UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def test_printable_escapes_every_control_format_and_separator_character() -> None:
    """Every code point of categories Cc, Cf, Zl, Zp, Cs (bar the emoji ZERO WIDTH JOINER) is escaped."""
    unsafe = [chr(cp) for cp in range(sys.maxunicode + 1)
              if unicodedata.category(chr(cp)) in UNSAFE_CATEGORIES and cp != 0x200D]
    leaked = [f"U+{ord(c):04X}" for c in unsafe if c in printable(f"a{c}b")]
    assert not leaked


@given(st.text())
def test_printable_output_is_always_safe(text: str) -> None:
    """Whatever the input, the output has no unsafe character and plain text is left alone."""
    shown = printable(text)
    assert not any(unicodedata.category(c) in UNSAFE_CATEGORIES and c != "\u200d" for c in shown)
    if not any(unicodedata.category(c) in UNSAFE_CATEGORIES for c in text):
        assert shown == text


def test_error_messages_carrying_run_data_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """An error naming a hostile run prints its controls escaped, keeping the message's line breaks."""
    from reconcile.errors import PlanError
    from reconcile.errors_handler import handle_errors

    def fail() -> int:
        raise PlanError(f"run {EVIL} failed\nsecond line")

    assert handle_errors(fail) == 1
    err = capsys.readouterr().err
    assert not RAW_CONTROLS.search(err)
    assert "\\u202eevil\\u009b31m" in err
    assert err.splitlines()[1] == "second line"
