"""Artifacts through the real client: collections, versions with aliases and sizes, a version by
name and its files, a run's logged artifacts, delete with and without delete_aliases, TTL."""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import wandb

from reconcile.emulator.store import deterministic_chunks
from reconcile.emulator.testing import EmulatorHandle, running_emulator
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

FIXTURE = {
    "runs": [
        {
            "entity": "acme",
            "project": "vision",
            "id": "run1",
            "artifacts": [
                {
                    "name": "ckpt-run1",
                    "type": "model",
                    "size": 1000 + i,
                    "aliases": ["best"] if i == 5 else [],
                    "created_at": f"2026-01-{i + 1:02d}T00:00:00Z",
                }
                for i in range(8)
            ],
        },
        {
            "entity": "acme",
            "project": "vision",
            "id": "run2",
            "artifacts": [
                {
                    "name": "dataset",
                    "type": "dataset",
                    "files": [{"name": "a.csv", "content": "x,y\n1,2\n"}, {"name": "b/c.csv", "size": 3000}],
                }
            ],
        },
    ]
}


@pytest.fixture(scope="module")
def emu(module_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    """An emulator seeded with FIXTURE for this module (tests below run in order and mutate it)."""
    db = tmp_path_factory.mktemp("emulator") / "artifacts.sqlite"
    with running_emulator(seed=FIXTURE, db=db) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(emu: EmulatorHandle) -> Any:
    """A real wandb.Api pointed at the module's emulator."""
    return wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)


def test_collections_of_a_type(api: Any) -> None:
    """api.artifact_collections lists the collections of one type in the project."""
    assert [c.name for c in api.artifact_collections("acme/vision", "model")] == ["ckpt-run1"]
    assert [c.name for c in api.artifact_collections("acme/vision", "dataset")] == ["dataset"]


def test_versions_newest_first_with_aliases_and_sizes(api: Any) -> None:
    """api.artifacts: v7..v0; latest on the newest, best where the fixture put it; size = files' bytes."""
    got = [(a.version, a.aliases, a.size) for a in api.artifacts("model", "acme/vision/ckpt-run1")]
    assert got == [
        (f"v{i}", ["latest"] if i == 7 else ["best"] if i == 5 else [], 1000 + i) for i in range(7, -1, -1)
    ]


def test_paging_of_versions(api: Any, emu: EmulatorHandle) -> None:
    """per_page=3 over 8 versions takes 3 ProjectArtifacts requests."""
    emu.reset_stats()
    assert len(list(api.artifacts("model", "acme/vision/ckpt-run1", per_page=3))) == 8
    assert emu.stats()["operations"]["ProjectArtifacts"] == 3


def test_artifact_by_version_and_alias_and_its_files(api: Any, emu: EmulatorHandle) -> None:
    """api.artifact by :vN and by :alias; files() lists names and sizes; the URL serves the bytes."""
    art = api.artifact("acme/vision/dataset:v0")
    assert (art.type, art.size, art.aliases) == ("dataset", 8 + 3000, ["latest"])
    assert api.artifact("acme/vision/ckpt-run1:best").version == "v5"
    files = {f.name: f for f in art.files()}
    assert {n: f.size for n, f in files.items()} == {"a.csv": 8, "b/c.csv": 3000}
    with urllib.request.urlopen(files["a.csv"].direct_url) as response:
        assert response.read() == b"x,y\n1,2\n"
    with urllib.request.urlopen(files["b/c.csv"].direct_url) as response:
        body = response.read()
    version_pk = files["b/c.csv"].direct_url.split("/artifacts/")[1].split("/")[0]
    assert (
        hashlib.sha256(body).digest()
        == hashlib.sha256(b"".join(deterministic_chunks(f"artifact/{version_pk}/b/c.csv", 3000))).digest()
    )


def test_logged_artifacts_of_a_run(api: Any) -> None:
    """run.logged_artifacts lists the versions the run logged, oldest first."""
    run = api.run("acme/vision/run1")
    assert [a.name for a in run.logged_artifacts()] == [f"ckpt-run1:v{i}" for i in range(8)]


def test_ttl_set_and_read_back(api: Any) -> None:
    """artifact.ttl = ...; save() stores the TTL (W&B deletes the version when it expires)."""
    art = api.artifact("acme/vision/ckpt-run1:v1")
    assert art.ttl is None
    art.ttl = timedelta(days=7)
    art.save()
    assert api.artifact("acme/vision/ckpt-run1:v1").ttl == timedelta(days=7)


def test_delete_unaliased_then_aliased_refused_then_with_delete_aliases(
    api: Any, emu: EmulatorHandle
) -> None:
    """delete() of a version without aliases works; one with aliases is refused unless delete_aliases."""
    api.artifact("acme/vision/ckpt-run1:v2").delete()
    best = api.artifact("acme/vision/ckpt-run1:best")
    with pytest.raises(Exception, match="aliases"):
        best.delete()
    assert [a.version for a in api.artifacts("model", "acme/vision/ckpt-run1")] == [
        "v7",
        "v6",
        "v5",
        "v4",
        "v3",
        "v1",
        "v0",
    ]
    best.delete(delete_aliases=True)
    versions = {a.version: a.aliases for a in api.artifacts("model", "acme/vision/ckpt-run1")}
    assert versions == {"v7": ["latest"], "v6": [], "v4": [], "v3": [], "v1": [], "v0": []}
    deletes = [m for m in emu.mutations() if m["operation"] == "DeleteArtifact"]
    assert [(d["fields"]["artifact"], d["fields"]["aliases"]) for d in deletes] == [
        ("acme/vision/ckpt-run1:v2", []),
        ("acme/vision/ckpt-run1:v5", ["best"]),
    ]


def test_aliases_added_move_and_removed(api: Any) -> None:
    """aliases.append + save() adds an alias (moved from the version that had it); remove drops it."""
    v3 = api.artifact("acme/vision/ckpt-run1:v3")
    v3.aliases.append("candidate")
    v3.save()
    v4 = api.artifact("acme/vision/ckpt-run1:v4")
    v4.aliases.append("candidate")
    v4.save()
    assert api.artifact("acme/vision/ckpt-run1:v3").aliases == []
    assert api.artifact("acme/vision/ckpt-run1:candidate").version == "v4"
    v4 = api.artifact("acme/vision/ckpt-run1:v4")
    v4.aliases.remove("candidate")
    v4.save()
    assert api.artifact("acme/vision/ckpt-run1:v4").aliases == []


def test_the_docs_delete_loop_over_pages_misses_nothing(module_env: Path, tmp_path: Path) -> None:
    """`for v in api.artifacts(...): if not v.aliases: v.delete()` with 2 per page deletes every
    unaliased version: cursors hold the sort key, so deleting while paging skips nothing."""
    fixture = {
        "runs": [
            {
                "entity": "acme",
                "project": "vision",
                "id": "run1",
                "artifacts": [
                    {"name": "ckpt", "type": "model", "size": 10, "aliases": ["best"] if i == 4 else []}
                    for i in range(9)
                ],
            }
        ]
    }
    with running_emulator(seed=fixture, db=tmp_path / "loop.sqlite") as handle:
        api = wandb.Api(overrides={"base_url": handle.url}, api_key=TEST_API_KEY)
        for version in api.artifacts("model", "acme/vision/ckpt", per_page=2):
            if not version.aliases:
                version.delete()
        left = {a.version: a.aliases for a in api.artifacts("model", "acme/vision/ckpt")}
    assert left == {"v8": ["latest"], "v4": ["best"]}
