"""The real wandb client reads through the emulator: viewer, listings, pages, fields, filters, order."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import wandb

from reconcile.emulator.testing import EmulatorHandle
from tests.emulator.conftest import names

pytestmark = pytest.mark.integration


def test_viewer_answers_api_construction_and_default_entity(api: Any) -> None:
    """wandb.Api passes its Viewer check and resolves the fixture's viewer entity."""
    assert api.default_entity == "acme"
    assert api.viewer.username == "alice"


def test_runs_listing_spans_three_pages(api: Any, emu: EmulatorHandle) -> None:
    """9 runs with per_page=4 arrive in exactly 3 Runs requests, each run once, in created order."""
    api.flush()
    emu.reset_stats()
    runs = api.runs("acme/vision", per_page=4)
    ids = names(runs)
    assert ids == [
        "abc123",
        "merge1",
        "replace1",
        "summary1",
        "tags1",
        "files1",
        "upload1",
        "meta1",
        "spare1",
    ]
    assert emu.stats()["operations"]["Runs"] == 3
    assert len(runs) == 9


def test_runs_lazy_fragment_loads_config_with_one_run_query(api: Any, emu: EmulatorHandle) -> None:
    """A lazy listing has no config until touched; touching it sends one full Run query."""
    api.flush()
    run = next(iter(api.runs("acme/vision", per_page=2)))
    emu.reset_stats()
    assert run.config["lr"] == 0.1
    assert emu.stats()["operations"] == {"Run": 1}


def test_runs_full_fragment_carries_config_and_summary(api: Any, emu: EmulatorHandle) -> None:
    """lazy=False listings bring config and summary with the page, no extra request."""
    api.flush()
    runs = list(api.runs("acme/filters", per_page=10, lazy=False))
    emu.reset_stats()
    by_id = {run.id: run for run in runs}
    assert by_id["f2"].config["model"] == "vit"
    assert by_id["f3"].summary_metrics == {"val_acc": 0.9}
    assert emu.stats()["operations"] == {}


def test_run_exposes_every_field_reconcile_reads(api: Any) -> None:
    """api.run returns id, storage id, name, state, config, summary, tags, group, job type, notes, user."""
    api.flush()
    run = api.run("acme/vision/abc123")
    assert run.id == "abc123"
    assert base64.b64decode(run.storage_id).decode() == "Run:v1:abc123:vision:acme"
    assert run.name == "brave-river-1"
    assert run.state == "finished"
    assert run.config == {"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}}
    assert run.rawconfig["_wandb"] == {"cli_version": "0.31.0"}
    assert run.summary_metrics == {"val_acc": 0.91, "loss": 0.2, "nested": {"p": 1}}
    assert run.tags == ["wip", "baseline"]
    assert (run.group, run.job_type, run.notes, run.description) == (
        "g1",
        "train",
        "first run",
        "a description",
    )
    assert run.created_at == "2026-01-02T03:04:05"
    assert run.heartbeat_at == "2026-01-02T05:00:00"
    assert run.user.username == "alice"
    assert run.sweep_name == "sw1"
    assert isinstance(run._project_internal_id, int)


def test_run_raw_fields_have_w_and_b_wire_types(api: Any) -> None:
    """config/summaryMetrics are JSON strings in the stored {value, desc} form; projectId is an Int."""
    data = api._service_api.execute_graphql(
        """query Run($project: String!, $entity: String!, $name: String!) {
             project(name: $project, entityName: $entity) { internalId run(name: $name) {
               projectId config summaryMetrics historyKeys } } }""",
        {"entity": "acme", "project": "vision", "name": "abc123"},
    )
    run = data["project"]["run"]
    assert isinstance(run["projectId"], int)
    assert json.loads(run["config"])["lr"] == {"value": 0.1, "desc": None}
    assert json.loads(run["summaryMetrics"])["loss"] == 0.2
    assert isinstance(run["historyKeys"], dict)
    internal = base64.b64decode(data["project"]["internalId"]).decode()
    assert internal == f"ProjectInternalId:{run['projectId']}"


def test_missing_run_raises_comm_error(api: Any) -> None:
    """api.run on an unknown id fails with wandb's CommError, as against W&B."""
    api.flush()
    with pytest.raises(wandb.errors.CommError):
        api.run("acme/vision/nope")


def test_unknown_graphql_field_is_a_validation_error(api: Any) -> None:
    """A document selecting a field W&B does not have is refused, not answered with null."""
    with pytest.raises(Exception, match="Cannot query field 'bogus'"):
        api._service_api.execute_graphql("query Q { viewer { id bogus } }")


FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"state": "finished"}, {"f1", "f5"}),
    ({"name": "f3"}, {"f3"}),
    ({"displayName": "beta"}, {"f2"}),
    ({"display_name": {"$regex": "^(al|ga)"}}, {"f1", "f3"}),
    ({"config.model": {"$eq": "resnet50"}}, {"f1", "f3"}),
    ({"state": {"$ne": "finished"}}, {"f2", "f3", "f4"}),
    ({"summary_metrics.val_acc": {"$gt": 0.6}}, {"f2", "f3"}),
    ({"summary_metrics.val_acc": {"$gte": 0.6}}, {"f2", "f3", "f5"}),
    ({"summary_metrics.val_acc": {"$lt": 0.6}}, {"f1"}),
    ({"summary_metrics.val_acc": {"$lte": 0.6}}, {"f1", "f5"}),
    ({"config.model": {"$in": ["vit", "mlp"]}}, {"f2", "f4", "f5"}),
    ({"config.model": {"$nin": ["vit", "mlp"]}}, {"f1", "f3"}),
    ({"config.batch": {"$exists": True}}, {"f1", "f2", "f3"}),
    ({"config.batch": {"$exists": False}}, {"f4", "f5"}),
    ({"summary_metrics.val_acc": {"$exists": False}}, {"f4"}),
    ({"$and": [{"tags": "a"}, {"config.model": "vit"}]}, {"f5"}),
    ({"$or": [{"group": "g2"}, {"jobType": "eval"}]}, {"f2", "f3", "f5"}),
    ({"$nor": [{"state": "finished"}, {"state": "running"}]}, {"f2", "f3"}),
    ({"config.lr": 0.1}, {"f1", "f4"}),  # the string "0.1" of f5 is another type
    ({"config.lr.value": 0.1}, {"f1", "f4"}),
    ({"config.opt.name": "sgd"}, {"f1"}),
    ({"createdAt": {"$gte": "2026-01-03"}}, {"f3", "f4", "f5"}),
    ({"created_at": {"$lt": "2026-01-02T00:00:00Z"}}, {"f1"}),
    ({"tags": {"$in": ["c", "b"]}}, {"f1", "f2", "f4"}),
    ({"tags": {"$nin": ["a", "b"]}}, {"f3", "f4"}),
    ({"group": None}, {"f4"}),
    # a list is an exact array match, whatever the stored JSON's spacing (issue 15)
    ({"tags": ["a", "b"]}, {"f1"}),
    ({"tags": ["b", "a"]}, set()),
    ({"tags": []}, {"f3"}),
    ({}, {"f1", "f2", "f3", "f4", "f5"}),
]


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES, ids=[json.dumps(c[0]) for c in FILTER_CASES])
def test_runs_filter_operator_selects_the_right_runs(
    api: Any, filters: dict[str, Any], expected: set[str]
) -> None:
    """Each supported Mongo operator and key selects exactly the matching runs, and runCount agrees."""
    api.flush()
    runs = api.runs("acme/filters", filters=filters, per_page=2)
    assert set(names(runs)) == expected
    assert len(runs) == len(expected)


@pytest.mark.parametrize(
    "filters",
    [
        {"bogus": 1},
        {"state": {"$near": 1}},
        {"$where": "1"},
        {"config.opt": {"name": "sgd"}},
        {"$and": []},
        {"summary.val_acc": 0.9},
    ],
)
def test_runs_unknown_filter_is_an_error_not_a_wrong_answer(api: Any, filters: dict[str, Any]) -> None:
    """A filter the emulator does not understand fails the listing with a GraphQL error."""
    api.flush()
    with pytest.raises(Exception, match=r"unsupported|not supported|non-empty"):
        list(api.runs("acme/filters", filters=filters))


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("+created_at", ["f1", "f2", "f3", "f4", "f5"]),
        ("-created_at", ["f5", "f4", "f3", "f2", "f1"]),
        ("+summary_metrics.val_acc", ["f4", "f1", "f5", "f2", "f3"]),
        ("-summary_metrics.val_acc", ["f3", "f2", "f5", "f1", "f4"]),
        # Numbers before strings; the tie f1/f4 on 0.1 is broken by creation order, across a page edge.
        ("+config.lr.value", ["f3", "f2", "f1", "f4", "f5"]),
        ("-config.lr", ["f5", "f4", "f1", "f2", "f3"]),
    ],
)
def test_runs_order_sorts_across_pages(api: Any, order: str, expected: list[str]) -> None:
    """order ascending/descending on time, config and summary keys, stable over 2-run pages."""
    api.flush()
    assert names(api.runs("acme/filters", order=order, per_page=2)) == expected


def test_runs_numeric_created_at_is_an_error_not_every_run(api: Any) -> None:
    """{"createdAt": {"$gt": 1700000000}} used to match every run; it is refused, saying what to give."""
    api.flush()
    with pytest.raises(Exception, match="is not a time"):
        list(api.runs("acme/filters", filters={"createdAt": {"$gt": 1700000000}}))


def test_unknown_project_raises_value_error(api: Any) -> None:
    """A listing of a project that does not exist fails as the client does against W&B."""
    api.flush()
    with pytest.raises(ValueError, match="Could not find project"):
        list(api.runs("acme/no-such-project"))


def test_empty_project_lists_nothing(api: Any) -> None:
    """A fixture project without runs exists and lists no runs."""
    api.flush()
    assert names(api.runs("acme/empty")) == []


def test_runs_filter_by_many_names_in_one_listing(api: Any) -> None:
    """A batched re-read by run ids ({"name": {"$in": [...]}}) returns exactly those runs."""
    api.flush()
    wanted = ["f2", "f4", "nope"]
    assert set(names(api.runs("acme/filters", filters={"name": {"$in": wanted}}))) == {"f2", "f4"}
    api.flush()
    assert set(names(api.runs("acme/filters", filters={"name": {"$nin": wanted}}))) == {"f1", "f3", "f5"}
