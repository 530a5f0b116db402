"""Apply of artifact version deletions against the memory backend: the alias re-check (stale), the
deletions, backups, and a resumed apply that does not delete twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconcile.backend.memory import MemoryBackend
from reconcile.errors import PlanError
from reconcile.models import Change, ChangeKind, ChangeOp, LiveArtifact, LiveRun, Plan, VersionTTL
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


def setup(*stored: LiveArtifact, backend_class: type[MemoryBackend] = MemoryBackend
          ) -> tuple[MemoryBackend, object]:
    """A run that logged ``stored``; a plan deleting v0 and v1."""
    run = dataclasses.replace(live_run("r1"), artifacts=(version(0), version(1), *stored))
    backend = backend_class([run])
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
    # In this apply's own folder (DIR/<apply id>/artifacts/...), never where another apply's go.
    [copy] = (tmp_path / "b").glob("*/artifacts/acme/vision/r1/ckpt/v0/ckpt.bin")
    assert copy.stat().st_size == 5
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


def set_ttl(artifact: LiveArtifact, before: str, after: str) -> Change:
    """Set one version's TTL from ``before`` to ``after`` (the spec's words)."""
    return Change(ChangeKind.ARTIFACT, ChangeOp.SET, (artifact.name, "ttl"), before, after, ("r",),
                  artifact=artifact)


def ttl_setup(stored_ttl: VersionTTL) -> tuple[MemoryBackend, Plan]:
    """A run that logged v0 (TTL none when planned; ``stored_ttl`` now); a plan setting it to 30d."""
    planned_version = dataclasses.replace(version(0), ttl=VersionTTL(None))
    run = dataclasses.replace(live_run("r1"), artifacts=(dataclasses.replace(version(0), ttl=stored_ttl),))
    backend = MemoryBackend([run])
    rp = dataclasses.replace(run_plan(run, []), changes=(set_ttl(planned_version, "none", "30d"),))
    return backend, make_plan(rp)


def test_apply_sets_the_ttl_reads_it_back_and_the_undo_plan_restores_it(tmp_path: Path) -> None:
    """One UpdateArtifact with the desired TTL; the read-back sees it; the undo plan sets `none` again."""
    backend, plan = ttl_setup(VersionTTL(None))
    result, _ = _apply(plan, backend, tmp_path)
    assert result.ok, (result.stale, result.failed, result.unconverged)
    assert _calls(backend, "set_artifact_ttl") == [("acme/vision/r1", "ckpt:v0", "30d")]
    [stored] = backend.run("acme", "vision", "r1").artifacts or ()
    assert stored.ttl == VersionTTL(30 * 86_400)
    assert result.ttls_set == 1 and "1 artifact version TTL set" in result.summary_line
    assert result.undo is not None
    [undo] = result.undo.runs[0].changes
    assert (undo.kind, undo.op, undo.key, undo.before, undo.after) == (
        ChangeKind.ARTIFACT, ChangeOp.SET, ("ckpt:v0", "ttl"), "30d", "none")


def test_a_ttl_changed_by_someone_else_since_the_plan_is_stale(tmp_path: Path) -> None:
    """The version's TTL is now 7d (not the planned none): nothing is written, the run is stale."""
    backend, plan = ttl_setup(VersionTTL(7 * 86_400))
    result, _ = _apply(plan, backend, tmp_path)
    assert result.stale == [("acme/vision/r1", "the TTL of artifact version ckpt:v0 changed since the plan "
                                               "(none -> 1w); plan again")]
    assert _calls(backend, "set_artifact_ttl") == []


def test_a_ttl_already_set_is_not_sent_again(tmp_path: Path) -> None:
    """An earlier, killed apply set it: the run finishes without a second UpdateArtifact."""
    backend, plan = ttl_setup(VersionTTL(30 * 86_400))
    result, _ = _apply(plan, backend, tmp_path)
    assert result.ok
    assert _calls(backend, "set_artifact_ttl") == []


def test_a_ttl_the_server_ignores_does_not_converge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers but keeps the old TTL (e.g. no permission to set TTLs, as W&B's docs warn) is
    reported: the read-back compares the TTL, exit 1."""
    backend, plan = ttl_setup(VersionTTL(None))
    monkeypatch.setattr(backend, "set_artifact_ttl", lambda *_args: None)
    result, _ = _apply(plan, backend, tmp_path)
    assert result.unconverged == [("acme/vision/r1", ("artifact.ckpt:v0.ttl",))]


class _LosesTheNextBackup(MemoryBackend):
    """Each delete also damages the backups on disk (same size, other bytes): a disk going bad."""

    backups: Path

    def delete_artifact(self, run: LiveRun, artifact: LiveArtifact, *, delete_aliases: bool) -> None:
        super().delete_artifact(run, artifact, delete_aliases=delete_aliases)
        for copy in self.backups.glob("*/artifacts/**/ckpt.bin"):
            copy.write_bytes(b"x" * copy.stat().st_size)


def test_each_version_is_deleted_only_after_its_backup_is_verified(tmp_path: Path) -> None:
    """Just before each deleteArtifact the version's backup is re-read and checked against the
    checksum recorded at download: v1's backup was damaged while v0 was deleted, so v1 is not
    deleted and the run fails naming the backup."""
    backend, plan = setup(backend_class=_LosesTheNextBackup)
    assert isinstance(backend, _LosesTheNextBackup)
    backend.backups = tmp_path / "b"
    result, _ = _apply(plan, backend, tmp_path, backup_dir=tmp_path / "b")  # type: ignore[arg-type]
    assert not result.ok
    assert _calls(backend, "delete_artifact") == [("acme/vision/r1", "ckpt:v0", False)]
    assert [a.name for a in backend.run("acme", "vision", "r1").artifacts or ()] == ["ckpt:v1"]
    [(run, reason)] = result.failed
    assert run == "acme/vision/r1"
    assert "the backup of acme/vision/r1's ckpt:v1" in reason and "the version was not deleted" in reason


def test_deleting_versions_needs_backup_dir_or_no_backup(tmp_path: Path) -> None:
    """A plan that deletes only artifact versions (no files) still needs the explicit choice: without
    --backup-dir or --no-backup nothing is read or written."""
    backend, plan = setup()
    with pytest.raises(PlanError, match=r"2 artifact versions \(10 bytes\).*--backup-dir DIR.*--no-backup"):
        _apply(plan, backend, tmp_path, no_backup=False)  # type: ignore[arg-type]
    assert backend.calls == []
