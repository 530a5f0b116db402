"""Two applies of one plan at once, and hand-edited ("tampered") saved plans.

Concurrent applies: several `reconcile apply` processes of one plan start at the same moment; the
journal lock lets exactly one work, the others exit 1 naming it; every run is written once, every
file deleted once, and every deleted file has a complete, checksummed backup (bytes lost: 0).

Tampered plans: each edit a reviewer could not see in the rendered plan (or a corrupt file) is applied
to a fresh emulator; none may write anything it was not planned to, and a self-contradicting plan is
refused before anything is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconcile.apply.backup import file_digests
from reconcile.cli import main
from reconcile.planfile import content_digest, run_from_dict
from tests.reliability.conftest import record
from tests.reliability.fleet import SPEC, api, deleted_files, fleet, writes_per_run

RUNS = 60
APPLIES = 4


def _plan(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    plan = tmp_path / "plan.json"
    planned = CliRunner().invoke(main, ["plan", "-f", str(spec), "-o", str(plan)], catch_exceptions=False)
    assert planned.exit_code == 0, planned.output
    return plan


def test_concurrent_applies_of_one_plan_run_once(emulator: Callable[..., Any], subprocess_env: Any,
                                                  tmp_path: Path) -> None:
    """Four applies of one plan started together: one applies, the others exit 1 saying it is locked;
    nothing is written twice and no deleted byte is without its backup."""
    emu = emulator(seed=fleet(RUNS))
    env = subprocess_env(emu.url)
    plan = _plan(tmp_path)
    backups = tmp_path / "backups"
    emu.set_faults(latency_ms=10)  # long enough that the applies overlap
    procs = [subprocess.Popen([sys.executable, "-m", "reconcile", "apply", str(plan), "--backup-dir",
                               str(backups)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for _ in range(APPLIES)]
    outcomes = [p.communicate(timeout=180) for p in procs]
    codes = [p.returncode for p in procs]
    emu.set_faults(latency_ms=0)
    locked = [err for (_out, err), code in zip(outcomes, codes, strict=True) if code == 1]
    assert codes.count(0) >= 1 and all(c in (0, 1) for c in codes), outcomes
    assert locked and all("the plan is locked" in err and "pid" in err for err in locked), outcomes
    record(concurrent_applies=APPLIES)

    mutations = emu.mutations()
    assert set(writes_per_run(mutations).values()) == {1} and len(writes_per_run(mutations)) == RUNS
    deletions = deleted_files(mutations)
    assert set(deletions.values()) == {1}
    manifest = {(m["run"], m["name"]): m for f in backups.glob("*/manifest.jsonl")
                for m in map(json.loads, f.read_text().splitlines())}
    lost = 0
    for key in deletions:
        size, sha, _md5 = file_digests(Path(manifest[key]["path"]))
        assert sha == manifest[key]["sha256"]
        lost += manifest[key]["size"] - size
    assert lost == 0
    record(bytes_lost=lost)


def _digest(data: dict[str, Any]) -> None:
    """A hostile editor recomputes the content digest (the other checks must still hold)."""
    data["content_digest"] = content_digest(data)


def _file_change(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    run = next(r for r in data["runs"] if any(c["op"] == "delete" for c in r["changes"]))
    return run, next(c for c in run["changes"] if c["op"] == "delete")


def _swap_file_id(data: dict[str, Any]) -> None:
    runs = [r for r in data["runs"] if any(c["op"] == "delete" for c in r["changes"])]
    _run, change = _file_change(data)
    other = next(c for c in runs[1]["changes"] if c["op"] == "delete")
    change["file"]["id"] = change["before"]["id"] = other["file"]["id"]  # a file of another run
    _digest(data)


def _rename_to_kept(data: dict[str, Any]) -> None:
    _run, change = _file_change(data)
    change["file"]["name"] = change["before"]["name"] = "best.ckpt"  # the spec keeps it
    change["key"] = ["best.ckpt"]
    _digest(data)


def _move_run(data: dict[str, Any]) -> None:
    first, second = data["runs"][0], data["runs"][1]
    first["path"], first["storage_id"] = second["path"], second["storage_id"]
    data["runs"] = [first, *data["runs"][2:]]
    _digest_counts(data)


def _copy_fingerprint(data: dict[str, Any]) -> None:
    data["runs"][0]["fingerprint"] = data["runs"][1]["fingerprint"]
    _digest(data)


def _drop_fingerprint_fields(data: dict[str, Any]) -> None:
    # Even with a fingerprint recomputed for no fields, a change nothing fingerprints is refused.
    data["runs"][0]["fingerprint_fields"] = []
    _digest(data)


def _foreign_url(data: dict[str, Any]) -> None:
    _run, change = _file_change(data)
    change["file"]["url"] = change["before"]["url"] = "http://127.0.0.1:9/foreign"
    _digest(data)


def _digest_counts(data: dict[str, Any]) -> None:
    """Recompute the summary counts from the runs, then the digest (a careful hostile editor)."""
    parsed = [run_from_dict(r, "") for r in data["runs"]]
    data["summary"].update({"runs_to_change": sum(1 for r in parsed if r.changes),
                            "attribute_changes": sum(r.attribute_changes for r in parsed),
                            "files_to_delete": sum(len(r.file_deletions) for r in parsed),
                            "bytes_to_free": sum(c.file.size for r in parsed for c in r.file_deletions
                                                 if c.file)})
    _digest(data)


def _wrong_count(data: dict[str, Any]) -> None:
    data["summary"]["files_to_delete"] = 1
    _digest(data)  # the digest agrees: only the count is wrong


def _twice_recounted(data: dict[str, Any]) -> None:
    data["runs"].append(data["runs"][0])
    _digest_counts(data)  # counts and digest agree with the duplicate: only the duplicate is wrong


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # name: (edit, what the apply must do)
    "run listed twice": (lambda d: d["runs"].append(d["runs"][0]), "refused"),
    "run listed twice, counts and digest recomputed": (_twice_recounted, "refused"),
    "file count": (lambda d: d["summary"].update(files_to_delete=1), "refused"),
    "byte count": (lambda d: d["summary"].update(bytes_to_free=0), "refused"),
    "file count, digest recomputed": (_wrong_count, "refused"),
    "value edited, digest kept": (lambda d: d["runs"][0]["changes"][0].update(after="edited"), "refused"),
    "digest removed": (lambda d: d.pop("content_digest"), "refused"),
    "file id of another run": (_swap_file_id, "run refused"),
    "kept file named as deleted": (_rename_to_kept, "refused"),  # the run lists it as kept: contradiction
    "run moved onto another run": (_move_run, "run refused"),
    "fingerprint of another run": (_copy_fingerprint, "run refused"),
    "fingerprint fields dropped": (_drop_fingerprint_fields, "refused"),
    "foreign download URL": (_foreign_url, "backed up from W&B"),
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_tampered_plan_never_writes_what_was_not_planned(emulator: Callable[..., Any], subprocess_env: Any,
                                                        tmp_path: Path, name: str) -> None:
    """Each tampered plan: refused as a whole before any write, or its tampered run refused (nothing
    written to it) while the others apply; backups always come from W&B's own listing."""
    edit, outcome = TAMPERED[name]
    emu = emulator(seed=fleet(RUNS))
    subprocess_env(emu.url)
    plan = _plan(tmp_path)
    data = json.loads(plan.read_text(encoding="utf-8"))
    edit(data)
    plan.write_text(json.dumps(data, indent=2), encoding="utf-8")
    before = {r.id: (dict(r.config), sorted(f.name for f in r.files()))
              for r in api(emu.url).runs("acme/fleet")}
    started = time.monotonic()
    applied = CliRunner().invoke(main, ["apply", str(plan), "--backup-dir", str(tmp_path / "b")],
                                 catch_exceptions=False)
    record(tampered_plans=1)
    written = {m["run"] for m in emu.mutations()}
    if outcome == "refused":
        assert applied.exit_code == 1 and "Error: " in applied.stderr, applied.output
        assert written == set()
    elif outcome == "run refused":
        assert applied.exit_code == 1, applied.output
        refused = [line.split(": ")[1] for line in applied.stderr.splitlines() if line.startswith("stale: ")]
        assert refused, applied.output
        for path in refused:
            assert path not in written, (path, applied.output)
            run_id = path.rsplit("/", 1)[1]
            now = api(emu.url).run(path)
            assert (dict(now.config), sorted(f.name for f in now.files())) == before[run_id]
        kept = [f.name for r in api(emu.url).runs("acme/fleet") for f in r.files() if f.name == "best.ckpt"]
        assert len(kept) == RUNS // 20
    else:
        assert applied.exit_code == 0, applied.output
        run, change = _file_change(data)
        [copy] = (tmp_path / "b").rglob(f"{run['path'].rsplit('/', 1)[1]}/*/{change['file']['name']}")
        assert copy.stat().st_size == change["file"]["size"]
    assert time.monotonic() - started < 120
