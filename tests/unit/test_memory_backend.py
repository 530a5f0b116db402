"""Unit tests of reconcile.backend.memory: W&B's write semantics over dicts."""

from __future__ import annotations

import inspect
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from reconcile.backend import Backend, RunUpdate
from reconcile.backend.memory import MemoryBackend, deep_merge, matches
from reconcile.backend.wandb_api import WandbBackend
from reconcile.errors import NotFound, RetryableError
from reconcile.models import ConfigWrites, LiveFile, LiveRun

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def make_run(run_id: str, day: int = 1, **fields: object) -> LiveRun:
    """A finished run in ent/proj created on 2024-01-<day>."""
    base: dict[str, object] = {
        "entity": "ent", "project": "proj", "id": run_id, "storage_id": f"S-{run_id}",
        "name": f"name-{run_id}", "state": "finished", "created_at": T0.replace(day=day),
        "config": {"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}, "_wandb": {"v": 1}},
        "summary": {"acc": 0.5}, "tags": ("a",),
    }
    base.update(fields)
    return LiveRun(**base)  # type: ignore[arg-type]


def protocol_methods(protocol: type) -> dict[str, Any]:
    """The methods a Protocol declares (its own, not object's or Protocol's machinery)."""
    return {name: value for name, value in vars(protocol).items()
            if callable(value) and not name.startswith("_")}


@pytest.mark.parametrize("implementation", [MemoryBackend, WandbBackend])
def test_backend_implements_every_protocol_method_with_its_signature(implementation: type) -> None:
    """Each Backend method exists on the implementation with the same parameters (names, kinds,
    defaults) and the same resolved type hints; base_url is a str attribute once constructed."""
    methods = protocol_methods(Backend)
    assert {"iter_runs", "get_runs", "list_files", "update_run", "delete_files", "download_file",
            "upload_file", "close"} <= set(methods)
    for name, declared in methods.items():
        ours = getattr(implementation, name, None)
        assert callable(ours), f"{implementation.__name__} lacks {name}"
        want, got = inspect.signature(declared), inspect.signature(ours)
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in want.parameters.values()], name
        assert typing.get_type_hints(ours) == typing.get_type_hints(declared), name
    assert typing.get_type_hints(Backend) == {"base_url": str}


def test_memory_backend_base_url() -> None:
    """The in-memory backend says where it is: memory://."""
    assert MemoryBackend().base_url == "memory://"


def test_update_run_merges_config_and_replaces_summary() -> None:
    """Default MERGE: nested config deep-merged, untouched keys kept; summary replaced whole."""
    backend = MemoryBackend([make_run("r1")])
    backend.update_run(RunUpdate("S-r1", config={"opt": {"beta": 0.99}, "new": 1}, summary={"loss": 2}))
    run = backend.run("ent", "proj", "r1")
    assert run.config == {"lr": 0.1, "opt": {"name": "adam", "beta": 0.99}, "_wandb": {"v": 1}, "new": 1}
    assert run.summary == {"loss": 2}


def test_update_run_replace_semantics_replaces_config() -> None:
    """REPLACE: the sent config is the whole stored config."""
    backend = MemoryBackend([make_run("r1")], config_writes=ConfigWrites.REPLACE)
    backend.update_run(RunUpdate("S-r1", config={"lr": 0.2}))
    assert backend.run("ent", "proj", "r1").config == {"lr": 0.2}


def test_update_run_leaves_unset_fields_unchanged() -> None:
    """None fields are not written; set ones are, including an empty tag list."""
    backend = MemoryBackend([make_run("r1", group="g", notes="n")])
    backend.update_run(RunUpdate("S-r1", display_name="renamed", tags=()))
    run = backend.run("ent", "proj", "r1")
    assert (run.name, run.tags, run.group, run.notes) == ("renamed", (), "g", "n")
    assert run.config["lr"] == 0.1
    assert run.summary == {"acc": 0.5}


def test_update_run_unknown_storage_id_is_not_found() -> None:
    """Writing a run that does not exist raises NotFound."""
    with pytest.raises(NotFound):
        MemoryBackend().update_run(RunUpdate("nope", notes="x"))


def test_reads_are_copies_not_views() -> None:
    """Mutating what a read returned does not change the store."""
    backend = MemoryBackend([make_run("r1")])
    got = backend.get_runs("ent", "proj", ["r1"])["r1"]
    got.config["opt"]["name"] = "sgd"  # type: ignore[index]
    assert backend.run("ent", "proj", "r1").config["opt"]["name"] == "adam"


def test_get_runs_returns_only_present_ids_without_files() -> None:
    """Absent ids are missing from the answer; listings never carry files."""
    f = LiveFile(id="f1", name="a.txt", size=1, updated_at=T0)
    backend = MemoryBackend([make_run("r1", files=(f,)), make_run("r2")])
    got = backend.get_runs("ent", "proj", ["r1", "missing"])
    assert set(got) == {"r1"}
    assert got["r1"].files is None


def test_iter_runs_filters_and_orders_by_creation() -> None:
    """Filters with $in, tags, config paths and $and select runs, oldest first."""
    backend = MemoryBackend([make_run("r3", day=3, tags=("b",)), make_run("r1", day=1),
                             make_run("r2", day=2, config={"lr": 0.3}), make_run("x", project="other")])
    assert [r.id for r in backend.iter_runs("ent", "proj")] == ["r1", "r2", "r3"]
    assert [r.id for r in backend.iter_runs("ent", "proj", {"tags": "b"})] == ["r3"]
    assert [r.id for r in backend.iter_runs("ent", "proj", {"config.lr": {"$gte": 0.2}})] == ["r2"]
    assert [r.id for r in backend.iter_runs("ent", "proj", {"config.lr.value": 0.3})] == ["r2"]
    both = {"$and": [{"name": {"$in": ["r1", "r3"]}}, {"tags": {"$nin": ["b"]}}]}
    assert [r.id for r in backend.iter_runs("ent", "proj", both)] == ["r1"]


def test_matches_exists_regex_and_or() -> None:
    """$exists, $regex and $or behave like W&B's MongoDB-style filters."""
    run = make_run("r1")
    assert matches(run, {"config.opt.name": {"$exists": True}})
    assert not matches(run, {"config.missing": {"$exists": True}})
    assert matches(run, {"displayName": {"$regex": "^name-"}})
    assert matches(run, {"$or": [{"state": "running"}, {"state": "finished"}]})
    assert not matches(run, {"$nor": [{"state": "finished"}]})


def test_files_delete_is_idempotent_and_upload_download_round_trip(tmp_path: Path) -> None:
    """Deleting twice is fine; an uploaded file downloads byte for byte."""
    f = LiveFile(id="f1", name="ckpt/a.pt", size=3, updated_at=T0)
    backend = MemoryBackend()
    backend.add_run(make_run("r1", files=(f,)), contents={"ckpt/a.pt": b"abc"})
    run = backend.run("ent", "proj", "r1")
    backend.download_file(run, f, tmp_path / "a.pt")
    assert (tmp_path / "a.pt").read_bytes() == b"abc"
    backend.delete_files(run, ["f1"])
    backend.delete_files(run, ["f1"])
    assert backend.list_files(run) == ()
    backend.upload_file(run, tmp_path / "a.pt", "ckpt/a.pt")
    (restored,) = backend.list_files(run)
    assert (restored.name, restored.size) == ("ckpt/a.pt", 3)
    backend.download_file(run, restored, tmp_path / "b.pt")
    assert (tmp_path / "b.pt").read_bytes() == b"abc"


def test_fail_next_injects_errors_and_records_calls() -> None:
    """Injected errors are raised by the next calls in order; every call is recorded."""
    backend = MemoryBackend([make_run("r1")])
    backend.fail_next(RetryableError("503", status=503))
    with pytest.raises(RetryableError):
        backend.update_run(RunUpdate("S-r1", notes="x"))
    backend.update_run(RunUpdate("S-r1", notes="y"))
    assert [name for name, _ in backend.calls] == ["update_run", "update_run"]
    assert backend.run("ent", "proj", "r1").notes == "y"


def test_deep_merge_replaces_non_dicts() -> None:
    """Dicts merge recursively; a scalar over a dict (or a list) replaces it."""
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]}) == {
        "a": {"b": 3, "c": 2}, "l": [2]}
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
