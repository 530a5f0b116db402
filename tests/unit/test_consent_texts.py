"""What plan, apply and `apply --help` promise about an undo: files deleted with a backup are re-uploaded
by the undo plan; a deleted artifact version cannot be re-created (its files stay in the backup)."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from reconcile.apply.executor import check_consent
from reconcile.cli import main
from reconcile.errors import PlanError
from reconcile.models import Plan
from reconcile.render.common import deletion_note
from tests.unit.apply_helpers import file_delete, live_file, live_run, make_plan, run_plan
from tests.unit.test_apply_artifacts import delete, version


def _plan(*, files: bool, versions: bool) -> Plan:
    ckpt = live_file("f1", "ckpt/1.pt", 5)
    run = dataclasses.replace(live_run("r1", files=[ckpt]), artifacts=(version(0), version(1)))
    changes = ([file_delete(ckpt)] if files else []) + ([delete(version(0)), delete(version(1))] if versions
                                                         else [])
    return make_plan(dataclasses.replace(run_plan(run, [file_delete(ckpt)] if files else []),
                                         changes=tuple(changes)))


def _consent(plan: Plan) -> str:
    with pytest.raises(PlanError) as refused:
        check_consent(plan, backup_dir=None, no_backup=False)
    return str(refused.value)


def test_files_only_the_undo_plan_re_uploads_them() -> None:
    """A plan deleting files only: plan and apply say the undo plan re-uploads them."""
    plan = _plan(files=True, versions=False)
    for text in (deletion_note(plan) or "", _consent(plan)):
        assert "re-uploads" in text, text
        assert "artifact" not in text, text


def test_artifact_versions_only_no_promise_of_a_re_upload() -> None:
    """A plan deleting artifact versions only: neither text promises a re-upload; both say a deleted
    version cannot be re-created and its files stay in the backup directory."""
    plan = _plan(files=False, versions=True)
    for text in (deletion_note(plan) or "", _consent(plan)):
        assert "2 artifact versions" in text, text
        assert "re-upload" not in text, text
        assert "cannot be re-created" in text and "files stay in DIR" in text, text


def test_files_and_versions_each_get_the_truth() -> None:
    """Both: the files are re-uploaded by the undo plan, the versions cannot be re-created."""
    plan = _plan(files=True, versions=True)
    for text in (deletion_note(plan) or "", _consent(plan)):
        assert "re-uploads the files" in text, text
        assert "cannot re-create the artifact versions" in text, text


def test_apply_help_says_what_the_undo_restores() -> None:
    """`apply --help` on --backup-dir: files are re-uploaded, artifact versions cannot be re-created."""
    shown = " ".join(CliRunner().invoke(main, ["apply", "--help"]).output.split())
    assert "a deleted artifact version cannot be re-created" in shown, shown
