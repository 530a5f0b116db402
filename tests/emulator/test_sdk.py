"""The real wandb SDK writing to the emulator: wandb.init -> log -> save -> finish, resume, restore, sync.

Every wandb.init starts wandb-core (a few seconds of CPU), so the flows are few and share one emulator.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wandb

from reconcile.emulator.testing import EmulatorHandle, running_emulator
from tests.conftest import TEST_API_KEY

ENTITY, PROJECT = "acme", "sdk"


@pytest.fixture(scope="module")
def emu(module_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    """One emulator for the module, with no runs: the SDK creates them."""
    db = tmp_path_factory.mktemp("sdk-emulator") / "emulator.sqlite"
    seed = {"viewer": {"entity": ENTITY, "username": "alice"}, "runs": []}
    with running_emulator(seed=seed, db=db) as handle:
        yield handle


@pytest.fixture
def sdk(emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Point wandb.init and wandb.Api at the emulator; returns the directory runs write to.

    wandb keeps process-wide settings read from the environment when it is first set up: tear them
    down before (so they are read again with the emulator's URL) and after (so no later test sees it).
    """
    monkeypatch.setenv("WANDB_BASE_URL", emu.url)
    monkeypatch.setenv("WANDB_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    wandb.teardown()
    yield tmp_path
    wandb.teardown()


def _init(emu: EmulatorHandle, console: str = "off", **kwargs: Any) -> Any:
    """wandb.init against the emulator (the URL also given explicitly: never the real W&B)."""
    settings = wandb.Settings(base_url=emu.url, console=console)
    return wandb.init(project=PROJECT, entity=ENTITY, settings=settings, **kwargs)


def _api(emu: EmulatorHandle) -> Any:
    return wandb.Api(overrides={"base_url": emu.url}, api_key=TEST_API_KEY)


def _train(run: Any, steps: int, start: int = 0) -> None:
    for i in range(start, start + steps):
        run.log({"loss": 1 / (i + 1), "acc": i / 100, "epoch": i // 10})


def test_init_log_save_finish_is_read_back_by_the_public_api(emu: EmulatorHandle, sdk: Path) -> None:
    """init, 100 steps, 3 saved files (now, live, end), finish: config, summary, history, files, state."""
    run = _init(emu, config={"lr": 0.1, "optimizer": {"name": "sgd"}})
    run_id = run.id
    _train(run, 100)
    (Path(run.dir) / "ckpt.pt").write_bytes(b"checkpoint-bytes")
    wandb.save(str(Path(run.dir) / "ckpt.pt"), base_path=run.dir, policy="now")
    live = Path(run.dir) / "progress.txt"
    live.write_text("step 0\n")
    wandb.save(str(live), base_path=run.dir, policy="live")
    live.write_text("step 100\n")  # a live file is uploaded again when it changes, and at the end
    (Path(run.dir) / "media").mkdir()
    (Path(run.dir) / "media" / "sample.png").write_bytes(b"\x89PNG fake")
    wandb.save(str(Path(run.dir) / "media" / "sample.png"), base_path=run.dir, policy="end")
    run.finish()

    api = _api(emu)
    got = api.run(f"{ENTITY}/{PROJECT}/{run_id}")
    assert got.state == "finished"
    assert got.config == {"lr": 0.1, "optimizer": {"name": "sgd"}}
    assert got.summary["loss"] == pytest.approx(0.01) and got.summary["_step"] == 99
    assert got.summary["epoch"] == 9

    rows = got.history(samples=1000, pandas=False)
    assert [r["_step"] for r in rows] == list(range(100))
    assert rows[5]["loss"] == pytest.approx(1 / 6)
    sampled = got.history(samples=10, pandas=False)
    assert len(sampled) == 10 and sampled[0]["_step"] == 0 and sampled[-1]["_step"] == 99
    only_loss = got.history(keys=["loss"], pandas=False)
    assert len(only_loss) == 100 and set(only_loss[0]) == {"_step", "loss"}
    scanned = list(got.scan_history(page_size=30))
    assert [r["_step"] for r in scanned] == list(range(100))
    assert [r["acc"] for r in got.scan_history(keys=["acc"], page_size=40)][-1] == pytest.approx(0.99)

    files = {f.name: f for f in got.files()}
    assert {"ckpt.pt", "progress.txt", "media/sample.png", "wandb-metadata.json"} <= set(files)
    for name, expected in [("ckpt.pt", b"checkpoint-bytes"), ("progress.txt", b"step 100\n")]:
        downloaded = files[name].download(root=str(sdk / "dl"), replace=True)
        downloaded.close()
        assert Path(sdk / "dl" / name).read_bytes() == expected
    assert got.metadata is not None and "python" in got.metadata
    streamed = [m for m in emu.mutations() if m["operation"] == "file_stream" and m["run"].endswith(run_id)]
    assert streamed[-1]["fields"]["complete"] is True and streamed[-1]["fields"]["exitcode"] == 0


def test_failed_run_resumed_appends_history_and_finishes(emu: EmulatorHandle, sdk: Path) -> None:
    """exit code 1 -> failed; resume="must" continues the steps; the second finish -> finished."""
    run = _init(emu, id="resume-me", config={"lr": 0.5})
    _train(run, 10)
    run.finish(exit_code=1)
    api = _api(emu)
    assert api.run(f"{ENTITY}/{PROJECT}/resume-me").state == "failed"

    run = _init(emu, id="resume-me", resume="must", config={"batch": 32})
    assert run.resumed
    _train(run, 10, start=10)
    run.finish()
    api.flush()
    got = api.run(f"{ENTITY}/{PROJECT}/resume-me")
    assert got.state == "finished"
    assert [r["_step"] for r in got.scan_history()] == list(range(20))
    assert got.config == {"lr": 0.5, "batch": 32}
    assert got.summary["_step"] == 19

    run = _init(emu, id="resume-me", resume="allow")
    run.log({"loss": 0.0})
    run.finish()
    api.flush()
    assert api.run(f"{ENTITY}/{PROJECT}/resume-me").history(pandas=False)[-1]["_step"] == 20


def test_resume_must_of_an_unknown_run_is_refused(emu: EmulatorHandle, sdk: Path) -> None:
    """resume="must" of a run that never started: wandb.init raises, nothing is created."""
    with pytest.raises(wandb.errors.UsageError, match="does not exist"):
        _init(emu, id="never-started", resume="must")
    with pytest.raises(wandb.errors.CommError):
        _api(emu).run(f"{ENTITY}/{PROJECT}/never-started")


def test_restore_gets_the_saved_bytes_back(emu: EmulatorHandle, sdk: Path) -> None:
    """wandb.restore downloads a file another run saved, byte for byte."""
    payload = os.urandom(4096)
    run = _init(emu, id="with-weights")
    (Path(run.dir) / "weights.bin").write_bytes(payload)
    wandb.save(str(Path(run.dir) / "weights.bin"), base_path=run.dir, policy="now")
    run.finish()
    restored = wandb.restore("weights.bin", run_path=f"{ENTITY}/{PROJECT}/with-weights", root=str(sdk / "r"))
    assert restored is not None
    restored.close()
    assert (sdk / "r" / "weights.bin").read_bytes() == payload


def test_offline_run_pushed_with_wandb_sync(emu: EmulatorHandle, sdk: Path) -> None:
    """An offline run, then `wandb sync DIR`: the emulator has its config, history and final state."""
    script = (
        "import wandb\n"
        f"run = wandb.init(project={PROJECT!r}, entity={ENTITY!r}, id='offline-1', mode='offline', "
        "config={'lr': 0.3})\n"
        "[run.log({'loss': 1 / (i + 1)}) for i in range(25)]\n"
        "print('epoch 1 done')\n"
        "run.finish()\n"
    )
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=sdk, timeout=120)
    [run_dir] = list((sdk / "wandb").glob("offline-run-*-offline-1"))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("wandb")), "sync", str(run_dir)],
        env={**os.environ},
        cwd=sdk,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = _api(emu).run(f"{ENTITY}/{PROJECT}/offline-1")
    assert got.state == "finished" and got.config == {"lr": 0.3}
    assert len(got.history(pandas=False)) == 25 and got.summary["loss"] == pytest.approx(1 / 25)
    # the console output (a process of its own: no pytest capture) came through as output.log
    got.file("output.log").download(root=str(sdk / "dl"), replace=True).close()
    assert "epoch 1 done" in (sdk / "dl" / "output.log").read_text()
    lines = [m for m in emu.mutations() if m["operation"] == "file_stream" and m["run"].endswith("offline-1")]
    assert any("output" in m["fields"] for m in lines)


def _file_stream(
    emu: EmulatorHandle, run: str, body: dict[str, Any], project: str = PROJECT
) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{emu.url}/files/{ENTITY}/{project}/{run}/file_stream",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_create_run_then_streams_stopping_without_complete_crash(emu: EmulatorHandle, sdk: Path) -> None:
    """api.create_run makes a pending run; a stream without `complete` that stops -> crashed (preempted)."""
    api = _api(emu)
    created = wandb.apis.public.Run.create(
        api, run_id="lost-1", project=PROJECT, entity=ENTITY, state="pending"
    )
    assert created.id == "lost-1" and created.entity == ENTITY
    api.create_run(run_id="lost-2", project=PROJECT, entity=ENTITY)
    assert api.run(f"{ENTITY}/{PROJECT}/lost-1").state == "pending"
    files = {
        "wandb-history.jsonl": {"offset": 0, "content": [json.dumps({"_step": 0, "x": 1})]},
        "wandb-events.jsonl": {"offset": 0, "content": [json.dumps({"system.cpu": 12.5, "_runtime": 1})]},
    }
    assert _file_stream(emu, "lost-1", {"files": files}) == {}
    _file_stream(emu, "lost-2", {"preempting": True})
    api.flush()
    lost = api.run(f"{ENTITY}/{PROJECT}/lost-1")
    assert lost.state == "running" and lost.history(pandas=False) == [{"_step": 0, "x": 1}]
    assert lost.history(stream="events", pandas=False) == [{"system.cpu": 12.5, "_runtime": 1}]
    assert lost.system_metrics == {"system.cpu": 12.5, "_runtime": 1}
    assert api.run(f"{ENTITY}/{PROJECT}/lost-2").state == "preempting"
    emu.set_faults(crash_after=0)
    try:
        api.flush()
        assert api.run(f"{ENTITY}/{PROJECT}/lost-1").state == "crashed"
        assert api.run(f"{ENTITY}/{PROJECT}/lost-2").state == "preempted"
    finally:
        emu.set_faults(crash_after=300)


def test_sweep_agent_runs_five_trials_and_best_run_is_the_best(
    emu: EmulatorHandle, sdk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wandb.sweep, wandb.agent(function) calling wandb.init: 5 grid runs; best_run() follows the metric."""
    from wandb.agents.pyagent import Agent

    monkeypatch.setattr(Agent, "HEARTBEAT_SLEEP_SECONDS", 0.2)  # only the wait between heartbeats
    config = {
        "method": "grid",
        "metric": {"name": "acc", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.1, 0.2, 0.3, 0.4, 0.5]}, "layers": {"value": 2}},
    }
    sweep_id = wandb.sweep(config, entity=ENTITY, project=PROJECT)

    def trial() -> None:
        run = wandb.init()
        lr = run.config["lr"]
        run.log({"acc": 1 - (lr - 0.3) ** 2 + lr / 100})
        run.finish()

    wandb.agent(sweep_id, function=trial, entity=ENTITY, project=PROJECT, count=5)

    api = _api(emu)
    sweep = api.sweep(f"{ENTITY}/{PROJECT}/{sweep_id}")
    assert sweep.config["method"] == "grid" and sweep.state == "RUNNING"
    runs = list(sweep.runs)
    assert len(runs) == 5 and all(r.sweep_name == sweep_id and r.state == "finished" for r in runs)
    assert sorted(r.config["lr"] for r in runs) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert all(r.config["layers"] == 2 for r in runs)
    assert sweep.best_run().config["lr"] == 0.3
    assert sweep.best_run(order="+acc").config["lr"] == 0.1
    assert sweep.best_run(order="-summary_metrics.acc").config["lr"] == 0.3


def test_projects_and_run_delete(emu: EmulatorHandle, sdk: Path) -> None:
    """api.projects lists the entity's projects; run.delete() removes the run, its files and history."""
    api = _api(emu)
    api.create_run(run_id="doomed", project="scratch", entity=ENTITY)
    api.create_run(run_id="keeper", project=PROJECT, entity=ENTITY)
    _file_stream(
        emu,
        "doomed",
        {"files": {"wandb-history.jsonl": {"offset": 0, "content": ['{"_step": 0}']}}},
        project="scratch",
    )
    assert {p.name for p in api.projects(ENTITY)} >= {PROJECT, "scratch"}
    assert all(p.entity == ENTITY for p in api.projects(ENTITY))
    doomed = api.run(f"{ENTITY}/scratch/doomed")
    doomed.delete()
    api.flush()
    with pytest.raises(wandb.errors.CommError):
        api.run(f"{ENTITY}/scratch/doomed")
    assert [r.id for r in api.runs(f"{ENTITY}/scratch")] == []
    assert emu.mutations()[-1]["operation"] == "deleteRun"


def _request(url: str, *, method: str = "GET", data: bytes | None = None, key: str | None = None) -> int:
    """The status of one plain HTTP request (Basic auth with ``key``, as the client sends it)."""
    headers = {"Content-Type": "application/json"} if method == "POST" else {}
    if key is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"api:{key}".encode()).decode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_an_emulator_with_a_key_takes_the_sdks_uploads_on_their_signed_urls_only(
        sdk: Path, tmp_path: Path) -> None:
    """With ``api_key``, the SDK's uploader PUTs a run's files with no key (W&B's storage URLs are signed):
    they are accepted on the URL's signature, and a PUT without it, or with another path's, gets 401."""
    with running_emulator(seed={"viewer": {"entity": ENTITY, "username": "alice"}, "runs": []},
                          api_key=TEST_API_KEY) as keyed:
        run = _init(keyed)
        (Path(run.dir) / "ckpt.pt").write_bytes(b"checkpoint-bytes")
        wandb.save(str(Path(run.dir) / "ckpt.pt"), base_path=run.dir, policy="now")
        run.finish()
        files = {f.name for f in _api(keyed).run(f"{ENTITY}/{PROJECT}/{run.id}").files()}
        assert {"ckpt.pt", "config.yaml", "wandb-metadata.json"} <= files
        assert keyed.stats()["statuses"].get("401", 0) == 0

        mutation = ("mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, "
                    "$files: [String!]!) { createRunFiles(input: {entityName: $entity, projectName: "
                    "$project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } "
                    "} }")
        variables = {"entity": ENTITY, "project": PROJECT, "run": run.id, "files": ["a.txt"]}
        body = json.dumps({"query": mutation, "variables": variables}).encode()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        auth = "Basic " + base64.b64encode(f"api:{TEST_API_KEY}".encode()).decode()
        request = urllib.request.Request(f"{keyed.url}/graphql", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": auth})
        with opener.open(request, timeout=30) as answer:
            url = json.loads(answer.read())["data"]["createRunFiles"]["files"][0]["uploadUrl"]
        unsigned, _, signature = url.partition("?")
        assert signature  # the URL is its own credential
        assert _request(unsigned, method="PUT", data=b"x") == 401  # no signature, no key
        other = unsigned.replace("a.txt", "b.txt") + "?" + signature
        assert _request(other, method="PUT", data=b"x") == 401  # another path's signature
        assert _request(unsigned, method="PUT", data=b"x", key="local-" + "0" * 40) == 401  # a wrong key
        assert _request(url, method="PUT", data=b"signed") == 200
        assert _request(unsigned, method="PUT", data=b"keyed", key=TEST_API_KEY) == 200  # the key still works
