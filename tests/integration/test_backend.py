"""WandbBackend against the emulator, through the real wandb client and wandb-core."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reconcile.backend import RunUpdate
from reconcile.backend.retry import with_retries
from reconcile.backend.wandb_api import WandbBackend
from reconcile.errors import AuthError, BackendError, NotFound, RetryableError
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

Start = Callable[..., Any]


def seed_runs(count: int, **extra: Any) -> list[dict[str, Any]]:
    """``count`` runs r000.. in ent/proj, one minute apart, alternating tags and lr."""
    return [
        {"entity": "ent", "project": "proj", "id": f"r{i:03d}", "name": f"run-{i}",
         "created_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}", "tags": ["even" if i % 2 == 0 else "odd"],
         "config": {"lr": i / 100, "opt": {"name": "adam", "betas": [0.9, 0.99]}}, "summary": {"acc": i},
         **extra}
        for i in range(count)
    ]


@pytest.fixture
def connect(emulator: Start) -> Iterator[Callable[..., tuple[Any, WandbBackend]]]:
    """Start an emulator with a seed and connect a backend to it; closes the backends."""
    backends: list[WandbBackend] = []

    def start(seed: dict[str, Any], **flags: Any) -> tuple[Any, WandbBackend]:
        emu = emulator(seed=seed, api_key=TEST_API_KEY, **flags)
        backend = WandbBackend(emu.url, TEST_API_KEY)
        backends.append(backend)
        emu.reset_stats()
        return emu, backend

    yield start
    for backend in backends:
        backend.close()


def ops(emu: Any) -> dict[str, int]:
    """Operation counts since the last reset."""
    result: dict[str, int] = emu.stats()["operations"]
    return result


def test_iter_runs_streams_pages_and_parses_values_exactly(connect: Callable[..., Any]) -> None:
    """12 runs at 5 per page: 3 Runs requests, yielded as pages arrive (one page read ahead), values
    parsed exactly."""
    special = {"entity": "ent", "project": "proj", "id": "special", "created_at": "2025-06-01T12:00:00",
               "config": {"opt": {"value": 3, "x": 1}, "nested": {"a": {"b": [1, 2]}}, "_wandb": {"t": 1}},
               "summary": {"loss": 0.25, "nested": {"p": 1}}, "group": "g", "job_type": "train", "notes": "n"}
    emu, backend = connect({"runs": [special, *seed_runs(11)]})
    stream = backend.iter_runs("ent", "proj", per_page=5)
    first = next(stream)
    assert ops(emu).get("Runs", 0) <= 2  # streaming: at most the next page is fetched ahead, not the third
    runs = [first, *stream]
    assert ops(emu)["Runs"] == 3
    assert [r.id for r in runs] == ["special", *(f"r{i:03d}" for i in range(11))]
    assert first.config == {"opt": {"value": 3, "x": 1}, "nested": {"a": {"b": [1, 2]}}, "_wandb": {"t": 1}}
    assert first.summary == {"loss": 0.25, "nested": {"p": 1}}
    assert (first.group, first.job_type, first.notes, first.state) == ("g", "train", "n", "finished")
    assert first.created_at.isoformat() == "2025-06-01T12:00:00+00:00"
    assert isinstance(first.project_internal_id, int)
    assert first.storage_id
    assert first.files is None
    assert runs[3].config["lr"] == 0.02
    assert runs[3].tags == ("even",)
    assert runs[3].name == "run-2"


def test_iter_runs_filters_on_the_server(connect: Callable[..., Any]) -> None:
    """Filters are sent to the server: tags, config values and $and combine."""
    _, backend = connect({"runs": seed_runs(10)})
    odd = [r.id for r in backend.iter_runs("ent", "proj", {"tags": "odd"}, per_page=2)]
    assert odd == ["r001", "r003", "r005", "r007", "r009"]
    both = {"$and": [{"tags": "even"}, {"config.lr": {"$gte": 0.05}}]}
    assert [r.id for r in backend.iter_runs("ent", "proj", both)] == ["r006", "r008"]


def test_iter_runs_unknown_project_is_not_found(connect: Callable[..., Any]) -> None:
    """A project that does not exist raises NotFound naming it."""
    _, backend = connect({"runs": seed_runs(1)})
    with pytest.raises(NotFound, match="ent/nope"):
        list(backend.iter_runs("ent", "nope"))


def test_get_runs_batches_one_request_per_hundred_and_is_fresh(connect: Callable[..., Any]) -> None:
    """250 ids cost 3 Runs requests; absent ids are missing; a second read sees a write."""
    emu, backend = connect({"runs": seed_runs(250)})
    ids = [f"r{i:03d}" for i in range(250)]
    got = backend.get_runs("ent", "proj", [*ids, "missing"])
    assert sorted(got) == ids
    assert ops(emu)["Runs"] == 3
    backend.update_run(RunUpdate(got["r007"].storage_id, notes="fresh"))
    assert backend.get_runs("ent", "proj", ["r007"])["r007"].notes == "fresh"


def test_update_run_sends_only_given_fields(connect: Callable[..., Any]) -> None:
    """One UpsertBucket carrying only notes and tags; nothing else changes."""
    emu, backend = connect({"runs": seed_runs(1, notes="old", group="g")})
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    backend.update_run(RunUpdate(run.storage_id, notes="new", tags=("x", "y")))
    assert ops(emu)["UpsertBucket"] == 1
    (mutation,) = emu.mutations()
    assert set(mutation["fields"]) == {"notes", "tags"}
    after = backend.get_runs("ent", "proj", ["r000"])["r000"]
    assert (after.notes, after.tags, after.group, after.name) == ("new", ("x", "y"), "g", "run-0")
    assert after.config == run.config
    assert after.summary == run.summary


def test_update_run_config_merges_and_summary_replaces(connect: Callable[..., Any]) -> None:
    """Default emulator: sent config subtrees deep-merge; summaryMetrics replaces the whole summary."""
    _, backend = connect({"runs": seed_runs(1, summary={"acc": 1, "old": 2})})
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    backend.update_run(RunUpdate(run.storage_id, config={"opt": {"name": "sgd"}, "new": {"k": None}},
                                 summary={"acc": 2}))
    after = backend.get_runs("ent", "proj", ["r000"])["r000"]
    assert after.config == {"lr": 0.0, "opt": {"name": "sgd", "betas": [0.9, 0.99]}, "new": {"k": None}}
    assert after.summary == {"acc": 2}


def test_update_run_replace_server_replaces_config(connect: Callable[..., Any]) -> None:
    """Against --config-writes replace the sent config is all that remains."""
    _, backend = connect({"runs": seed_runs(1)}, config_writes="replace")
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    backend.update_run(RunUpdate(run.storage_id, config={"lr": 0.5}))
    assert backend.get_runs("ent", "proj", ["r000"])["r000"].config == {"lr": 0.5}


def test_list_files_pages_and_delete_files_is_one_request(connect: Callable[..., Any]) -> None:
    """25 files at 10 per page: 3 RunFiles requests; deleting 20 is one deleteFiles request."""
    files = [{"name": f"ckpt/{i:02d}.pt", "size": 100 + i} for i in range(25)]
    emu, backend = connect({"runs": seed_runs(1, files=files)})
    backend.files_per_page = 10
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    emu.reset_stats()
    listed = backend.list_files(run)
    assert ops(emu)["RunFiles"] == 3
    assert [(f.name, f.size) for f in listed] == [(f["name"], f["size"]) for f in files]
    assert all(f.id and f.url and f.updated_at.tzinfo for f in listed)
    backend.delete_files(run, [f.id for f in listed[:20]])
    assert ops(emu)["deleteFiles"] == 1
    assert [f.name for f in backend.list_files(run)] == [f["name"] for f in files[20:]]


def test_runs_reads_carry_files_and_a_run_with_more_continues_with_run_files(
        connect: Callable[..., Any]) -> None:
    """Files come inside the Runs pages; only a run with more files than one page holds sends RunFiles."""
    many = [{"name": f"ckpt/{i:02d}.pt", "size": 100 + i} for i in range(7)]
    runs = seed_runs(4, files=[{"name": "a.txt", "size": 1}])
    runs[2]["files"] = many
    emu, backend = connect({"runs": runs})
    backend.files_per_run, backend.files_per_page = 3, 2
    listed = {r.id: r for r in backend.iter_runs("ent", "proj", per_page=2, with_files=True)}
    assert [(f.name, f.size) for f in listed["r002"].files or ()] == [(f["name"], f["size"]) for f in many]
    assert [f.name for f in listed["r000"].files or ()] == ["a.txt"]
    # 2 Runs pages; r002's 4 remaining files at 2 per page: 2 RunFiles.
    assert ops(emu) == {"Runs": 2, "RunFiles": 2}
    emu.reset_stats()
    fresh = backend.get_runs("ent", "proj", ["r001", "r002"], with_files=True)
    assert len(fresh["r002"].files or ()) == 7 and fresh["r001"].files is not None
    assert ops(emu) == {"Runs": 1, "RunFiles": 2}
    emu.reset_stats()
    assert all(r.files is None for r in backend.iter_runs("ent", "proj"))
    assert ops(emu) == {"Runs": 1}


def test_download_upload_round_trip(connect: Callable[..., Any], tmp_path: Path) -> None:
    """A downloaded file re-uploaded under a nested name lands with that name and the same bytes."""
    log_file = {"name": "out/log.txt", "content": "hello\n" * 100}
    _, backend = connect({"runs": seed_runs(1, files=[log_file])})
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    (original,) = backend.list_files(run)
    backend.download_file(run, original, tmp_path / "log.txt")
    assert (tmp_path / "log.txt").read_bytes() == b"hello\n" * 100
    backend.upload_file(run, tmp_path / "log.txt", "restored/sub/log.txt")
    names = {f.name: f for f in backend.list_files(run)}
    assert set(names) == {"out/log.txt", "restored/sub/log.txt"}
    backend.download_file(run, names["restored/sub/log.txt"], tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_bytes() == b"hello\n" * 100


def test_wrong_key_is_auth_error_without_the_key(emulator: Start) -> None:
    """A key the server refuses raises AuthError; the message never contains the key."""
    emu = emulator(seed={"runs": seed_runs(1)}, api_key=TEST_API_KEY)
    wrong = "local-" + "9" * 40
    with pytest.raises(AuthError) as caught:
        WandbBackend(emu.url, wrong)
    assert wrong not in str(caught.value)
    assert TEST_API_KEY not in str(caught.value)


def test_missing_key_says_how_to_set_one(emulator: Start) -> None:
    """No key in the environment or netrc: AuthError naming WANDB_API_KEY and `wandb login`."""
    emu = emulator(seed={"runs": seed_runs(1)})
    with pytest.raises(AuthError, match=r"WANDB_API_KEY.*wandb login"):
        WandbBackend(emu.url)


def test_environment_defaults(emulator: Start, wandb_env: Callable[..., Any]) -> None:
    """from_env() takes the base URL and key from WANDB_BASE_URL / WANDB_API_KEY."""
    emu = emulator(seed={"runs": seed_runs(2)}, api_key=TEST_API_KEY)
    wandb_env(emu.url + "/")
    backend = WandbBackend.from_env()
    assert backend.base_url == emu.url
    assert [r.id for r in backend.iter_runs("ent", "proj")] == ["r000", "r001"]
    backend.close()


def test_server_errors_become_retryable_after_retries(connect: Callable[..., Any]) -> None:
    """Every request failing 500: wandb-core retries, then RetryableError(500); our layer retries it too."""
    emu, backend = connect({"runs": seed_runs(1)})
    emu.set_faults(fail_rate=1.0)
    sleeps: list[float] = []
    with pytest.raises(RetryableError) as caught:
        with_retries(lambda: backend.get_runs("ent", "proj", ["r000"]), attempts=2, sleep=sleeps.append)
    assert caught.value.status == 500
    assert len(sleeps) == 1
    assert ops(emu)["Runs"] == 8  # 2 of our attempts x (1 + WANDB__GRAPHQL_RETRY_MAX=3) in wandb-core


def test_one_backend_is_shared_across_threads(connect: Callable[..., Any]) -> None:
    """Concurrent updates through one backend (one wandb.Api) all land, each exactly once."""
    emu, backend = connect({"runs": seed_runs(30)})
    runs = backend.get_runs("ent", "proj", [f"r{i:03d}" for i in range(30)])
    with ThreadPoolExecutor(max_workers=10) as pool:
        updates = [RunUpdate(r.storage_id, notes=f"n-{r.id}") for r in runs.values()]
        list(pool.map(backend.update_run, updates))
    assert ops(emu)["UpsertBucket"] == 30
    after = backend.get_runs("ent", "proj", list(runs))
    assert {r.id: r.notes for r in after.values()} == {i: f"n-{i}" for i in runs}


@pytest.mark.parametrize("name", ["ck//c", "ck/./c", "/abs/c", "ck/../c", "ck/"])
@pytest.mark.parametrize("batched", [False, True], ids=["upload_file", "upload_files"])
def test_upload_refuses_a_name_the_client_would_change(connect: Callable[..., Any], tmp_path: Path,
                                                       name: str, batched: bool) -> None:
    """Both upload paths (undo's one file, imports' batch) refuse a name the client would upload as
    another (``ck//c`` as ``ck/c``, replacing that file) before sending anything: the run keeps its files."""
    kept = {"name": "ck/c", "content": "the file a normalised upload would replace\n"}
    emu, backend = connect({"runs": seed_runs(1, files=[kept])})
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    source = tmp_path / "c"
    source.write_text("other bytes\n")
    emu.reset_stats()
    upload = ((lambda: backend.upload_files(run, [(source, "fine.txt"), (source, name)])) if batched
              else (lambda: backend.upload_file(run, source, name)))
    with pytest.raises(BackendError, match="refusing to upload"):
        upload()
    assert not ops(emu), "nothing may be sent for a batch with a name the client would change"
    (only,) = backend.list_files(run)
    assert (only.name, only.size) == ("ck/c", len(kept["content"]))


def test_upload_files_keeps_plain_nested_names(connect: Callable[..., Any], tmp_path: Path) -> None:
    """The guard lets through every name the client sends unchanged (nested, dotted, spaces)."""
    _, backend = connect({"runs": seed_runs(1)})
    run = backend.get_runs("ent", "proj", ["r000"])["r000"]
    source = tmp_path / "c"
    source.write_text("x\n")
    names = ["a/b/c.txt", ".hidden", "with space/f.v2.json"]
    backend.upload_files(run, [(source, n) for n in names])
    assert sorted(f.name for f in backend.list_files(run)) == sorted(names)
