"""Emulator internals without the client: fixture parsing, filter compilation, store paging and merge."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconcile.emulator.filters import FilterError, compile_filter, compile_order
from reconcile.emulator.fixture import FixtureError, parse_fixture, synthetic_runs
from reconcile.emulator.resolvers import operation_name
from reconcile.emulator.store import MAX_PAGE_SIZE, Store, deep_merge


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("#graphql\n        query Runs($project: String!) { x }", "Runs"),
        ("mutation deleteFiles($files: [ID!]!) { x }", "deleteFiles"),
        ("# query Fake\n{ viewer { id } }", "<anonymous>"),
    ],
)
def test_operation_name_is_parsed_from_the_query_text(query: str, name: str) -> None:
    """The first `query|mutation Name` names the operation, comments and all."""
    assert operation_name(query) == name


def test_deep_merge_merges_dicts_and_replaces_everything_else() -> None:
    """Dicts merge recursively; lists, scalars and type changes replace (protocol §13.1)."""
    stored = {"a": {"value": {"x": 1, "l": [1, 2]}, "desc": None}, "b": {"value": 1, "desc": "d"}}
    sent = {"a": {"value": {"y": 2, "l": [3]}, "desc": None}, "b": {"value": {"n": 1}, "desc": None}}
    assert deep_merge(stored, sent) == {
        "a": {"value": {"x": 1, "y": 2, "l": [3]}, "desc": None},
        "b": {"value": {"n": 1}, "desc": None},
    }


@pytest.mark.parametrize(
    "data",
    [
        {"runs": [{"entity": "e", "project": "p"}]},
        {"runs": [{"entity": "e", "project": "p", "id": "r", "state": "sleeping"}]},
        {"runs": [{"entity": "e", "project": "p", "id": "r", "created_at": "yesterday"}]},
        {"runs": [{"entity": "e", "project": "p", "id": "r"}, {"entity": "e", "project": "p", "id": "r"}]},
        {
            "runs": [
                {
                    "entity": "e",
                    "project": "p",
                    "id": "r",
                    "files": [{"name": "a", "size": 3, "content": "ab"}],
                }
            ]
        },
        {"runs": [], "extra": 1},
    ],
)
def test_fixture_errors_are_reported(data: dict[str, Any]) -> None:
    """Malformed fixtures raise FixtureError instead of seeding something half-right."""
    with pytest.raises(FixtureError):
        parse_fixture(data)


def test_fixture_normalises_times_config_and_names() -> None:
    """Times become zone-less UTC, config is wrapped as {value, desc}, `name` is the display name."""
    fixture = parse_fixture(
        {
            "runs": [
                {
                    "entity": "e",
                    "project": "p",
                    "id": "r",
                    "name": "nice",
                    "created_at": "2026-01-02T05:04:05+02:00",
                    "config": {"lr": 1},
                }
            ]
        }
    )
    run = fixture.runs[0]
    assert (run.created_at, run.display_name) == ("2026-01-02T03:04:05", "nice")
    assert run.config == {"lr": {"value": 1, "desc": None}}
    assert fixture.viewer_entity == "e"


@pytest.mark.parametrize(
    "bad",
    [
        '{"a": 1',
        "[1]",
        '{"config.x": {"$foo": 1}}',
        '{"tags": {"$gt": "a"}}',
        '{"duration": 5}',
        '{"createdAt": {"$gt": "soon"}}',
        '{"state": {"$regex": "("}}',
        '{"state": {"$in": "finished"}}',
    ],
)
def test_filter_compilation_refuses_what_it_does_not_understand(bad: str) -> None:
    """Unknown keys/operators, bad operands and invalid JSON raise FilterError."""
    with pytest.raises(FilterError):
        compile_filter(bad)


@pytest.mark.parametrize("bad", ["duration", "-config", "+tags"])
def test_order_compilation_refuses_unknown_keys(bad: str) -> None:
    """Unknown order keys raise FilterError."""
    with pytest.raises(FilterError):
        compile_order(bad)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """2,500 synthetic runs seeded in one transaction."""
    store = Store(tmp_path_factory.mktemp("big") / "big.sqlite", reset=True)
    store.seed(parse_fixture({"runs": list(synthetic_runs(2500, entity="e", project="p"))}))
    yield store
    store.close()


def test_store_pages_with_keyset_cursors_and_caps_first(big_store: Store) -> None:
    """first above the cap gets MAX_PAGE_SIZE runs; following cursors visits every run once, in order."""
    project = big_store.project("e", "p")
    assert project is not None
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, more = big_store.list_runs(
            project["id"], filters=None, order="-created_at", after=cursor, first=5000
        )
        pages += 1
        seen.extend(row["name"] for row, _ in page)
        assert len(page) <= MAX_PAGE_SIZE
        if not more:
            break
        cursor = page[-1][1]
    assert pages == 3
    assert seen == [f"run{i:07d}" for i in reversed(range(2500))]


def test_store_orders_by_json_keys_with_ties_over_pages(big_store: Store) -> None:
    """Ordering by a config key with many ties pages without repeating or losing runs."""
    project = big_store.project("e", "p")
    assert project is not None
    seen: list[str] = []
    cursor = None
    while True:
        page, more = big_store.list_runs(
            project["id"], filters='{"state": "finished"}', order="+config.lr", after=cursor, first=333
        )
        seen.extend(row["name"] for row, _ in page)
        if not more:
            break
        cursor = page[-1][1]
    assert len(seen) == len(set(seen)) == big_store.count_runs(project["id"], '{"state": "finished"}') == 1000


def test_store_seed_resets_and_files_stream_deterministically(tmp_path: Path) -> None:
    """Seeding twice leaves only the second fixture; a seeded file streams its declared size."""
    store = Store(tmp_path / "s.sqlite", reset=True)
    store.seed(parse_fixture({"runs": list(synthetic_runs(3, entity="e", project="p"))}))
    store.seed(
        parse_fixture(
            {
                "runs": [
                    {
                        "entity": "e",
                        "project": "q",
                        "id": "r",
                        "files": [{"name": "big.bin", "size": 3_000_000}],
                    }
                ]
            }
        )
    )
    assert store.project("e", "p") is None
    found = store.file_content("e", "q", "r", "big.bin")
    assert found is not None
    size, chunks = found
    data = b"".join(chunks)
    assert size == len(data) == 3_000_000
    second = store.file_content("e", "q", "r", "big.bin")
    assert second is not None
    assert b"".join(second[1]) == data
    store.close()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        # a number against a stored time compared as SQL text-vs-integer and matched every run
        ('{"createdAt": {"$gt": 1700000000}}', "is not a time"),
        ('{"created_at": 1700000000}', "is not a time"),
        ('{"heartbeatAt": {"$lte": 1.5}}', "is not a time"),
        # W&B's key for the summary is summary_metrics.*; summary.* is an error there
        ('{"summary.epoch": 90}', "summary_metrics.epoch"),
    ],
)
def test_filter_mistakes_that_matched_silently_are_errors(bad: str, says: str) -> None:
    """A numeric time operand and a summary.* key are refused with a message saying what to write."""
    with pytest.raises(FilterError, match=re.escape(says)):
        compile_filter(bad)


def test_order_by_summary_key_needs_summary_metrics() -> None:
    """order=summary.X is refused like the filter key; summary_metrics.X sorts."""
    with pytest.raises(FilterError):
        compile_order("-summary.acc")
    assert compile_order("-summary_metrics.acc").descending


def test_preempting_and_preempted_are_run_states(tmp_path: Path) -> None:
    """The fixture accepts the client's two extra states and a state filter finds them."""
    store = Store(tmp_path / "s.sqlite", reset=True)
    try:
        store.seed(
            parse_fixture(
                {
                    "runs": [
                        {"entity": "e", "project": "p", "id": "a", "state": "preempting"},
                        {"entity": "e", "project": "p", "id": "b", "state": "preempted"},
                        {"entity": "e", "project": "p", "id": "c", "state": "finished"},
                    ]
                }
            )
        )
        project = store.project("e", "p")
        assert project is not None
        assert store.count_runs(project["id"], '{"state": {"$in": ["preempting", "preempted"]}}') == 2
    finally:
        store.close()
