"""State survives a restart on the same --db; --seed resets it; the CLI serves and stops cleanly."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wandb

from reconcile.emulator.testing import running_emulator
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).with_name("fixture.yaml")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _api(url: str) -> Any:
    return wandb.Api(overrides={"base_url": url}, api_key=TEST_API_KEY)


def test_restart_on_same_db_keeps_every_change(tmp_path: Path) -> None:
    """Updates, deletions, uploads and the mutation log are all there after a restart without --seed."""
    db = tmp_path / "state.sqlite"
    with running_emulator(seed=FIXTURE, db=db) as emu:
        api = _api(emu.url)
        run = api.run("acme/vision/meta1")
        run.config["k"] = 2
        run.tags = ["restarted"]
        run.update()
        api.run("acme/vision/files1").file("output.log").delete()
        (tmp_path / "up.txt").write_text("kept")
        api.run("acme/vision/upload1").upload_file(str(tmp_path / "up.txt"), root=str(tmp_path))
        log = emu.mutations()
    with running_emulator(db=db) as emu:
        api = _api(emu.url)
        run = api.run("acme/vision/meta1")
        assert (run.config, run.tags) == ({"k": 2}, ["restarted"])
        assert "output.log" not in [f.name for f in api.run("acme/vision/files1").files()]
        with api.run("acme/vision/upload1").file("up.txt").download(root=str(tmp_path / "dl")) as handle:
            assert handle.read() == "kept"
        assert emu.mutations()[: len(log)] == log
    with running_emulator(seed=FIXTURE, db=db) as emu:
        assert _api(emu.url).run("acme/vision/meta1").tags == ["t"]  # --seed resets
        assert emu.mutations() == []


def test_cli_serves_with_key_from_env_and_stops_on_sigterm(
    tmp_path: Path, wandb_env: Callable[..., Any]
) -> None:
    """The CLI prints its URL, serves the client, exits 0 on SIGTERM and never prints the key."""
    env = dict(os.environ, RECONCILE_EMULATOR_API_KEY=TEST_API_KEY)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconcile",
            "emulator",
            "--port",
            "0",
            "--db",
            str(tmp_path / "cli.sqlite"),
            "--seed",
            str(FIXTURE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:")
        url = line.split()[1]
        assert _api(url).run("acme/vision/abc123").name == "brave-river-1"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert TEST_API_KEY not in line + out + err


def test_subprocess_mode_of_running_emulator(tmp_path: Path) -> None:
    """running_emulator(subprocess=True) starts the CLI, seeds it from a dict and exposes its stats."""
    seed = {"runs": [{"entity": "e", "project": "p", "id": "r1", "config": {"a": 1}}]}
    with running_emulator(seed=seed, db=tmp_path / "sub.sqlite", subprocess=True) as emu:
        assert _api(emu.url).run("e/p/r1").config == {"a": 1}
        assert emu.stats()["operations"]["Run"] == 1


def test_bad_fixture_fails_the_cli_with_a_clear_message(tmp_path: Path) -> None:
    """A fixture with an unknown key stops the command with exit 1 and names the key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  - {entity: e, project: p, id: r, colour: red}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconcile",
            "emulator",
            "--port",
            "0",
            "--db",
            str(tmp_path / "x.sqlite"),
            "--seed",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "colour" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_hidden_drop_rate_flag_truncates_responses(tmp_path: Path) -> None:
    """`--drop-rate 1` (hidden, for the reliability suite) cuts every response short."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconcile",
            "emulator",
            "--port",
            "0",
            "--db",
            str(tmp_path / "d.sqlite"),
            "--drop-rate",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        request = urllib.request.Request(url + "/graphql", data=b'{"query": "query V { viewer { id } }"}')
        with (
            pytest.raises((http.client.IncompleteRead, ConnectionError)),
            _OPENER.open(request, timeout=5) as resp,
        ):
            resp.read()
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0
