"""Planning an import purely: creations, in-place updates of what changed in the source, no-ops."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconcile.errors import AuthError
from reconcile.import_planner import ABSENT_FINGERPRINT, plan_import
from reconcile.import_reads import open_source
from reconcile.models import (
    ChangeKind,
    ChangeOp,
    Import,
    LiveFile,
    LiveRun,
    Location,
    MlflowSource,
    Plan,
    RunAction,
    Target,
    WandbSource,
)
from reconcile.planfile import dumps, plan_from_dict
from reconcile.planner import Planner
from reconcile.render import render
from reconcile.sources import SourceFile, SourceRun
from reconcile.spec import load_spec

ENTRY = Import(
    "churn-from-mlflow", Location("s.yaml", 3, 5), MlflowSource(("churn",)), Target("acme", "churn")
)
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
SOURCE = SourceRun(
    id="a1b2c3", name="run-00", state="finished", created_at=START,
    config={"lr": "0.1", "layers": "2"}, summary={"loss": 0.25, "auc": 0.81}, tags=("team:churn",),
    notes="baseline", group="churn", steps=tuple(range(500)), history_keys=("auc", "loss"),
    files=(SourceFile("model/weights.bin", 2048), SourceFile("report.txt", 12)),
)


def imported(source: SourceRun = SOURCE) -> LiveRun:
    """The destination run as a complete import of ``source`` leaves it."""
    return LiveRun(
        entity="acme", project="churn", id=source.id, storage_id="UnVuOjE=", name=source.name,
        state=source.state, created_at=source.created_at,
        config={**source.config, "_wandb": {"v": 1}},
        summary={**source.summary, "_step": source.last_step, "_runtime": 12.5},
        tags=source.tags, group=source.group, notes=source.notes,
        files=tuple(LiveFile(f"id-{f.name}", f.name, f.size, START) for f in source.files),
    )


def test_an_absent_run_is_created_with_every_mapped_field() -> None:
    plan = plan_import(ENTRY, "acme", "churn", SOURCE, None)
    assert plan is not None
    assert (plan.action, plan.path, plan.name, plan.source) == (
        RunAction.CREATE, "acme/churn/a1b2c3", "run-00", "churn-from-mlflow")
    assert plan.fingerprint == ABSENT_FINGERPRINT
    assert plan.source_fingerprint == SOURCE.fingerprint()
    got = {(c.kind, c.op, c.key): c.after for c in plan.changes}
    assert got == {
        (ChangeKind.CONFIG, ChangeOp.SET, ("layers",)): "2",
        (ChangeKind.CONFIG, ChangeOp.SET, ("lr",)): "0.1",
        (ChangeKind.SUMMARY, ChangeOp.SET, ("auc",)): 0.81,
        (ChangeKind.SUMMARY, ChangeOp.SET, ("loss",)): 0.25,
        (ChangeKind.TAGS, ChangeOp.ADD, ("team:churn",)): "team:churn",
        (ChangeKind.NAME, ChangeOp.SET, ()): "run-00",
        (ChangeKind.NOTES, ChangeOp.SET, ()): "baseline",
        (ChangeKind.GROUP, ChangeOp.SET, ()): "churn",
        (ChangeKind.STATE, ChangeOp.SET, ()): "finished",
        (ChangeKind.HISTORY, ChangeOp.ADD, ()): {"rows": 500, "first_step": 0, "last_step": 499,
                                                 "metrics": ["auc", "loss"]},
        (ChangeKind.FILE, ChangeOp.ADD, ("model/weights.bin",)): 2048,
        (ChangeKind.FILE, ChangeOp.ADD, ("report.txt",)): 12,
    }
    assert all(c.rules == ("churn-from-mlflow",) for c in plan.changes)


def test_a_run_in_sync_plans_nothing() -> None:
    assert plan_import(ENTRY, "acme", "churn", SOURCE, imported()) is None


def test_a_changed_source_plans_only_the_difference() -> None:
    """New steps, a changed param, a new tag, a new file, a finished state: exactly those."""
    live = imported()
    source = SourceRun(**{
        **{f: getattr(SOURCE, f) for f in SOURCE.__slots__},  # type: ignore[attr-defined]
        "config": {"lr": "0.05", "layers": "2"},
        "summary": {"loss": 0.2, "auc": 0.81},
        "tags": ("team:churn", "reviewed"),
        "steps": tuple(range(510)),
        "files": (*SOURCE.files, SourceFile("eval.json", 99)),
    })
    plan = plan_import(ENTRY, "acme", "churn", source, live)
    assert plan is not None
    assert plan.action is RunAction.UPDATE
    assert plan.storage_id == "UnVuOjE="
    got = [(c.kind, c.op, c.key, c.before, c.after) for c in plan.changes]
    assert got == [
        (ChangeKind.CONFIG, ChangeOp.SET, ("lr",), "0.1", "0.05"),
        (ChangeKind.SUMMARY, ChangeOp.SET, ("loss",), 0.25, 0.2),
        (ChangeKind.TAGS, ChangeOp.ADD, ("reviewed",), None, "reviewed"),
        (ChangeKind.HISTORY, ChangeOp.ADD, (), 499,
         {"rows": 10, "first_step": 500, "last_step": 509, "metrics": ["auc", "loss"]}),
        (ChangeKind.FILE, ChangeOp.ADD, ("eval.json",), None, 99),
    ]
    # The fingerprint covers the destination fields compared: a concurrent edit of them makes it stale.
    assert ("config", "lr") in plan.fingerprint_fields and ("summary", "_step") in plan.fingerprint_fields


def test_keys_wb_owns_and_keys_the_source_lacks_are_left_alone() -> None:
    live = imported()
    live = LiveRun(**{**{f: getattr(live, f) for f in live.__slots__},  # type: ignore[attr-defined]
                      "config": {**live.config, "extra": 1}, "tags": (*live.tags, "mine")})
    assert plan_import(ENTRY, "acme", "churn", SOURCE, live) is None


def _plan(*runs: object) -> Plan:
    return Plan(spec_digest="sha256:x", created_at=START, base_url="http://127.0.0.1:1", runs=runs)  # type: ignore[arg-type]


def test_plan_text_says_will_be_created_and_counts_runs_to_create() -> None:
    plan = _plan(plan_import(ENTRY, "acme", "churn", SOURCE, None))
    out = io.StringIO()
    render(plan, out, "text")
    text = out.getvalue()
    assert '  # acme/churn/a1b2c3 "run-00" will be created' in text
    assert "      + history (500 rows, steps 0..499: auc, loss)  # churn-from-mlflow" in text
    assert '      + file "model/weights.bin" (2 KiB)  # churn-from-mlflow' in text
    assert '      + config.lr' in text and '= "0.1"' in text
    assert text.rstrip().splitlines()[-1] == (
        "Plan: 1 run to create, 0 runs to change (0 attribute changes), 2 files to upload (2.01 KiB), "
        "0 files to delete (0 bytes).")


def test_plan_json_marks_creations_and_round_trips() -> None:
    plan = _plan(plan_import(ENTRY, "acme", "churn", SOURCE, None),
                 plan_import(ENTRY, "acme", "churn", SOURCE, LiveRun(**{
                     **{f: getattr(imported(), f) for f in LiveRun.__slots__},  # type: ignore[attr-defined]
                     "id": "zz", "notes": "edited"})))
    data = json.loads(dumps(plan))
    assert [r["action"] for r in data["runs"]] == ["create", "update"]
    assert data["runs"][0]["import"] == "churn-from-mlflow"
    assert data["summary"]["runs_to_create"] == 1 and data["summary"]["runs_to_change"] == 1
    assert plan_from_dict(data) == plan


def test_a_run_both_imported_and_changed_by_rules_is_a_plan_error(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("version: 1\ntarget: {entity: acme, project: churn}\nrules:\n  - name: tag-all\n"
                         "    match: {all: true}\n    add_tags: [x]\n")
    planner = Planner(load_spec([spec_file]), now=START, base_url="http://127.0.0.1:1")
    planner.add(imported())
    planner.add_import(plan_import(ENTRY, "acme", "churn", SOURCE, None))  # type: ignore[arg-type]
    plan = planner.finish()
    assert plan.errors == ("acme/churn/a1b2c3 is imported by 'churn-from-mlflow' and changed by rules in the "
                           "same plan; apply the import first, then plan the rules",)


def test_imports_count_against_max_changed_runs(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("version: 1\nlimits: {max_changed_runs: 0}\n")
    planner = Planner(load_spec([spec_file]), now=START, base_url="http://127.0.0.1:1")
    planner.add_import(plan_import(ENTRY, "acme", "churn", SOURCE, None))  # type: ignore[arg-type]
    (error,) = planner.finish().errors
    assert error.startswith("limits.max_changed_runs is 0 but the plan has 1 run to change")


def test_an_import_from_wandb_without_its_key_variable_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_KEY_FOR_TEST", raising=False)
    source = WandbSource("http://127.0.0.1:1", "SOURCE_KEY_FOR_TEST", "e", "p")
    entry = Import("w", Location("s.yaml", 1, 1), source, Target())
    with pytest.raises(AuthError, match="environment variable SOURCE_KEY_FOR_TEST, which is not set"):
        open_source(entry, parallelism=1)


ROWS = tuple({"_step": s, "_timestamp": 1_767_225_600.0 + s, "loss": 1 / (s + 1),
              **({"auc": 0.5 + s / 1000} if s % 2 == 0 else {})} for s in range(500))
LATEST = {"loss": (499, 1_767_226_099_000), "auc": (498, 1_767_226_098_000)}
CARRYING = SourceRun(**{**{f: getattr(SOURCE, f) for f in SourceRun.__slots__},  # type: ignore[attr-defined]
                        "rows": ROWS, "latest": LATEST})


def test_a_source_read_with_its_rows_is_planned_with_them_and_its_revision() -> None:
    created = plan_import(ENTRY, "acme", "churn", CARRYING, None)
    assert created is not None and created.source_rows == ROWS
    assert created.source_revision == CARRYING.revision()
    live = imported(CARRYING)
    live = LiveRun(**{**{f: getattr(live, f) for f in LiveRun.__slots__},  # type: ignore[attr-defined]
                      "summary": {**live.summary, "_step": 489}})
    updated = plan_import(ENTRY, "acme", "churn", CARRYING, live)
    assert updated is not None and [r["_step"] for r in updated.source_rows or ()] == list(range(490, 500))
    without = plan_import(ENTRY, "acme", "churn", SOURCE, None)  # a reader that reads rows at apply
    assert without is not None and (without.source_rows, without.source_revision) == (None, None)


def test_the_revision_sees_each_keys_last_point_and_every_field_but_the_steps() -> None:
    def changed(**fields: object) -> str:
        slots = SourceRun.__slots__  # type: ignore[attr-defined]
        return SourceRun(**{**{f: getattr(CARRYING, f) for f in slots}, **fields}).revision()

    assert changed(steps=(), rows=None) == CARRYING.revision()  # what peek reads: no history
    assert changed(latest={**LATEST, "loss": (500, 1_767_226_100_000)}) != CARRYING.revision()  # a later step
    assert changed(latest={**LATEST, "loss": (499, 1_767_226_099_001)}) != CARRYING.revision()  # re-logged
    assert changed(summary={"loss": 0.2, "auc": 0.81}) != CARRYING.revision()
    assert changed(files=(SourceFile("report.txt", 13),)) != CARRYING.revision()
    assert changed(tags=("team:churn", "new")) != CARRYING.revision()


def test_carried_rows_are_written_one_per_line_and_read_back_exactly(tmp_path: Path) -> None:
    from reconcile.planfile import read_plan, write_plan

    plan = _plan(plan_import(ENTRY, "acme", "churn", CARRYING, None))
    text = dumps(plan)
    assert len(text.splitlines()) < len(ROWS) + 300  # indented, the 500 rows alone would take ~2,500 lines
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith('{"_step"')) == len(ROWS)
    assert plan_from_dict(json.loads(text)) == plan
    write_plan(plan, tmp_path / "plan.json")
    assert read_plan(tmp_path / "plan.json") == plan


@pytest.mark.parametrize(("edit", "message"), [
    (lambda run: run.pop("source_revision"), "comes without 'source_revision'"),
    (lambda run: run["source_rows"][3].update({"_step": "3"}), "source_rows[3]' should be a history row"),
    (lambda run: run["source_rows"][3].update({"_step": 1}), "source_rows[3]' should be a history row"),
    (lambda run: run["source_rows"].__setitem__(0, [1]), "source_rows[0]' should be a history row"),
])
def test_carried_rows_that_were_edited_are_refused_naming_the_field(edit: object, message: str) -> None:
    from reconcile.errors import PlanError

    data = json.loads(dumps(_plan(plan_import(ENTRY, "acme", "churn", CARRYING, None))))
    edit(data["runs"][0])  # type: ignore[operator]
    with pytest.raises(PlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_from_dict(data)
