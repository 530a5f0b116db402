"""Tests of the planner's spool: finished runs live on disk, not in memory, and come back in path order,
the same runs, with the same counts; the spool file leaves nothing behind."""

from __future__ import annotations

import gc
import io
import os
import tempfile
from pathlib import Path

import pytest

from reconcile import planner
from reconcile.errors import PlanError
from reconcile.models import (
    Change,
    ChangeKind,
    ChangeOp,
    FilesRule,
    Limits,
    Plan,
    RunAction,
    RunPlan,
    SetBlock,
    Spec,
    Totals,
)
from reconcile.render import render
from tests.unit.test_planner_files import NOW, TARGET, URL, rule, run

SPEC = Spec(1, TARGET, Limits(), (
    rule("prune", FilesRule(delete=("step-*.ckpt",), keep_last=1)),
    rule("tag", set=SetBlock(config={("lr",): 0.1}), add_tags=("pruned",)),
), "d", ())


def _alive_run_plans() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is RunPlan)


def _plan(count: int) -> Plan:
    """``count`` runs that each change (a config key, a tag, two file deletions), added out of order."""
    p = planner.Planner(SPEC, now=NOW, base_url=URL)
    for i in reversed(range(count)):
        p.add(run(f"r{i:05d}"))
    return p.finish()


@pytest.mark.parametrize("count", [50, 400])
def test_spool_planner_holds_no_finished_run(count: int) -> None:
    """Planning N changed runs keeps a bounded number of RunPlans alive, however large N: finished
    runs are on disk; reading them back holds one at a time."""
    before = _alive_run_plans()
    p = planner.Planner(SPEC, now=NOW, base_url=URL)
    for i in range(count):
        p.add(run(f"r{i:05d}"))
    assert _alive_run_plans() - before <= 2
    plan = p.finish()
    assert len(plan.runs) == count
    assert plan.changed_count == count
    for index, _read in enumerate(plan.runs):
        if index % 100 == 0:
            assert _alive_run_plans() - before <= 3
    plan.close()


def test_spool_planner_holds_no_imported_run() -> None:
    """Runs an import plans wait for ``finish`` on disk too (finish sets them against the rules' runs)."""
    before = _alive_run_plans()
    p = planner.Planner(SPEC, now=NOW, base_url=URL)
    for i in range(200):
        p.add_import(RunPlan(entity="acme", project="new", run_id=f"m{i:04d}", storage_id="", name=None,
                             fingerprint="absent", fingerprint_fields=(), action=RunAction.CREATE,
                             source="from-mlflow", changes=(Change(ChangeKind.NAME, ChangeOp.SET, (), None,
                                                                   f"m{i}", ("from-mlflow",)),)))
    assert _alive_run_plans() - before <= 2
    plan = p.finish()
    assert (len(plan.created_runs), plan.has_imports) == (200, True)
    assert [r.run_id for r in plan.runs][:2] == ["m0000", "m0001"]
    plan.close()


def test_spool_runs_come_back_in_path_order_with_their_counts() -> None:
    """The runs read back are sorted by path and are what was planned; every count matches them."""
    plan = _plan(30)
    runs = list(plan.runs)
    assert [r.run_id for r in runs] == [f"r{i:05d}" for i in range(30)]
    assert plan.runs == tuple(runs) and plan.runs[3] == runs[3] and plan.runs[-1] == runs[-1]
    assert plan.runs[1:3] == tuple(runs[1:3])
    assert plan.totals == Totals.of(runs)
    assert (plan.file_deletions, plan.attribute_changes, len(plan.updated_runs)) == (60, 60, 30)
    memory = Plan(spec_digest=plan.spec_digest, created_at=plan.created_at, base_url=plan.base_url,
                  runs=tuple(runs), runs_read=plan.runs_read, warnings=plan.warnings)
    assert memory == plan
    for fmt in ("text", "json", "markdown"):
        spooled, held = io.StringIO(), io.StringIO()
        render(plan, spooled, fmt, show_kept=True)
        render(memory, held, fmt, show_kept=True)
        assert spooled.getvalue() == held.getvalue(), fmt


def test_spool_file_leaves_nothing_in_the_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool has no name in the temp dir, while planning or after; once closed it cannot be read."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    p = planner.Planner(SPEC, now=NOW, base_url=URL)
    p.add(run("r1"))
    assert os.listdir(tmp_path) == []
    plan = p.finish()
    assert os.listdir(tmp_path) == []
    plan.close()
    with pytest.raises(PlanError, match="released"):
        list(plan.runs)
    assert os.listdir(tmp_path) == []
