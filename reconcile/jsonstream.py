"""Read one big JSON object member by member, streaming the elements of one array member.

A saved plan is one JSON object whose ``runs`` array can hold 100,000 runs. ``members`` walks
the object in file order with ``json.JSONDecoder.raw_decode`` over a sliding window of the file,
so only one value (a header field, or one element of the streamed array) is in memory at a time,
whatever the member order or the formatting. Python's own decoder does every value, so the
accepted JSON is exactly ``json.load``'s (``NaN`` and ``Infinity`` included).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

CHUNK = 1 << 20
"""Characters read from the file at a time."""

STREAM_START = object()
"""Yielded as the value of the streamed member before its elements (so an empty array is seen)."""

_WHITESPACE = " \t\n\r"
_NUMBER = frozenset("0123456789.eE+-")


class _Window:
    """A sliding window over a text file: what has not been consumed yet, refilled on demand."""

    def __init__(self, fh: TextIO, chunk: int) -> None:
        self.fh, self.chunk = fh, chunk
        self.text = ""
        self.pos = 0
        self.eof = False
        self.lines_before = 0  # newlines in the text already dropped from the window
        self.column_before = 0  # characters of the current line already dropped

    def more(self) -> bool:
        """Read another chunk (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        chunk = self.fh.read(self.chunk)
        if not chunk:
            self.eof = True
            return False
        dropped = self.text[:self.pos]
        newline = dropped.rfind("\n")
        self.lines_before += dropped.count("\n")
        self.column_before = len(dropped) - newline - 1 if newline >= 0 else self.column_before + len(dropped)
        self.text = self.text[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos:self.pos + 1]

    def expect(self, chars: str) -> str:
        """Consume the next non-whitespace character, which must be one of ``chars``."""
        found = self.peek()
        if not found or found not in chars:
            what = repr(found) if found else "the end of the file"
            raise self.error(f"Expecting {' or '.join(repr(c) for c in chars)}, found {what}", self.pos)
        self.pos += 1
        return found

    def value(self, decoder: json.JSONDecoder) -> Any:
        """Decode the next JSON value, reading more of the file until it is complete."""
        self.peek()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():
                    continue
                raise self.error(exc.msg, exc.pos) from None
            if self._complete(value, end) or not self.more():
                self.pos = end
                return value

    def _complete(self, value: Any, end: int) -> bool:
        """Whether ``value`` is surely whole: a number running to the window's edge may go on."""
        if self.eof or isinstance(value, bool) or not isinstance(value, int | float):
            return True
        while end < len(self.text) and self.text[end] in _NUMBER:
            end += 1
        return end < len(self.text)

    def error(self, message: str, pos: int) -> json.JSONDecodeError:
        """A JSONDecodeError whose line and column count from the start of the file."""
        line = self.lines_before + self.text.count("\n", 0, pos) + 1
        newline = self.text.rfind("\n", 0, pos)
        column = pos - newline if newline >= 0 else self.column_before + pos + 1
        err = json.JSONDecodeError(message, self.text, pos)
        err.lineno, err.colno = line, column
        return err


def members(fh: TextIO, streamed: str, *, chunk: int = CHUNK) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` for each member of the JSON object in ``fh``, in file order.

    The member named ``streamed`` must be an array: it yields ``(streamed, STREAM_START)`` and then
    ``(streamed, element)`` once per element. Raises ``json.JSONDecodeError`` (line and column from the
    start of the file) on anything ``json.load`` would refuse, including text after the object.
    """
    decoder = json.JSONDecoder()
    window = _Window(fh, chunk)
    window.expect("{")
    if window.peek() == "}":
        window.pos += 1
    else:
        while True:
            if window.peek() != '"':
                raise window.error("Expecting property name enclosed in double quotes", window.pos)
            key = window.value(decoder)
            window.expect(":")
            if key == streamed:
                window.expect("[")
                yield key, STREAM_START
                if window.peek() == "]":
                    window.pos += 1
                else:
                    while True:
                        yield key, window.value(decoder)
                        if window.expect(",]") == "]":
                            break
            else:
                yield key, window.value(decoder)
            if window.expect(",}") == "}":
                break
    if window.peek():
        raise window.error("Extra data", window.pos)
