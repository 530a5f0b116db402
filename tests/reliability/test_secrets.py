"""Secrets: with WANDB_API_KEY set to a recognisable value, every command run with ``-vv`` and
``--log-format json`` (succeeding, refused with 401, failing with 500, crashing) leaves the key in no
stdout, stderr, plan, journal, undo file, export or crash log."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconcile.emulator.testing import EmulatorHandle
from tests.reliability.conftest import reconcile, record
from tests.reliability.fleet import SPEC, fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "local-" + "zebracorn" * 5  # not hex: only knowing the key (not its shape) can redact it
OTHER_KEY = "local-" + "0" * 40
NEEDLES = (KEY, KEY.removeprefix("local-"), base64.b64encode(f"api:{KEY}".encode()).decode())
LOUD = ("-vv", "--log-format", "json")

CRASH = """
import sys
import reconcile.commands.show as show

def boom(*args, **kwargs):
    raise RuntimeError("unexpected state while holding " + sys.argv[1] + " in Authorization: Basic x")

show.run = boom
from reconcile.cli import main
sys.argv = ["reconcile", "show", "plan.json", "-vv", "--log-format", "json"]
main()
"""


def leaks(text: str) -> list[str]:
    """The needles (key, its secret part, its basic-auth token) found in ``text``."""
    return [n for n in NEEDLES if n in text]


def test_secrets_api_key_never_leaves_the_process(tmp_path: Path) -> None:  # noqa: PLR0915 - one scenario
    """validate, plan, show, apply (with backups), export, emulator; then 401, 500 and a crash."""
    work, tmpdir = tmp_path / "work", tmp_path / "tmpdir"
    work.mkdir()
    tmpdir.mkdir()
    env = dict(os.environ, WANDB_API_KEY=KEY, TMPDIR=str(tmpdir), RECONCILE_EMULATOR_API_KEY=KEY)
    db = tmp_path / "emu.sqlite"
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump(fleet(10, files_every=5)), encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "reconcile", "emulator", "--port", "0", "--db", str(db),
                               "--seed", str(seed), *LOUD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    outputs: dict[str, str] = {}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" ", 1)[1].strip()
        emu = EmulatorHandle(url, lambda: None)
        env["WANDB_BASE_URL"] = url
        (work / "spec.yaml").write_text(SPEC, encoding="utf-8")

        def run(label: str, *args: str, codes: tuple[int, ...]) -> None:
            result = reconcile(*args, env=env, cwd=work, timeout=90)
            assert result.returncode in codes, f"{label}: exit {result.returncode}: {result.stderr[-1500:]}"
            outputs[f"{label} stdout"], outputs[f"{label} stderr"] = result.stdout, result.stderr

        run("validate", "validate", "spec.yaml", *LOUD, codes=(0,))
        run("plan", "plan", "-f", "spec.yaml", "-o", "plan.json", *LOUD, codes=(0,))
        (work / "pending.json").write_bytes((work / "plan.json").read_bytes())
        run("show", "show", "plan.json", "--format", "markdown", *LOUD, codes=(0,))
        run("apply", "apply", "plan.json", "--backup-dir", "backups", *LOUD, codes=(0,))
        run("export", "export", "acme/fleet", "-o", "export.yaml", *LOUD, codes=(0,))

        emu.set_faults(api_key=OTHER_KEY)  # our key is now wrong: HTTP 401
        run("plan 401", "plan", "-f", "spec.yaml", *LOUD, codes=(1,))
        run("apply 401", "apply", "pending.json", "--no-backup", *LOUD, codes=(1,))
        run("apply -f 401", "apply", "-f", "spec.yaml", "--auto-approve", "--no-backup", *LOUD, codes=(1,))
        run("export 401", "export", "acme/fleet", *LOUD, codes=(1,))

        emu.set_faults(api_key=KEY, fail_rate=1.0)  # every request: HTTP 500
        run("plan 500", "plan", "-f", "spec.yaml", *LOUD, codes=(1,))
        run("apply 500", "apply", "pending.json", "--no-backup", *LOUD, codes=(1,))
        run("export 500", "export", "acme/fleet", *LOUD, codes=(1,))
        emu.set_faults(fail_rate=0.4)  # some reads and writes fail: failed runs in the journal
        run("apply storm", "apply", "pending.json", "--no-backup", *LOUD, codes=(0, 1))
        emu.set_faults(fail_rate=0.0)

        crash = subprocess.run([sys.executable, "-c", CRASH, KEY], env=env, cwd=work, capture_output=True,
                               text=True, timeout=60, check=False)
        assert crash.returncode == 3, crash.stderr
        outputs["crash stdout"], outputs["crash stderr"] = crash.stdout, crash.stderr
    finally:
        server.terminate()
        out, err = server.communicate(timeout=15)
        outputs["emulator stdout"], outputs["emulator stderr"] = out, err

    crash_logs = list(tmpdir.rglob("reconcile-crash-*"))
    assert len(crash_logs) == 1, "the crash wrote no crash log"
    assert "RuntimeError" in crash_logs[0].read_text()
    assert "[redacted]" in crash_logs[0].read_text()  # the key was in the exception, and was removed
    files = [p for p in (*work.rglob("*"), *crash_logs) if p.is_file()]
    for path in files:
        outputs[str(path)] = path.read_bytes().decode("utf-8", "replace")
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    record(secret_checks=len(outputs))
    assert not found, f"the API key leaked into: {sorted(found)}"
    for kind in ("plan.json", "plan.journal.jsonl", "plan.undo.json", "export.yaml"):
        assert work / kind in files, kind
    assert "401" in outputs["plan 401 stderr"] or "credentials" in outputs["plan 401 stderr"]
