"""Run files through the real client: names/pattern over pages, run.file, batched delete, upload/download."""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import wandb
from wandb.apis.public.files import File

from reconcile.emulator.store import deterministic_chunks
from reconcile.emulator.testing import EmulatorHandle

pytestmark = pytest.mark.integration


def _client_delete_document() -> str:
    """The deleteFiles mutation exactly as wandb's File.delete writes it."""
    match = re.search(r'"""\s*(mutation deleteFiles.*?)"""', inspect.getsource(File.delete), re.DOTALL)
    assert match, "wandb's File.delete no longer carries a deleteFiles document"
    return match.group(1)


def _run(api: Any, path: str) -> Any:
    api.flush()
    return api.run(path)


def test_files_by_names_span_pages(api: Any, emu: EmulatorHandle) -> None:
    """run.files(names=[...]) returns exactly those files, 2 per RunFiles request."""
    run = _run(api, "acme/vision/files1")
    wanted = ["ckpt-03.ckpt", "ckpt-11.ckpt", "output.log", "media/images/img-1.png", "absent.bin"]
    emu.reset_stats()
    got = [f.name for f in run.files(names=wanted, per_page=2)]
    assert sorted(got) == sorted(wanted[:4])
    assert emu.stats()["operations"]["RunFiles"] == 2


def test_files_by_like_pattern_span_pages_and_len_is_total(api: Any, emu: EmulatorHandle) -> None:
    """pattern uses SQL LIKE; len() is the run's total fileCount, as the client reports it (protocol §6)."""
    run = _run(api, "acme/vision/files1")
    emu.reset_stats()
    files = run.files(pattern="%.ckpt", per_page=7)
    got = [f.name for f in files]
    assert got == [f"ckpt-{i:02d}.ckpt" for i in range(20)]
    assert emu.stats()["operations"]["RunFiles"] == 3
    assert len(files) == 25
    assert [f.name for f in run.files(pattern="media/images/img-_.png")] == [
        f"media/images/img-{i}.png" for i in range(3)
    ]


def test_run_file_returns_one_file_with_metadata(api: Any) -> None:
    """run.file(name) finds the file with its size, time, url and id."""
    file = _run(api, "acme/vision/abc123").file("checkpoint-001.pt")
    assert (file.name, file.size, file.updated_at) == ("checkpoint-001.pt", 120000, "2026-01-02T04:00:00")
    assert file.url.endswith("/files/acme/vision/abc123/checkpoint-001.pt")
    assert file.id


def test_run_file_missing_raises_comm_error(api: Any) -> None:
    """run.file on an absent name fails as against W&B ("list index out of range")."""
    with pytest.raises(wandb.errors.CommError):
        _run(api, "acme/vision/abc123").file("nope.bin")


def test_seeded_file_downloads_deterministic_bytes(api: Any, tmp_path: Path) -> None:
    """A seeded file without content downloads its declared size of deterministic bytes."""
    file = _run(api, "acme/vision/abc123").file("checkpoint-001.pt")
    file.download(root=str(tmp_path), replace=True).close()
    expected = b"".join(deterministic_chunks("acme/vision/abc123/checkpoint-001.pt", 120000))
    assert (tmp_path / "checkpoint-001.pt").read_bytes() == expected


def test_seeded_file_with_content_downloads_that_content(api: Any, tmp_path: Path) -> None:
    """A fixture file with `content` downloads exactly that content."""
    file = _run(api, "acme/vision/abc123").file("notes.txt")
    with file.download(root=str(tmp_path), replace=True) as handle:
        assert handle.read() == "hello from the fixture\n"
    assert file.size == len("hello from the fixture\n")


def test_twenty_files_deleted_in_one_delete_files_request(api: Any, emu: EmulatorHandle) -> None:
    """The client's deleteFiles document with 20 ids deletes all 20 in one request and one log entry."""
    run = _run(api, "acme/vision/files1")
    ckpts = list(run.files(pattern="%.ckpt", per_page=50))
    assert len(ckpts) == 20
    start = len(emu.mutations())
    emu.reset_stats()
    answer = api._service_api.execute_graphql(
        _client_delete_document(), {"files": [f.id for f in ckpts], "projectId": run._project_internal_id}
    )
    assert answer == {"deleteFiles": {"success": True}}
    assert emu.stats()["operations"] == {"deleteFiles": 1}
    entries = emu.mutations()[start:]
    assert len(entries) == 1
    assert entries[0]["operation"] == "deleteFiles"
    assert entries[0]["run"] == "acme/vision/files1"
    assert sorted(entries[0]["fields"]["files"]) == sorted(f.name for f in ckpts)
    remaining = [f.name for f in _run(api, "acme/vision/files1").files()]
    assert remaining == [
        "config.yaml",
        "media/images/img-0.png",
        "media/images/img-1.png",
        "media/images/img-2.png",
        "output.log",
    ]
    # Deleting again is an idempotent success (W&B's behaviour is unknown, protocol §14.4).
    again = api._service_api.execute_graphql(
        _client_delete_document(), {"files": [f.id for f in ckpts], "projectId": run._project_internal_id}
    )
    assert again == {"deleteFiles": {"success": True}}


def test_delete_files_with_another_projects_id_deletes_nothing(api: Any) -> None:
    """Ids outside the given projectId are refused and no file is deleted."""
    run = _run(api, "acme/vision/abc123")
    file = run.file("notes.txt")
    other_project = _run(api, "acme/filters/f1")._project_internal_id
    with pytest.raises(Exception, match="do not belong to project"):
        api._service_api.execute_graphql(
            _client_delete_document(), {"files": [file.id], "projectId": other_project}
        )
    assert _run(api, "acme/vision/abc123").file("notes.txt").id == file.id


def test_file_delete_through_the_client(api: Any) -> None:
    """File.delete() (one id per call, the client's way) removes the file."""
    run = _run(api, "acme/vision/files1")
    run.file("media/images/img-0.png").delete()
    names = [f.name for f in _run(api, "acme/vision/files1").files()]
    assert "media/images/img-0.png" not in names
    assert "media/images/img-1.png" in names


def test_upload_then_download_round_trips_the_bytes(api: Any, emu: EmulatorHandle, tmp_path: Path) -> None:
    """run.upload_file stores the bytes (CreateRunFiles + PUT) and a download returns them unchanged."""
    payload = bytes(range(256)) * 300 + b"tail"
    root = tmp_path / "backup"
    (root / "media").mkdir(parents=True)
    (root / "media" / "restored.bin").write_bytes(payload)
    run = _run(api, "acme/vision/upload1")
    uploaded = run.upload_file(str(root / "media" / "restored.bin"), root=str(root))
    assert (uploaded.name, uploaded.size) == ("media/restored.bin", len(payload))
    assert uploaded.md5 == base64.b64encode(hashlib.md5(payload).digest()).decode()  # noqa: S324
    out = tmp_path / "out"
    _run(api, "acme/vision/upload1").file("media/restored.bin").download(root=str(out), replace=True).close()
    assert (out / "media" / "restored.bin").read_bytes() == payload
    ops = [e["operation"] for e in emu.mutations() if e["run"] == "acme/vision/upload1"]
    assert ops[-2:] == ["CreateRunFiles", "upload"]
