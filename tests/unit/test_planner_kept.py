""" "Kept and why" in the planner: each surviving candidate with its reasons, and the warning for a
files rule whose globs match nothing."""

from __future__ import annotations

from datetime import timedelta

from reconcile.models import FilesRule, Goal, Match, OrderBy, RunPlan, UnlessTop
from tests.unit.test_planner_files import STANDARD, f, plan_of, rule, run


def kept_of(run_plan: RunPlan) -> dict[str, list[str]]:
    """File name -> "rule: reason" strings."""
    return {k.file.name: [f"{r.rule}: {r}" for r in k.reasons] for k in run_plan.kept}


def test_kept_lists_every_surviving_candidate_with_its_reason() -> None:
    """keep globs, system files, older_than, larger_than and keep_last each name themselves."""
    files = (*STANDARD, f("tiny.ckpt", days=90, size=10))
    p = plan_of(
        rule(
            "prune",
            FilesRule(
                delete=("**",),
                keep=("model-best.*",),
                older_than=timedelta(days=30),
                larger_than=100,
                keep_last=1,
            ),
        ),
        runs=(run(files=files),),
    )
    [rp] = p.runs
    # Left to rank after protection and narrowing: step-1 (90 days), step-2 (60), media (40).
    assert sorted(c.key[0] for c in rp.file_deletions) == ["step-1.ckpt", "step-2.ckpt"]
    assert kept_of(rp) == {
        "media/images/a.png": ["prune: keep_last 1 of 1"],
        "model-best.ckpt": ['prune: keep "model-best.*"', "prune: older_than 30d not reached (1 day old)"],
        "output.log": ["prune: system_file"],
        "step-3.ckpt": ["prune: older_than 30d not reached (2 days old)"],
        "tiny.ckpt": ["prune: larger_than 100 bytes not exceeded (10 bytes)"],
        "wandb-metadata.json": ["prune: system_file"],
    }


def test_calendar_reasons_and_order_by_name_in_a_plan() -> None:
    """keep_daily names the UTC day; order_by: name picks the highest step of a re-uploaded day."""
    files = (f("step-900.pt", days=1.2), f("step-1000.pt", days=1.4), f("step-50.pt", days=10))
    p = plan_of(
        rule("daily", FilesRule(delete=("*.pt",), keep_daily=1, order_by=OrderBy.NAME)),
        runs=(run(files=files),),
    )
    [rp] = p.runs
    assert sorted(c.key[0] for c in rp.file_deletions) == ["step-50.pt", "step-900.pt"]
    assert kept_of(rp) == {"step-1000.pt": ["daily: keep_daily 2026-05-30"]}


def test_keep_within_reason() -> None:
    """keep_within keeps what is newer than the newest candidate minus the duration."""
    files = (f("a.pt", days=50), f("b.pt", days=20), f("c.pt", days=15))
    [rp] = plan_of(
        rule("w", FilesRule(delete=("*.pt",), keep_within=timedelta(days=30))), runs=(run(files=files),)
    ).runs
    assert [c.key[0] for c in rp.file_deletions] == ["a.pt"]
    assert kept_of(rp) == {"b.pt": ["w: keep_within 30d"], "c.pt": ["w: keep_within 30d"]}


def test_a_run_with_only_kept_candidates_is_listed_without_changes() -> None:
    """Both sides of a retention change: a run where everything survives still shows why."""
    files = (f("a.pt", days=5), f("b.pt", days=6))
    p = plan_of(rule("k", FilesRule(delete=("*.pt",), keep_last=5)), runs=(run(files=files),))
    [rp] = p.runs
    assert rp.changes == ()
    assert not p.has_changes
    assert set(kept_of(rp)) == {"a.pt", "b.pt"}


def test_a_file_deleted_by_one_rule_is_not_kept_by_another() -> None:
    """Kept means surviving the whole plan: another rule's delete wins over a rule that spares it
    (unless a keep glob protects it, which any rule's keep does)."""
    files = (f("a.pt", days=5), f("b.pt", days=6))
    p = plan_of(
        rule("spare", FilesRule(delete=("*.pt",), keep_last=2)),
        rule("drop", FilesRule(delete=("b.pt",))),
        runs=(run(files=files),),
    )
    [rp] = p.runs
    assert [c.key[0] for c in rp.file_deletions] == ["b.pt"]
    assert kept_of(rp) == {"a.pt": ["spare: keep_last 1 of 2"]}


def test_unless_top_reason_names_the_metric() -> None:
    """A top run's candidates survive with the unless_top reason."""
    top = UnlessTop(("acc",), Goal.MAXIMIZE, 1)
    files = (f("a.pt"),)
    p = plan_of(
        rule("t", FilesRule(delete=("*.pt",), unless_top=top)),
        runs=(run("good", files=files, summary={"acc": 0.9}), run("bad", files=files, summary={"acc": 0.1})),
    )
    by_id = {rp.run_id: rp for rp in p.runs}
    assert [c.key[0] for c in by_id["bad"].file_deletions] == ["a.pt"]
    assert by_id["good"].changes == ()
    assert kept_of(by_id["good"]) == {"a.pt": ["t: unless_top top 1 by acc (maximize)"]}


def test_globs_that_match_nothing_are_a_warning() -> None:
    """A typo in files.delete is reported instead of a silent "No changes"."""
    p = plan_of(rule("typo", FilesRule(delete=("*.ckpnt",))), rule("fine", FilesRule(delete=("*.ckpt",))))
    assert p.warnings == (
        "rule 'typo': files.delete globs ['*.ckpnt'] match no file of the one run it matches",
    )
    assert not p.has_errors


def test_a_files_rule_matching_no_run_is_a_warning() -> None:
    """No matched run at all: the warning says so."""
    p = plan_of(rule("none", FilesRule(delete=("*.ckpt",)), match=Match(ids=("nope",))))
    assert p.warnings == (
        "rule 'none': files.delete globs ['*.ckpt'] match no file of any run: it matches no run",
    )


def test_globs_that_match_only_protected_files_are_no_warning() -> None:
    """A glob that finds files, all of them kept, is doing its job."""
    p = plan_of(rule("k", FilesRule(delete=("model-best.*",), keep=("model-best.*",))))
    assert p.warnings == ()
