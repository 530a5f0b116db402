"""Tests of the saved-plan file: exact JSON round trip, atomic writes, and clear read errors.

``tests/testdata/golden/plan.json`` is ``representative_plan()`` as JSON; the text and
markdown golden tests render it. After an intended change of the format or of the
representative plan, regenerate every golden file and review the diff:

    RECONCILE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit -k "planfile or render"
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from reconcile.errors import PlanError, StalePlanError
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    ConfigWrites,
    KeepReason,
    KeptFile,
    Limits,
    LiveFile,
    Plan,
    RunPlan,
)
from reconcile.planfile import (
    change_from_dict,
    change_to_dict,
    dumps,
    kept_from_dict,
    kept_to_dict,
    plan_from_dict,
    plan_to_dict,
    read_plan,
    write_plan,
)

GOLDEN = Path(__file__).resolve().parent.parent / "testdata" / "golden"
REGENERATE = bool(os.environ.get("RECONCILE_REGEN_GOLDEN"))
NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)


def check_golden(name: str, actual: str) -> None:
    """Compare ``actual`` with the golden file ``name`` (rewrite it when regenerating)."""
    path = GOLDEN / name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with RECONCILE_REGEN_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8")


def _file(file_id: str, name: str, size: int, days_old: float) -> LiveFile:
    return LiveFile(id=file_id, name=name, size=size, updated_at=NOW - timedelta(days=days_old))


def representative_plan() -> Plan:
    """A plan with every kind and op, errors, skipped runs, files and awkward values."""
    ckpt = _file("RmlsZTox", "checkpoints/ckpt-001.pt", 120_000_000, 320)
    media = LiveFile(id="RmlsZToy", name="media/images/sample 1.png", size=2048,
                     updated_at=NOW - timedelta(hours=3), url="http://127.0.0.1:8080/files/2", md5="abc==")
    first = RunPlan(
        entity="acme", project="vision", run_id="abc123", storage_id="UnVuOjE=", name="old-name",
        fingerprint="sha256:" + "1" * 64,
        fingerprint_fields=(("config", "optimizer", "lr"), ("config", "dataset"), ("files",), ("name",),
                            ("summary", "tmp_metric"), ("tags",)),
        changes=(
            Change(ChangeKind.CONFIG, ChangeOp.SET, ("optimizer", "lr"), 0.01, 0.1, ("rule-a",)),
            Change(ChangeKind.CONFIG, ChangeOp.SET, ("dataset",), None, "cifar10", ("rule-a",), created=True),
            Change(ChangeKind.CONFIG, ChangeOp.RENAME, ("learning_rate",), 0.01, 0.01, ("rename-lr",),
                   from_key=("lr",)),
            Change(ChangeKind.SUMMARY, ChangeOp.UNSET, ("tmp_metric",), 3, None, ("cleanup",)),
            Change(ChangeKind.SUMMARY, ChangeOp.SET, ("best/val_acc",), 0.91, 0.93, ("rule-a", "rule-b")),
            Change(ChangeKind.NAME, ChangeOp.SET, (), "old-name", "resnet50-lr0.1", ("rule-a",)),
            Change(ChangeKind.TAGS, ChangeOp.ADD, ("baseline",), None, "baseline", ("rule-a",)),
            Change(ChangeKind.TAGS, ChangeOp.REMOVE, ("wip",), "wip", None, ("cleanup",)),
            Change(ChangeKind.FILE, ChangeOp.DELETE, (ckpt.name,), ckpt, None, ("prune-checkpoints",),
                   file=ckpt, detail="114.44 MiB, 320 days old"),
        ),
        project_internal_id=42,
    )
    second = RunPlan(
        entity="acme", project="vision", run_id="def456", storage_id="UnVuOjI=", name=None,
        fingerprint="sha256:" + "2" * 64, fingerprint_fields=(("config", "a.b", "c"),),
        changes=(
            Change(ChangeKind.CONFIG, ChangeOp.SET, ("a.b", "c"), float("nan"), float("inf"), ("weird",)),
            Change(ChangeKind.CONFIG, ChangeOp.UNSET, ("debug",), True, None, ("cleanup",),
                   detail="target config_writes: replace; the key is removed"),
            Change(ChangeKind.SUMMARY, ChangeOp.RENAME, ("val", "accuracy"), {"x": [1, 2]}, {"x": [1, 2]},
                   ("rename-acc",), from_key=("val_acc",)),
            Change(ChangeKind.NOTES, ChangeOp.SET, (), None, "line one\nline | two `code` <b>", ("notes",)),
            Change(ChangeKind.GROUP, ChangeOp.SET, (), "g1", "baselines", ("rule-a",)),
            Change(ChangeKind.JOB_TYPE, ChangeOp.SET, (), "eval", "train", ("rule-a",)),
            Change(ChangeKind.TAGS, ChangeOp.ADD, ("lr-0.1",), None, "lr-0.1", ("rule-a",)),
            Change(ChangeKind.CONFIG, ChangeOp.SET, ("long",), "x" * 30, "é" * 200, ("rule-a",)),
            Change(ChangeKind.SUMMARY, ChangeOp.SET, ("loss",), -float("inf"), 0.2, ("rule-a",)),
            Change(ChangeKind.SUMMARY, ChangeOp.SET, ("epochs",), 10, 12, ("rule-a",)),
            Change(ChangeKind.FILE, ChangeOp.DELETE, (media.name,), media, None, ("prune-media",),
                   file=media),
            Change(ChangeKind.FILE, ChangeOp.ADD, ("restored.pt",), None, 4096, ("undo",),
                   source="backups/acme/vision/def456/restored.pt",
                   detail="re-upload from backups/acme/vision/def456/restored.pt"),
        ),
        config_writes=ConfigWrites.REPLACE,
        errors=("rules 'rule-a' and 'rule-c' set config.dataset to different values",),
    )
    errors_only = RunPlan(
        entity="acme", project="vision-archive", run_id="ghi789", storage_id="UnVuOjM=", name="n",
        fingerprint="sha256:" + "3" * 64, fingerprint_fields=(), changes=(),
        errors=("template '{config.model}' for name: the run has no config key 'model'",),
    )
    return Plan(
        spec_digest="sha256:" + "d" * 64, created_at=NOW, base_url="http://127.0.0.1:8080",
        runs=(first, second, errors_only),
        errors=("limits.max_file_deletions is 1 but the plan deletes 2 files (1 over)",),
        skipped_running=3, runs_read=120,
        limits=Limits(max_changed_runs=500, max_file_deletions=1, max_bytes=None),
    )


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (it never equals itself in Python)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        same_shape = type(a) is type(b) and len(a) == len(b)
        return same_shape and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _plan_fields(plan: Plan) -> dict[str, Any]:
    """Every field of a plan as nested plain data (dataclasses.asdict keeps enums and datetimes)."""
    return dataclasses.asdict(plan)


def test_planfile_round_trip_is_exact() -> None:
    """Every field survives plan -> JSON text -> plan, including NaN, infinities, enums and times."""
    plan = representative_plan()
    back = plan_from_dict(json.loads(dumps(plan)))
    assert _same(_plan_fields(back), _plan_fields(plan))
    second = back.runs[1]
    assert math.isnan(second.changes[0].before)
    assert second.changes[0].after == math.inf
    assert second.changes[8].before == -math.inf
    assert back.created_at.tzinfo is not None
    assert isinstance(back.runs[0].changes[8].before, LiveFile)
    assert back.runs[1].changes[10].file == back.runs[1].changes[10].before


def test_planfile_round_trip_preserves_types() -> None:
    """Keys come back as tuples, enums as members, fingerprint fields as tuples of tuples."""
    back = plan_from_dict(json.loads(dumps(representative_plan())))
    rename = back.runs[0].changes[2]
    assert rename.key == ("learning_rate",)
    assert rename.from_key == ("lr",)
    assert rename.op is ChangeOp.RENAME
    assert back.runs[1].config_writes is ConfigWrites.REPLACE
    assert back.runs[0].fingerprint_fields[0] == ("config", "optimizer", "lr")
    assert back.runs[0].project_internal_id == 42
    assert back.limits == Limits(max_changed_runs=500, max_file_deletions=1, max_bytes=None)


def test_planfile_json_matches_golden() -> None:
    """The saved JSON of the representative plan is the reviewed golden file."""
    check_golden("plan.json", dumps(representative_plan()))


def test_planfile_document_carries_contract_fields() -> None:
    """Top level, per-run and per-change fields are the ones the contract names."""
    doc = plan_to_dict(representative_plan())
    assert doc["format_version"] == 1
    assert doc["created_at"] == "2026-11-20T12:00:00Z"
    assert doc["summary"] == {"runs_to_create": 0, "runs_to_change": 2, "attribute_changes": 18,
                              "files_to_delete": 2, "bytes_to_free": 120_002_048,
                              "artifact_versions_to_delete": 0, "artifact_bytes_to_free": 0,
                              "artifact_ttls_to_set": 0}
    assert doc["skipped_running"] == 3
    run = doc["runs"][1]
    assert run["path"] == "acme/vision/def456"
    assert {"name", "fingerprint", "fingerprint_fields", "storage_id", "config_writes",
            "project_internal_id", "errors", "action", "changes"} <= run.keys()
    assert run["action"] == "update"
    first = run["changes"][0]
    assert first["path"] == 'config["a.b"].c'
    assert first["key"] == ["a.b", "c"]
    assert run["changes"][2]["from_key"] == ["val_acc"]
    assert run["changes"][10]["file"] == {"id": "RmlsZToy", "name": "media/images/sample 1.png", "size": 2048,
                                          "updated_at": "2026-11-20T09:00:00Z",
                                          "url": "http://127.0.0.1:8080/files/2", "md5": "abc=="}
    assert "from_key" not in run["changes"][1]
    assert "created" not in run["changes"][1]
    assert doc["runs"][0]["changes"][1]["created"] is True


def test_planfile_write_then_read(tmp_path: Path) -> None:
    """write_plan leaves only the plan file (no temporary) and read_plan gives the plan back."""
    target = tmp_path / "plan.json"
    target.write_text("old content")
    write_plan(representative_plan(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    assert _same(_plan_fields(read_plan(target)), _plan_fields(representative_plan()))


def test_planfile_write_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure before the rename leaves the previous plan untouched and no temporary behind."""
    target = tmp_path / "plan.json"
    target.write_text("previous plan")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_plan(representative_plan(), target)
    assert target.read_text() == "previous plan"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_planfile_read_other_format_version_is_stale(tmp_path: Path) -> None:
    """A plan of another format_version raises StalePlanError naming the file and both versions."""
    doc = plan_to_dict(representative_plan())
    doc["format_version"] = 2
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(StalePlanError, match=r"old\.json.*format_version 2.*reads version 1"):
        read_plan(path)


def test_planfile_read_missing_file(tmp_path: Path) -> None:
    """A missing file is a PlanError naming it and how to make one."""
    with pytest.raises(PlanError, match=r"nope\.json does not exist.*reconcile plan"):
        read_plan(tmp_path / "nope.json")


def test_planfile_read_invalid_json(tmp_path: Path) -> None:
    """Invalid JSON is a PlanError naming the file and the position."""
    path = tmp_path / "broken.json"
    path.write_text('{"format_version": 1,')
    with pytest.raises(PlanError, match=r"broken\.json is not valid JSON \(line 1"):
        read_plan(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("spec_digest"), "missing field 'spec_digest'"),
        (lambda d: d["runs"][0].pop("fingerprint"), "missing field 'runs\\[0\\].fingerprint'"),
        (lambda d: d["runs"][1]["changes"][3].pop("kind"), "missing field 'runs\\[1\\].changes\\[3\\].kind'"),
        (lambda d: d["runs"][0]["changes"][0].update(op="explode"), "expected one of set, unset"),
        (lambda d: d["runs"][0].update(path="acme/abc"), "ENTITY/PROJECT/RUN_ID"),
        (lambda d: d.update(created_at="yesterday"), "not an ISO 8601 time"),
        (lambda d: d.update(created_at="2026-01-01T00:00:00"), "has no timezone"),
        (lambda d: d.update(skipped_running="3"), "'skipped_running' should be int"),
        (lambda d: d.update(runs={}), "'runs' should be list"),
        (lambda d: d["runs"][0]["changes"][0].update(key=["a", 1]), "key\\[1\\]' should be a string"),
    ],
)
def test_planfile_read_invalid_plan(tmp_path: Path, mutate: Any, message: str) -> None:
    """A plan with a missing or mistyped field is a PlanError naming the file and the field."""
    doc = plan_to_dict(representative_plan())
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(PlanError, match=r"bad\.json is not a valid reconcile plan: .*" + message):
        read_plan(path)


def test_planfile_read_non_object(tmp_path: Path) -> None:
    """A JSON document that is not an object is refused."""
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(PlanError, match="expected a JSON object"):
        read_plan(path)


@pytest.mark.parametrize("runs", ["all", "none"])
def test_planfile_streamed_text_equals_one_json_document(runs: str) -> None:
    """The run-by-run writer produces exactly the indented JSON of the whole document."""
    plan = representative_plan()
    if runs == "none":
        plan = dataclasses.replace(plan, runs=())
    expected = json.dumps(plan_to_dict(plan), indent=2, ensure_ascii=False, allow_nan=True) + "\n"
    assert dumps(plan) == expected


def _tampered(tmp_path: Path, edit: Any) -> Path:
    path = tmp_path / "plan.json"
    write_plan(representative_plan(), path)
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _deletion(data: dict[str, Any]) -> dict[str, Any]:
    return next(c for r in data["runs"] for c in r["changes"] if c["op"] == "delete")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["runs"].append(d["runs"][0]), "listed twice"),
    (lambda d: d["summary"].update(files_to_delete=0), "summary.files_to_delete says 0"),
    (lambda d: d["summary"].update(bytes_to_free=1), "summary.bytes_to_free says 1"),
    (lambda d: _deletion(d).update(key=["model-best.pt"]), "key, before and file"),
    (lambda d: d["runs"][0]["changes"][0].update(after="edited"), "content_digest does not match"),
    (lambda d: d.pop("content_digest"), "has no content_digest"),
], ids=["run twice", "file count", "byte count", "deletion key", "digest", "no digest"])
def test_read_plan_refuses_a_plan_that_contradicts_itself(tmp_path: Path, edit: Any, message: str) -> None:
    """An edited or corrupt saved plan is refused on reading, naming what is wrong."""
    with pytest.raises(PlanError, match=message):
        read_plan(_tampered(tmp_path, edit))


def test_read_plan_accepts_the_plan_it_wrote(tmp_path: Path) -> None:
    """The checks do not refuse an untouched plan (its JSON re-serialized with other whitespace)."""
    read = read_plan(_tampered(tmp_path, lambda d: None))
    assert json.dumps(plan_to_dict(read), allow_nan=True) == json.dumps(plan_to_dict(representative_plan()),
                                                                       allow_nan=True)  # NaN != NaN


def test_original_upload_time_of_a_restored_file_survives_a_round_trip(tmp_path: Path) -> None:
    """A deletion's and a survivor's ``original_updated_at`` (display only) are written and read back."""
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    original = datetime(2026, 1, 2, 1, tzinfo=timezone.utc)
    file = LiveFile("f1", "ckpt-001.pt", 13, now)
    survivor = LiveFile("f2", "ckpt-002.pt", 13, now)
    change = Change(ChangeKind.FILE, ChangeOp.DELETE, ("ckpt-001.pt",), file, None, ("prune",), file=file,
                    detail="13 bytes, 334 days old", original_updated_at=original)
    assert change_from_dict(change_to_dict(change), "c") == change
    kept = KeptFile(survivor, (KeepReason("prune", "keep_last", "1 of 3"),), original)
    assert kept_from_dict(kept_to_dict(kept), "k") == kept
