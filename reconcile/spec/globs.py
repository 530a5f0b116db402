"""Whether a glob is usable: wcmatch accepts nearly anything, so the mistakes that silently
match nothing are caught here."""

from __future__ import annotations

import re

from wcmatch import fnmatch, glob

FILE_GLOB_FLAGS = glob.GLOBSTAR
"""wcmatch flags for ``files.delete``/``keep`` globs (the same as ``reconcile.retention``)."""

NAME_GLOB_FLAGS = fnmatch.CASE
"""wcmatch flags for ``match.name`` (the same as ``reconcile.selection``)."""

MAX_GLOB_LENGTH = 1024
"""Longest glob accepted (real globs are a few dozen characters)."""


_RANGE = re.compile(r"(.)-(.)")


def is_literal(pattern: str) -> bool:
    """Whether the ``files`` glob ``pattern`` names one file (no wildcard, class or escape)."""
    return not glob.is_magic(pattern, flags=FILE_GLOB_FLAGS)


def glob_problem(pattern: str, *, file_path: bool) -> str | None:  # noqa: PLR0912 - a list of checks
    """Why ``pattern`` is not a usable glob, or None. wcmatch accepts nearly anything, so the
    mistakes that silently match nothing are caught here."""
    if not pattern.strip():
        return "is blank"
    if len(pattern) > MAX_GLOB_LENGTH:  # wcmatch takes tens of seconds to translate a 10 MB pattern
        return f"is {len(pattern)} characters long; a glob may have at most {MAX_GLOB_LENGTH}"
    if "\x00" in pattern:
        return "contains a NUL character"
    if file_path and pattern.startswith("/"):
        return "starts with '/'; file paths in a run are relative, e.g. media/images/**"
    if file_path and ".." in pattern.split("/"):
        return "contains '..', which never matches a file of a run"
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 == len(pattern):
                return "ends with a lone backslash"
            i += 2
            continue
        if char == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] in "!^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end < 0:
                return "has an unclosed '['; write [[] for a literal '['"
            for low, high in _RANGE.findall(pattern[j if pattern[j - 1] != "]" else j - 1 : end]):
                if low > high:
                    return f"has a reversed range {low}-{high} that matches nothing"
            i = end + 1
            continue
        i += 1
    try:
        if file_path:
            glob.translate(pattern, flags=FILE_GLOB_FLAGS)
        else:
            fnmatch.translate(pattern, flags=NAME_GLOB_FLAGS)
    except Exception as exc:
        return f"is not a valid glob ({exc})"
    return None
