"""Apply of artifact version deletions against the memory backend: the alias re-check (stale), the
deletions, backups, and a resumed apply that does not delete twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reconcile.backend.memory import MemoryBackend
from reconcile.models import Change, ChangeKind, ChangeOp, LiveArtifact
from tests.unit.apply_helpers import T0, live_run, make_plan, run_plan
from tests.unit.test_apply_executor import _apply, _calls


def version(index: int, *, aliases: tuple[str, ...] = (), size: int = 5) -> LiveArtifact:
    """Version ``index`` of ``ckpt``."""
    return LiveArtifact(
        id=f"a{index}",
        collection="ckpt",
        type="model",
        version_index=index,
        size=size,
        created_at=T0,
        aliases=aliases,
    )


def delete(artifact: LiveArtifact) -> Change:
    """Delete one artifact version."""
    return Change(
        ChangeKind.ARTIFACT, ChangeOp.DELETE, (artifact.name,), artifact, None, ("r",), artifact=artifact
    )


def setup(*stored: LiveArtifact) -> tuple[MemoryBackend, object]:
    """A run that logged ``stored``; a plan deleting v0 and v1."""
    run = dataclasses.replace(live_run("r1"), artifacts=(version(0), version(1), *stored))
    backend = MemoryBackend([run])
    # The planner fingerprints no artifact field: the alias re-check guards the versions.
    planned = dataclasses.replace(run_plan(run, []), changes=(delete(version(0)), delete(version(1))))
    plan = make_plan(planned)
    return backend, plan


def test_apply_deletes_the_planned_versions_and_backs_them_up(tmp_path: Path) -> None:
    """Both versions go (one listing, two deletes), each downloaded first with --backup-dir."""
    backend, plan = setup(version(2, aliases=("latest",)))
    result, _ = _apply(plan, backend, tmp_path, backup_dir=tmp_path / "b")  # type: ignore[arg-type]
    assert result.ok
    assert (result.versions_deleted, result.version_bytes_freed) == (2, 10)
    assert [a.name for a in backend.run("acme", "vision", "r1").artifacts or ()] == ["ckpt:v2"]
    assert _calls(backend, "delete_artifact") == [
        ("acme/vision/r1", "ckpt:v0", False),
        ("acme/vision/r1", "ckpt:v1", False),
    ]
    assert (tmp_path / "b/acme/vision/r1/artifacts/ckpt/v0/ckpt.bin").stat().st_size == 5
    assert "artifact versions deleted" in result.summary_line


def test_a_version_that_gained_an_alias_makes_the_run_stale(tmp_path: Path) -> None:
    """v1 was promoted after the plan: nothing of the run is deleted, the run is reported stale."""
    backend, plan = setup()
    stored = backend.run("acme", "vision", "r1")
    promoted = (version(0), version(1, aliases=("production",)))
    backend.runs[stored.storage_id] = dataclasses.replace(stored, artifacts=promoted)
    result, _ = _apply(plan, backend, tmp_path)  # type: ignore[arg-type]
    assert not result.ok
    assert result.stale == [
        ("acme/vision/r1", "artifact version ckpt:v1 gained the alias production since the plan; plan again")
    ]
    assert _calls(backend, "delete_artifact") == []


def test_a_version_already_gone_is_not_deleted_again(tmp_path: Path) -> None:
    """v0 was deleted by someone else (or an earlier, killed apply): only v1 is sent."""
    backend, plan = setup()
    stored = backend.run("acme", "vision", "r1")
    backend.runs[stored.storage_id] = dataclasses.replace(stored, artifacts=(version(1),))
    result, _ = _apply(plan, backend, tmp_path)  # type: ignore[arg-type]
    assert result.ok
    assert _calls(backend, "delete_artifact") == [("acme/vision/r1", "ckpt:v1", False)]
