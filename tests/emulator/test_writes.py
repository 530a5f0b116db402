"""UpsertBucket semantics through the real client: config merge vs replace, summary and tags replace."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from wandb.apis.public.runs import RUN_FRAGMENT

from reconcile.emulator.store import run_storage_id
from reconcile.emulator.testing import EmulatorHandle

pytestmark = pytest.mark.integration

SUMMARY_ONLY = """mutation UpsertBucket($id: String, $summaryMetrics: JSONString) {
  upsertBucket(input: { id: $id, summaryMetrics: $summaryMetrics }) { bucket { id } inserted } }"""


def _reread(api: Any, path: str) -> Any:
    api.flush()
    return api.run(path)


def _edit_like_issue_11055(run: Any) -> None:
    # wandb/wandb#11055: stored {b:1, a:{a:1}}; delete b and a locally, set c and a={b:2}.
    del run.config["b"]
    del run.config["a"]
    run.config["c"] = 2
    run.config["a"] = {"b": 2}
    run.update()


def test_update_config_deep_merges_by_default(api: Any) -> None:
    """Current W&B keeps keys absent from the sent config and merges nested dicts (wandb/wandb#11055)."""
    _edit_like_issue_11055(_reread(api, "acme/vision/merge1"))
    assert _reread(api, "acme/vision/merge1").config == {"b": 1, "c": 2, "a": {"a": 1, "b": 2}}


def test_update_config_replaces_with_config_writes_replace(api: Any, emu: EmulatorHandle) -> None:
    """With --config-writes replace the sent config is the whole stored config (older servers, PR #8306)."""
    emu.set_faults(config_writes="replace")
    try:
        _edit_like_issue_11055(_reread(api, "acme/vision/replace1"))
    finally:
        emu.set_faults(config_writes="merge")
    assert _reread(api, "acme/vision/replace1").config == {"c": 2, "a": {"b": 2}}


def test_summary_update_replaces_the_whole_summary(api: Any) -> None:
    """summaryMetrics replaces: a key deleted locally is gone after a re-read."""
    run = _reread(api, "acme/vision/summary1")
    del run.summary["drop"]
    run.summary["new"] = 3
    run.summary.update()
    assert _reread(api, "acme/vision/summary1").summary_metrics == {"keep": 1, "new": 3}


def test_update_replaces_tags_and_sets_metadata_fields(api: Any) -> None:
    """tags replace the list; name, group and job type are set; "" clears notes."""
    run = _reread(api, "acme/vision/tags1")
    run.tags = ["y", "z"]
    run.name = "renamed"
    run.group = "new-group"
    run.job_type = "eval"
    run.notes = ""
    run.update()
    after = _reread(api, "acme/vision/tags1")
    assert after.tags == ["y", "z"]
    assert (after.name, after.group, after.job_type, after.notes) == ("renamed", "new-group", "eval", "")


def test_null_input_fields_leave_the_run_unchanged(api: Any, emu: EmulatorHandle) -> None:
    """A summary-only UpsertBucket leaves config, tags and names alone and answers inserted: false."""
    before = _reread(api, "acme/vision/meta1")
    answer = api._service_api.execute_graphql(
        SUMMARY_ONLY,
        {"id": run_storage_id("acme", "vision", "meta1"), "summaryMetrics": json.dumps({"s": 1})},
    )
    assert answer["upsertBucket"]["bucket"]["id"] == before.storage_id
    assert answer["upsertBucket"]["inserted"] is False
    after = _reread(api, "acme/vision/meta1")
    assert (after.config, after.tags, after.name, after.summary_metrics) == (
        {"k": 1},
        ["t"],
        "meta1",
        {"s": 1},
    )
    last = emu.mutations()[-1]
    assert last["operation"] == "UpsertBucket"
    assert last["run"] == "acme/vision/meta1"
    assert last["fields"] == {"summaryMetrics": {"s": 1}}


def test_upsert_bucket_answers_with_the_run_fragment(api: Any) -> None:
    """run.update's document gets the updated bucket back with RunFragment fields."""
    mutation = (
        """mutation UpsertBucket($id: String!, $config: JSONString!, $notes: String) {
      upsertBucket(input: {id: $id, config: $config, notes: $notes}) { bucket { ...RunFragment } inserted } }
    """
        + RUN_FRAGMENT
    )
    answer = api._service_api.execute_graphql(
        mutation,
        {
            "id": run_storage_id("acme", "vision", "spare1"),
            "config": json.dumps({"n": {"value": 5, "desc": None}}),
            "notes": "hi",
            "entity": "acme",
            "project": "vision",
            "name": "spare1",
        },
    )  # undeclared extras are ignored
    bucket = answer["upsertBucket"]["bucket"]
    assert json.loads(bucket["config"]) == {"n": {"value": 5, "desc": None}}
    assert bucket["notes"] == "hi"
    assert bucket["name"] == "spare1"


def test_upsert_bucket_with_unknown_run_id_is_an_error(api: Any) -> None:
    """Updating a storage id that names no run fails instead of creating one."""
    with pytest.raises(Exception, match="not found"):
        api._service_api.execute_graphql(
            SUMMARY_ONLY, {"id": run_storage_id("acme", "vision", "ghost"), "summaryMetrics": "{}"}
        )


def test_every_update_is_in_the_mutation_log_in_order(api: Any, emu: EmulatorHandle) -> None:
    """run.update() logs the metadata UpsertBucket and then the summary UpsertBucket, with field values."""
    start = len(emu.mutations())
    run = _reread(api, "acme/vision/spare1")
    run.config["lr"] = 0.3
    run.update()
    entries = emu.mutations()[start:]
    assert [e["operation"] for e in entries] == ["UpsertBucket", "UpsertBucket"]
    assert entries[0]["fields"]["config"]["lr"] == {"value": 0.3, "desc": None}
    assert set(entries[1]["fields"]) == {"summaryMetrics"}
    assert entries[0]["seq"] < entries[1]["seq"]


def test_concurrent_config_merges_lose_no_update(api: Any, emu: EmulatorHandle) -> None:
    """20 UpsertBuckets from 10 threads (the client's concurrency) all land: merges of distinct keys."""
    mutation = """mutation UpsertBucket($id: String!, $config: JSONString!) {
      upsertBucket(input: {id: $id, config: $config}) { bucket { id } } }"""
    start = len(emu.mutations())

    def write(i: int) -> None:
        run_id = f"f{i % 5 + 1}"
        config = json.dumps({f"k{i}": {"value": i, "desc": None}})
        api._service_api.execute_graphql(
            mutation, {"id": run_storage_id("acme", "filters", run_id), "config": config}
        )

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(write, range(20)))
    assert len(emu.mutations()) == start + 20
    for n in range(5):
        config = _reread(api, f"acme/filters/f{n + 1}").config
        assert {k for k in config if k.startswith("k")} == {f"k{i}" for i in range(20) if i % 5 == n}
