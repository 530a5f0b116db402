"""``reconcile apply``: apply a saved plan, or plan from specs and apply after confirmation.

Defaults: for ``apply PLAN.json`` the journal is ``PLAN.journal.jsonl`` and the undo plan
``PLAN.undo.json``, beside the plan. ``apply -f SPEC`` saves its plan as ``reconcile.plan.json``
in the current directory and applies it the same way (``reconcile.plan.journal.jsonl``,
``reconcile.plan.undo.json``), so ``reconcile apply reconcile.plan.json`` finishes an apply
killed halfway. ``--journal`` / ``--undo-out`` override.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import structlog

from reconcile.apply.executor import ApplyResult, apply_plan, check_consent, check_plan, check_run
from reconcile.apply.journal import Journal, JournalLock, PlanLock, plan_digest, unfinished
from reconcile.apply.progress import observers_for
from reconcile.apply.undo import UndoWriter, describe, is_undo
from reconcile.backend import Backend
from reconcile.commands.paths import check_distinct, check_output_dir, check_output_file
from reconcile.commands.plan import build_plan
from reconcile.errors import PlanError
from reconcile.errors_handler import EXIT_ERROR, EXIT_OK
from reconcile.models import PlanLike
from reconcile.planfile import SavedPlan, open_plan, write_plan
from reconcile.render import render
from reconcile.spec.files import expand

log = structlog.get_logger()

CONFIRM = "Do you want to perform these actions? Only 'yes' will be accepted:"

FROM_SPEC_PLAN = Path("reconcile.plan.json")


def beside(plan_file: Path, suffix: str) -> Path:
    """``plan.json`` -> ``plan<suffix>`` in the same directory (``.journal.jsonl``, ``.undo.json``)."""
    stem = plan_file.name[:-5] if plan_file.name.endswith(".json") else plan_file.name
    return plan_file.with_name(stem + suffix)


FROM_SPEC_JOURNAL = beside(FROM_SPEC_PLAN, ".journal.jsonl")
FROM_SPEC_UNDO = beside(FROM_SPEC_PLAN, ".undo.json")


def _confirm(auto_approve: bool) -> bool:
    """Terraform's prompt: only the literal answer ``yes`` goes ahead."""
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise PlanError(
            "apply -f needs confirmation but there is no terminal to ask on. Pass --auto-approve, or save "
            "the plan with `reconcile plan -f SPEC -o plan.json` and run `reconcile apply plan.json`. "
            f"(apply -f keeps its journal in ./{FROM_SPEC_JOURNAL} and the undo plan in ./{FROM_SPEC_UNDO} "
            "unless --journal / --undo-out say otherwise.)")
    answer = click.prompt(f"\n{CONFIRM}", default="", show_default=False, prompt_suffix=" ")
    return bool(answer.strip() == "yes")


def _say(text: str, *, json_logs: bool, event: str, problem: bool = False, **fields: object) -> None:
    """A note for stderr: a plain line, or with ``--log-format json`` a structured log event."""
    if not json_logs:
        click.echo(text, err=True)
    elif problem:
        log.warning(event, message=text, **fields)
    else:
        log.info(event, message=text, **fields)


def execute(plan: PlanLike, backend: Backend, *, plan_file: Path, journal_path: Path, undo_out: Path,
            backup_dir: Path | None, no_backup: bool, parallelism: int, lock: JournalLock,
            json_logs: bool = False, color: bool = False) -> ApplyResult:
    """Apply ``plan`` (saved at ``plan_file``) with the journal (``lock`` held) and the plan's own lock,
    progress observers, and the undo plan written to ``undo_out`` as the runs finish."""
    # Two applies of one plan with different journals would both write: the plan itself is locked too.
    plan_lock = PlanLock.acquire(plan_file, plan_digest(plan), journal_path)
    try:
        return _execute(plan, backend, journal_path=journal_path, undo_out=undo_out, backup_dir=backup_dir,
                        no_backup=no_backup, parallelism=parallelism, lock=lock, json_logs=json_logs,
                        color=color)
    finally:
        plan_lock.release()


def _execute(plan: PlanLike, backend: Backend, *, journal_path: Path, undo_out: Path,
             backup_dir: Path | None, no_backup: bool, parallelism: int, lock: JournalLock, json_logs: bool,
             color: bool) -> ApplyResult:
    check_plan(plan, backend)  # refuse before creating a journal for a plan that cannot be applied
    check_consent(plan, backup_dir=backup_dir, no_backup=no_backup)
    journal = Journal.open(journal_path, plan, lock=lock)
    if journal.replaced is not None:
        _keep_earlier_undo(undo_out, journal.replaced, json_logs=json_logs)
    undo = UndoWriter(plan, undo_out)
    try:
        result = apply_plan(plan, backend, journal=journal, parallelism=parallelism, backup_dir=backup_dir,
                            no_backup=no_backup, undo=undo,
                            observers=observers_for(sys.stderr, json_logs=json_logs, color=color))
    finally:
        undo.discard()  # after finish() it is gone already; after a crash the journal holds the undo data
        journal.close()
    lines = describe(result.undo_summary, result.lost, versions_deleted=result.versions_deleted,
                     artifact_backups=result.artifact_backups, unchecked=result.unchecked)
    _say(f"Wrote the undo plan to {undo_out}; `reconcile apply {undo_out}` undoes this apply. "
         + " ".join(lines), json_logs=json_logs, event="undo_written", path=str(undo_out))
    return result


def _keep_earlier_undo(undo_out: Path, digest: str, *, json_logs: bool) -> None:
    """This apply replaced the finished journal of plan ``digest``: the undo plan that apply wrote (at the
    same path) is kept beside, named by that plan's digest, instead of being overwritten."""
    if not undo_out.exists():
        return
    name = digest.removeprefix("sha256:")[:12]
    kept, n = beside(undo_out, f".{name}.json"), 1
    while kept.exists():  # that plan was applied more than once: keep every undo plan
        n += 1
        kept = beside(undo_out, f".{name}-{n}.json")
    undo_out.rename(kept)
    _say(f"Kept the undo plan of the earlier apply (of plan {digest}) as {kept}; `reconcile apply {kept}` "
         "still undoes that apply.", json_logs=json_logs, event="earlier_undo_kept", path=str(kept))


def _check_outputs(*, plan_file: Path | None, specs: list[Path], journal: Path, undo_out: Path,
                   backup_dir: Path | None, plan_out: Path | None) -> None:
    """Every file apply will write can be written, and none is an input or another output: checked
    before anything goes to W&B."""
    outputs = [("--journal", journal), ("--undo-out", undo_out)]
    if plan_out is not None:
        outputs.append(("apply -f's saved plan", plan_out))
    if backup_dir is not None:
        outputs.append(("--backup-dir", backup_dir))
    inputs = [("the plan being applied", plan_file)] if plan_file is not None else []
    inputs += [("a spec file", path) for _name, path in expand(specs)[0]]
    check_distinct(outputs, inputs)
    check_output_file(journal, "--journal")
    check_output_file(undo_out, "--undo-out")
    if plan_out is not None:
        check_output_file(plan_out, "apply -f's saved plan")
    if backup_dir is not None:
        check_output_dir(backup_dir, "--backup-dir")


def run(*, plan_file: Path | None, files: list[Path], auto_approve: bool, journal: Path | None,
        backup_dir: Path | None, no_backup: bool = False, undo_out: Path | None, targets: list[str],
        color: bool, parallelism: int, log_format: str) -> int:
    """Apply and print ``Apply complete: ...``; exit 0 only if every run was applied."""
    json_logs = log_format == "json"  # the CLI configured structlog; notes follow the same format
    if plan_file is not None and targets:
        raise PlanError("--target only works with -f; a saved plan is applied exactly as it is")
    if backup_dir is not None and no_backup:
        raise PlanError("--backup-dir and --no-backup contradict each other; give one of them.")
    # A saved plan is checked whole here, then read run by run while it is applied (never held whole).
    plan = open_plan(plan_file, checks=(check_run,)) if plan_file is not None else None
    try:
        return _checked(plan, plan_file=plan_file, files=files, auto_approve=auto_approve, journal=journal,
                        backup_dir=backup_dir, no_backup=no_backup, undo_out=undo_out, targets=targets,
                        color=color, parallelism=parallelism, json_logs=json_logs)
    finally:
        if plan is not None:
            plan.close()


def _checked(plan: SavedPlan | None, *, plan_file: Path | None, files: list[Path], auto_approve: bool,
             journal: Path | None, backup_dir: Path | None, no_backup: bool, undo_out: Path | None,
             targets: list[str], color: bool, parallelism: int, json_logs: bool) -> int:
    if plan_file is not None:
        journal_path = journal or beside(plan_file, ".journal.jsonl")
        undo_path = undo_out or beside(plan_file, ".undo.json")
    else:
        journal_path, undo_path = journal or FROM_SPEC_JOURNAL, undo_out or FROM_SPEC_UNDO
    _check_outputs(plan_file=plan_file, specs=files, journal=journal_path, undo_out=undo_path,
                   backup_dir=backup_dir, plan_out=FROM_SPEC_PLAN if plan is None else None)
    if plan is not None:
        check_consent(plan, backup_dir=backup_dir, no_backup=no_backup)
    lock = JournalLock.acquire(journal_path)  # before anything reads or writes the journal
    try:
        return _locked(plan, files=files, auto_approve=auto_approve,
                       journal_path=journal_path, undo_path=undo_path, backup_dir=backup_dir,
                       no_backup=no_backup, targets=targets, color=color, parallelism=parallelism,
                       json_logs=json_logs, lock=lock)
    finally:
        lock.release()


def _locked(saved: SavedPlan | None, *, files: list[Path], auto_approve: bool,
            journal_path: Path, undo_path: Path, backup_dir: Path | None, no_backup: bool, targets: list[str],
            color: bool, parallelism: int, json_logs: bool, lock: JournalLock) -> int:
    from reconcile.backend.wandb_api import WandbBackend

    backend = WandbBackend()
    opened: SavedPlan | None = None
    try:
        if saved is None:
            if unfinished(journal_path):
                # Its journal is the only record of what that apply changed and how to undo it.
                raise PlanError(
                    f"an earlier `reconcile apply -f` did not finish ({journal_path} is incomplete). Finish "
                    f"it first with `reconcile apply {FROM_SPEC_PLAN}`, or delete {journal_path} if that "
                    "apply is no longer wanted.")
            built = build_plan(files, targets, backend)
            render(built, sys.stdout, "text", color=color)
            if built.has_errors:
                return EXIT_ERROR
            if not built.has_changes:
                return EXIT_OK
            check_consent(built, backup_dir=backup_dir, no_backup=no_backup)  # before asking
            if not _confirm(auto_approve):
                click.echo("Apply cancelled.", err=True)
                return EXIT_ERROR
            # Saved so that an apply killed halfway can be finished exactly: `reconcile apply` of it;
            # then applied from that file, run by run, like any saved plan.
            write_plan(built, FROM_SPEC_PLAN)
            del built
            plan = opened = open_plan(FROM_SPEC_PLAN, checks=(check_run,))
        else:
            plan = saved
        result = execute(plan, backend, plan_file=plan.path, journal_path=journal_path, undo_out=undo_path,
                         backup_dir=backup_dir, no_backup=no_backup, parallelism=parallelism, lock=lock,
                         json_logs=json_logs, color=color)
    finally:
        backend.close()
        if opened is not None:
            opened.close()
    click.echo(result.summary_line)
    if result.skipped:
        were = "run was" if result.skipped == 1 else "runs were"
        _say(f"({result.skipped} {were} finished by an earlier apply of this plan; see {journal_path}.)",
             json_logs=json_logs, event="runs_already_done", runs=result.skipped)
    if not result.ok:
        stale = ("see each stale run's line (an undo plan cannot be made again)" if is_undo(plan)
                 else "plan again for stale runs")
        _say(f"Not every run was applied: {stale}; apply the same plan again to retry failed ones (the "
             "journal skips what is done).", json_logs=json_logs, event="apply_incomplete", problem=True)
        return EXIT_ERROR
    return EXIT_OK
