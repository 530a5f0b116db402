"""The streaming JSON object reader gives exactly what json.load gives, one value at a time."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.jsonstream import STREAM_START, members

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def rebuild(text: str, chunk: int = 1 << 20) -> dict[str, Any]:
    out: dict[str, Any] = {}
    streamed = "runs"
    for key, value in members(io.StringIO(text), streamed, chunk=chunk):
        if key == streamed:
            if value is STREAM_START:
                out[key] = []
            else:
                out[key].append(value)
        else:
            out[key] = value
    return out


@given(header=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "runs"), values, max_size=5),
       runs=st.lists(values, max_size=6), indent=st.sampled_from([None, 0, 2]), first=st.booleans(),
       chunk=st.integers(1, 9))
def test_members_rebuild_exactly_what_json_load_reads(header: dict[str, Any], runs: list[Any],
                                                      indent: int | None, first: bool, chunk: int) -> None:
    """Any member order, any formatting, window edges anywhere (tiny chunks): the same document."""
    document = {"runs": runs, **header} if first else {**header, "runs": runs}
    text = json.dumps(document, indent=indent)
    assert rebuild(text, chunk) == json.loads(text)


def test_numbers_and_constants_split_by_the_window_are_read_whole() -> None:
    got = rebuild('{"a": 1234567, "runs": [NaN, -Infinity, 12.5e3, true], "b": -0.25}', chunk=3)
    assert got["a"] == 1234567 and got["b"] == -0.25
    assert math.isnan(got["runs"][0]) and got["runs"][1:] == [-math.inf, 12500.0, True]


def test_elements_are_yielded_one_at_a_time() -> None:
    """The streamed array's elements come before the members after it are read."""
    seen = []
    for key, value in members(io.StringIO('{"h": 1, "runs": [{"i": 1}, {"i": 2}], "t": 2}'), "runs"):
        seen.append((key, value))
    assert seen == [("h", 1), ("runs", STREAM_START), ("runs", {"i": 1}), ("runs", {"i": 2}), ("t", 2)]


@pytest.mark.parametrize("text", [
    "", "[]", '{"runs": [1, 2}', '{"runs": [1,, 2]}', '{"a": 1', '{"a": 1} x', '{a: 1}', '{"runs": {}}',
    '{"a": tru}', '{"runs": [1] "b": 2}',
])
def test_anything_json_load_refuses_is_a_decode_error_with_a_position(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        rebuild(text)
    assert caught.value.lineno >= 1 and caught.value.colno >= 1


def test_error_lines_count_from_the_start_of_the_file() -> None:
    text = '{\n  "a": 1,\n  "runs": [\n    1,\n    2,\n    oops\n  ]\n}\n'
    with pytest.raises(json.JSONDecodeError) as caught:
        rebuild(text, chunk=4)
    assert (caught.value.lineno, caught.value.colno) == (6, 5)
