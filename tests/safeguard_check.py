"""Remove each safeguard the suite claims to protect, one at a time, and check that a test fails.

    .venv/bin/python tests/safeguard_check.py            # every safeguard (a few minutes)
    .venv/bin/python tests/safeguard_check.py redaction  # only those whose name contains "redaction"

Each entry edits one source file in place (exact text, which must still be there: a refactor that moves
the safeguard makes this script say so rather than pass), runs the tests that should catch it, and
restores the file whatever happens. Not part of `make test`; the results are in tests/README.md.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Safeguard:
    """One safeguard: where it is, how it is removed, which tests must notice."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


_PLAN = "tests/integration/test_plan.py::"
_FILES = "tests/unit/test_planner_files.py::"
SAFETY = "tests/integration/test_data_safety.py::"
GUARDS = "tests/integration/test_apply_guards.py::"
BACKUP = "tests/unit/test_apply_backup.py::"
ARTIFACTS = "tests/unit/test_apply_artifacts.py::"
RETENTION = "tests/unit/test_artifact_retention.py::"
TTL = "tests/unit/test_artifact_ttl.py::"
OUTPUT = "tests/integration/test_plan_output_failures.py::"

SAFEGUARDS = (
    Safeguard("redaction processor left out of the logging chain", "reconcile/log.py",
              "            redact_processor,\n", "", ("tests/unit/test_log.py",)),
    Safeguard("template conversions ({id!r}) accepted", "reconcile/templates.py",
              "        if conversion:\n", "        if False:\n", ("tests/unit/test_templates.py",)),
    Safeguard("--format accepts any text", "reconcile/cli.py",
              'FORMATS = click.Choice(["text", "json", "markdown"])', "FORMATS = click.STRING",
              ("tests/unit/test_cli.py",)),
    Safeguard("--parallelism accepts 0", "reconcile/cli.py",
              "type=click.IntRange(1, 64), default=10", "type=int, default=10", ("tests/unit/test_cli.py",)),
    Safeguard("MemoryBackend drifts from the Backend protocol", "reconcile/backend/memory.py",
              "def list_files(self, run: LiveRun)", "def list_files(self, the_run: LiveRun)",
              ("tests/unit/test_memory_backend.py::test_backend_implements_every_protocol_method_with_its_signature",)),
    Safeguard("a dropped connection classified as W&B refusing", "reconcile/backend/wandb_api.py",
              '_DROPPED_MARKERS = ("unexpected eof", ', "_DROPPED_MARKERS = (",
              ("tests/integration/test_backend_errors.py",)),
    Safeguard("wandb-core's give-up wording no longer recognised", "reconcile/backend/wandb_api.py",
              '_HTTP_CODE = re.compile(r"\\bHTTP (\\d{3})\\b")',
              '_HTTP_CODE = re.compile(r"\\bHTTPS (\\d{3})\\b")',
              ("tests/integration/test_backend_errors.py",)),
    Safeguard("apply -f proceeds on 'y' / 'YES'", "reconcile/commands/apply.py",
              'return bool(answer.strip() == "yes")', 'return bool(answer.strip().lower() in ("yes", "y"))',
              ("tests/integration/test_apply_cli.py::test_apply_f_prompt_answers_in_process",)),
    Safeguard("apply PLAN --target not refused", "reconcile/commands/apply.py",
              "    if plan_file is not None and targets:\n", "    if False:\n",
              ("tests/integration/test_apply_cli.py::test_apply_saved_plan_with_target_is_refused",)),
    Safeguard("--journal ignored for a saved plan", "reconcile/commands/apply.py",
              'journal_path = journal or beside(plan_file, ".journal.jsonl")',
              'journal_path = beside(plan_file, ".journal.jsonl")',
              ("tests/integration/test_apply_cli.py::test_journal_and_undo_out_override_the_defaults",)),
    Safeguard("--undo-out ignored for a saved plan", "reconcile/commands/apply.py",
              'undo_path = undo_out or beside(plan_file, ".undo.json")',
              'undo_path = beside(plan_file, ".undo.json")',
              ("tests/integration/test_apply_cli.py::test_journal_and_undo_out_override_the_defaults",)),
    Safeguard("-v no longer opens info", "reconcile/log.py",
              "level = logging.WARNING - 10 * min(verbosity, 2)",
              "level = logging.WARNING - 10 * min(verbosity // 2, 2)",
              ("tests/unit/test_log.py",)),
    Safeguard("progress bar stops counting deleted files", "reconcile/apply/progress.py",
              "            self.files += event.files\n", "", (
                  "tests/integration/test_apply_cli.py::test_progress_bar_on_a_terminal_counts_runs_files_and_bytes",)),
    Safeguard("planner forgets merge-mode config removal refusal", "reconcile/planner.py",
              "            if merging:\n                # Never promise",
              "            if False:\n                # Never promise",
              ("tests/unit/test_planner_properties.py::test_plan_matches_the_model",)),
    Safeguard("planner ignores keep globs of other rules", "reconcile/planner.py",
              "keep = [g for r in work.keepers if r.files is not None for g in r.files.keep]",
              "keep: list[str] = []",
              ("tests/unit/test_planner_properties.py::test_plan_matches_the_model",)),
    Safeguard("a filter the server refuses is not traced to its rule", "reconcile/reader.py",
              "raise selection.refused_filter(exc, read.rules, self.now, probe, read.filters) from exc",
              "raise",
              (_PLAN + "test_plan_filter_the_server_refuses_names_the_rule_file_and_line",)),
    Safeguard("--target reads only the targeted runs of a ranking rule", "reconcile/reader.py",
              "        if ids is not None and any(ranks_runs(rule) for rule in rules):",
              "        if False:",
              (_PLAN + "test_plan_target_with_unless_top_changes_the_run_as_the_whole_plan_does",)),
    Safeguard("the planner plans runs outside --target", "reconcile/planner.py",
              "        if not self.targeted(run):\n", "        if False:\n",
              (_FILES + "test_plan_target_ranks_unless_top_over_every_matched_run",
               "tests/unit/test_artifact_retention.py")),
    Safeguard("a top run outside --target no longer spares the delete-everything guard",
              "reconcile/planner.py",
              "                if tops[rule.name] & self._ranked_only.get(rule.name, set()):",
              "                if False:",
              (_FILES + "test_plan_target_ranks_unless_top_over_every_matched_run",)),
    Safeguard("the delete-everything guard refuses a rule that names its runs and files",
              "reconcile/planner.py",
              " or not selected or names_its_files(rule):", " or not selected:",
              (_FILES + "test_plan_files_guard_spares_a_rule_that_names_its_runs_and_files",)),
    Safeguard("markdown lets run data mention, reference or link", "reconcile/render/markdown.py",
              "    return _ACTIONABLE.sub(WORD_JOINER, text)", "    return text",
              ("tests/unit/test_render_escaping.py",)),
    Safeguard("bidi and C1 characters printed raw", "reconcile/render/common.py",
              "    return _UNPRINTABLE.sub(", "    return text or _UNPRINTABLE.sub(",
              ("tests/unit/test_render_escaping.py",)),
    Safeguard("NO_COLOR ignored", "reconcile/log.py",
              '    if no_color or os.environ.get("NO_COLOR"):', "    if no_color:",
              ("tests/unit/test_cli_output.py",)),
    # Issue 13: deleting is forever.
    Safeguard("a file backup not re-verified just before its deleteFiles", "reconcile/apply/executor.py",
              "                self.backups.verify(backup)\n", "                pass\n",
              (BACKUP + "test_file_backups_are_verified_just_before_the_delete",)),
    Safeguard("an artifact backup not re-verified just before its deleteArtifact",
              "reconcile/apply/executor.py",
              "                self.backups.verify_artifact(by_id[version.id])\n", "                pass\n",
              (ARTIFACTS + "test_each_version_is_deleted_only_after_its_backup_is_verified",)),
    # Staging downloads under names of our own (`staging/<n>.download`) is defence in depth since each
    # name's backup has a folder of its own: removed alone, a staging file beside its destination cannot
    # be another name's backup, so no test can fail. The name key is what keeps names apart.
    Safeguard("file backups not kept apart by a folder per name (the name key)", "reconcile/apply/backup.py",
              "run.id, name, key=name_key(name))", "run.id, name, key=None)",
              (SAFETY + "test_file_names_that_map_to_one_path_get_backups_of_their_own",)),
    Safeguard("artifact downloads staged beside the members' own names", "reconcile/backend/wandb_api.py",
              'partials / f"{len(done)}.partial"', 'target.with_name(f".{target.name}.partial")',
              (SAFETY + "test_artifact_backups_are_this_applys_own_and_complete",)),
    Safeguard("every apply's backups in one shared folder", "reconcile/apply/executor.py",
              "apply_id(journal.digest, plan.created_at.isoformat())", '"shared"',
              (SAFETY + "test_reused_backup_dir_keeps_each_applys_backups",)),
    Safeguard("an existing artifact backup overwritten", "reconcile/apply/backup.py",
              "        if dest.exists() or dest.is_symlink():\n", "        if False:\n",
              (BACKUP + "test_an_artifact_version_backup_is_this_applys_own_and_never_overwritten",)),
    Safeguard("undo re-uploads a backup without checking its checksum", "reconcile/apply/executor.py",
              "        if size != change.after or checksum != change.checksum:\n",
              "        if size != change.after:\n",
              (SAFETY + "test_undo_refuses_a_backup_whose_bytes_changed",)),
    Safeguard("keep_last ranks a restored file by its re-upload time", "reconcile/retention.py",
              '            times[file.id] = utc_from_iso(str(record.get("updated_at")))',
              '            utc_from_iso(str(record.get("updated_at")))',
              (SAFETY + "test_keep_last_after_an_undo_plans_the_same_files_again",)),
    Safeguard("the journal lock not taken", "reconcile/apply/journal.py",
              "                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
              "            except BlockingIOError:\n                holder = _holder(fd)\n",
              "                pass\n"
              "            except BlockingIOError:\n                holder = _holder(fd)\n",
              (SAFETY + "test_second_apply_of_a_locked_plan_exits_1_naming_the_holder",)),
    Safeguard("file deletions applied without --backup-dir or --no-backup",
              "reconcile/apply/executor.py",
              "    if (plan.file_deletions or plan.artifact_deletions) and backup_dir is None and not",
              "    if False and not",
              (SAFETY + "test_apply_of_a_deleting_plan_needs_backup_dir_or_no_backup",)),
    Safeguard("artifact-only deletions applied without --backup-dir or --no-backup",
              "reconcile/apply/executor.py",
              "    if (plan.file_deletions or plan.artifact_deletions) and backup_dir",
              "    if plan.file_deletions and backup_dir",
              (ARTIFACTS + "test_deleting_versions_needs_backup_dir_or_no_backup",)),
    Safeguard("undo tries to remove config keys on a merging server", "reconcile/apply/undo.py",
              "            inverse = _merge_null(inverse)\n", "            pass\n",
              (SAFETY + "test_undo_on_a_merging_server_sets_added_config_keys_to_null",)),
    Safeguard("an empty undo plan not written (an older one left behind)", "reconcile/apply/executor.py",
              "        self.result.undo = self.undo.finish()\n",
              "        self.result.undo = self.undo.finish() if self.undo.summary.runs else None\n",
              (SAFETY + "test_deletion_only_apply_f_leaves_no_older_undo_plan",)),
    Safeguard("apply's output paths not checked before the writes", "reconcile/commands/apply.py",
              "    _check_outputs(plan_file=plan_file,", "    (lambda **_kw: None)(plan_file=plan_file,",
              (SAFETY + "test_output_paths_are_checked_before_anything_is_written",)),
    Safeguard("plan -o not checked before reading", "reconcile/commands/plan.py",
              '        check_output_file(out, "-o")', "        pass",
              (SAFETY + "test_output_paths_are_checked_before_anything_is_written",)),
    # apply reads a saved plan through open_plan (streamed, since issue 16); show through read_plan.
    Safeguard("a saved plan's content digest not checked by apply", "reconcile/planfile.py",
              "    if digest.hexdigest() != stated:\n", "    if False:\n",
              ("tests/reliability/test_plan_safety.py",)),
    Safeguard("a saved plan's content digest not checked by read_plan (show)", "reconcile/planfile.py",
              "        check_digest(data)\n", "        pass\n",
              ("tests/unit/test_planfile.py",)),
    Safeguard("a run listed twice in a saved plan accepted", "reconcile/planfile.py",
              "    if run.path in seen:\n", "    if False:\n",
              ("tests/reliability/test_plan_safety.py",)),
    Safeguard("a saved plan's counts not checked", "reconcile/planfile.py",
              "        if stated != value:\n", "        if False:\n",
              ("tests/reliability/test_plan_safety.py",)),
    Safeguard("the fingerprint leaves out the run's identity", "reconcile/fingerprint.py",
              'payload: list[Any] = [["run", run.entity, run.project, run.id, run.storage_id]]',
              "payload: list[Any] = []",
              ("tests/unit/test_fingerprint.py",)),
    Safeguard("a change the fingerprint does not cover applied", "reconcile/apply/executor.py",
              "    if loose:\n", "    if False:\n", ("tests/reliability/test_plan_safety.py",)),
    Safeguard("a planned file missing from the live listing deleted anyway",
              "reconcile/apply/mutations.py",
              "                continue\n            raise PlanMismatch(",
              "                continue\n            continue\n            raise PlanMismatch(",
              ("tests/reliability/test_plan_safety.py",)),
    Safeguard("a backup downloads from the plan's URL, not the live listing's",
              "reconcile/apply/mutations.py",
              "        out.append(now)\n", "        out.append(planned)\n",
              (SAFETY + "test_backups_download_from_the_live_listing_not_the_plans_url",)),
    # Issue 18: artifact versions (latest, promotions, TTLs).
    Safeguard("`latest` may be deleted when delete_aliased names it", "reconcile/artifact_retention.py",
              "if a in NEVER_DELETED or a not in rule.delete_aliased]", "if a not in rule.delete_aliased]",
              (RETENTION + "test_delete_aliased_lets_named_aliases_go_but_never_latest",)),
    Safeguard("a version promoted since the plan is deleted or given a TTL anyway",
              "reconcile/apply/executor.py",
              "    gained = sorted(set(now.aliases) - set(planned.aliases))\n",
              "    gained: list[str] = []\n",
              (ARTIFACTS + "test_a_version_that_gained_an_alias_makes_the_run_stale",)),
    Safeguard("a TTL someone changed since the plan is overwritten", "reconcile/apply/executor.py",
              "        if current != change.before:\n", "        if False:\n",
              (ARTIFACTS + "test_a_ttl_changed_by_someone_else_since_the_plan_is_stale",)),
    Safeguard("a TTL the server ignored is read back as converged", "reconcile/apply/mutations.py",
              "return now is not None and VersionTTL.parse(str(change.after)).satisfied_by(now.ttl)",
              "return now is not None",
              (ARTIFACTS + "test_a_ttl_the_server_ignores_does_not_converge",)),
    Safeguard("an aliased version is given the rule's TTL", "reconcile/artifact_retention.py",
              "                    if not protecting_aliases(rule, artifact):\n",
              "                    if True:\n",
              (TTL + "test_ttl_alone_sets_the_ttl_of_unaliased_versions_and_deletes_nothing",)),
    Safeguard("a block with only ttl deletes versions", "reconcile/models.py",
              "        return self.ttl is None or any(", "        return True or any(",
              (TTL + "test_ttl_alone_sets_the_ttl_of_unaliased_versions_and_deletes_nothing",)),
    Safeguard("a TTL on a type W&B makes itself is accepted", "reconcile/spec/builder.py",
              'if artifact_type in AUTO_ARTIFACT_TYPES or artifact_type.startswith("wandb-"):', "if False:",
              (TTL + "test_a_bad_ttl_is_an_error_naming_file_line_and_field",)),
    Safeguard("older_than deletes a file exactly that old", "reconcile/retention.py",
              "and not when < now - rule.older_than:", "and not when <= now - rule.older_than:",
              ("tests/unit/test_retention.py::test_each_narrowing_boundary_is_kept_on_its_own",)),
    Safeguard("larger_than deletes a file of exactly that size", "reconcile/retention.py",
              "and not size > rule.larger_than:", "and not size >= rule.larger_than:",
              ("tests/unit/test_retention.py::test_each_narrowing_boundary_is_kept_on_its_own",)),
    # Issue 19's own findings.
    Safeguard("a backup copy cut short is left to pass for a backup", "reconcile/apply/backup.py",
              "        dest.unlink(missing_ok=True)\n        raise\n", "        raise\n",
              (BACKUP + "test_a_copy_that_fails_part_way_leaves_no_backup_and_a_retry_places_it",)),
    Safeguard("a backup's file system error reaches the user raw", "reconcile/apply/backup.py",
              "        except OSError as exc:\n            raise ApplyError(",
              "        except ValueError as exc:\n            raise ApplyError(",
              (BACKUP + "test_another_link_error_is_a_clear_error_and_no_copy",
               BACKUP + "test_a_backup_the_disk_cannot_take_fails_the_run_with_nothing_deleted")),
    Safeguard("a key inside a longer one is redacted first", "reconcile/log.py",
              "_REGISTERED, key=len, reverse=True)", "_REGISTERED, key=len)",
              ("tests/unit/test_log.py::test_a_key_inside_a_longer_one_leaves_nothing_of_either",)),
    Safeguard("a second apply of one plan runs when it names another --journal (the plan lock)",
              "reconcile/apply/journal.py",
              'return cls._take(path, refusal, {"journal": str(journal), "plan": digest})',
              'return cls._take(path.with_name(f"{path.name}.{id(refusal)}"), refusal, '
              '{"journal": str(journal), "plan": digest})',
              (GUARDS + "test_a_second_apply_of_one_plan_with_another_journal_is_refused",)),
    Safeguard("an output path that is an input or another output accepted", "reconcile/commands/paths.py",
              "    for i, (flag, path) in enumerate(outputs):\n",
              "    for i, (flag, path) in enumerate(outputs[:0]):\n",
              (GUARDS + "test_outputs_that_are_inputs_or_each_other_are_refused_before_any_write",)),
    Safeguard("a saved plan deleting a file it lists as kept accepted", "reconcile/planfile.py",
              "        if change.file.id in kept_files or change.file.name in kept_files:\n",
              "        if False:\n",
              (GUARDS + "test_a_plan_that_contradicts_itself_is_refused_even_with_its_digest_recomputed",)),
    Safeguard("a plan nested too deeply read anyway", "reconcile/planfile.py",
              "        if depth > limit:\n            return True\n", "",
              (GUARDS + "test_a_plan_nested_too_deeply_is_refused_naming_the_file",)),
    Safeguard("wildcards under match.ids spared by the delete-everything guard", "reconcile/planner.py",
              "    return all(is_literal(glob) for glob in rule.files.delete)\n", "    return True\n",
              (GUARDS + "test_wildcards_that_empty_a_named_run_need_allow_delete_all",)),
    Safeguard("a name the client re-uploads as another (ck//c as ck/c) deleted with --backup-dir",
              "reconcile/apply/backup.py",
              '        if label == "file name" and "" in value.split("/"):\n', "        if False:\n",
              (SAFETY + "test_a_name_the_client_cannot_reupload_is_refused_with_backup_dir",)),
    Safeguard("a run written to but not read back not counted as unchecked", "reconcile/apply/executor.py",
              "            if event.unchecked:\n                res.unchecked.append(event.run)\n", "",
              ("tests/unit/test_apply_executor.py::"
               "test_a_run_written_but_not_read_back_is_named_as_outside_the_undo_plan",)),
    Safeguard("a run written to but not read back not named in the undo message", "reconcile/apply/undo.py",
              "    if unchecked:\n", "    if False:\n",
              ("tests/unit/test_apply_executor.py::"
               "test_a_run_written_but_not_read_back_is_named_as_outside_the_undo_plan",)),
    Safeguard("apply's undo message leaves out the runs not read back", "reconcile/commands/apply.py",
              "artifact_backups=result.artifact_backups, unchecked=result.unchecked)",
              "artifact_backups=result.artifact_backups)",
              ("tests/unit/test_apply_executor.py::"
               "test_the_apply_command_names_a_run_not_read_back_in_its_undo_message",)),
    Safeguard("a run that fails after its metadata write is left out of the undo plan",
              "reconcile/apply/executor.py",
              "            if wrote:\n", "            if False:\n",
              (SAFETY + "test_undo_restores_metadata_of_a_run_whose_deletion_then_failed",)),
    Safeguard("the staleness re-read runs more than one group ahead of the writes",
              "reconcile/apply/executor.py",
              "batch = list(islice(todo, group_size))", "batch = list(islice(todo, 2 * group_size))",
              ("tests/unit/test_apply_executor.py::"
               "test_apply_plan_rereads_the_next_group_while_this_one_is_written_and_no_further",)),
    Safeguard("Ctrl-C during a staleness re-read waits for the re-read (its thread joined at exit)",
              "reconcile/apply/executor.py",
              'name="apply-reread", daemon=True)', 'name="apply-reread", daemon=False)',
              ("tests/integration/test_apply.py::"
               "test_ctrl_c_during_a_held_reread_ends_apply_at_once_and_a_rerun_finishes",)),
    Safeguard("a re-read abandoned by Ctrl-C is still retried (and logged as retrying)",
              "reconcile/apply/executor.py",
              "                self._ended.set()\n", "",
              ("tests/unit/test_apply_executor.py::"
               "test_ctrl_c_during_a_reread_ends_apply_without_it_and_it_is_not_retried",)),
    Safeguard("a journal record not fsynced before apply goes on (group commit)",
              "reconcile/apply/journal.py",
              "            os.fsync(self._handle.fileno())\n", "",
              ("tests/unit/test_apply_journal.py::"
               "test_journal_records_that_wait_for_an_fsync_share_the_next_one",)),
    Safeguard("a backup records the re-upload time of a file an undo restored", "reconcile/apply/backup.py",
              "updated_at=uploaded.isoformat()", "updated_at=file.updated_at.isoformat()",
              (SAFETY + "test_keep_last_plans_the_same_files_after_every_apply_undo_cycle",)),
    Safeguard("plan -o written after the plan is printed (lost when stdout closes early)",
              "reconcile/commands/plan.py",
              "        write_plan(plan, saved)\n    try:\n"
              "        render(plan, sys.stdout, fmt, color=color, show_kept=show_kept)\n",
              "        pass\n    try:\n"
              "        render(plan, sys.stdout, fmt, color=color, show_kept=show_kept)\n"
              "        if saved is not None:\n            write_plan(plan, saved)\n",
              (OUTPUT + "test_the_plan_file_is_saved_when_stdout_closes_after_one_line",)),
    Safeguard("a spool the temp dir cannot take reaches the user as a traceback", "reconcile/spool.py",
              "            write(*args)\n        except OSError as exc:",
              "            write(*args)\n        except ZeroDivisionError as exc:",
              (OUTPUT + "test_a_temp_dir_that_cannot_take_the_spool_is_one_error_line",)),
    Safeguard("the crash handler raises when the temp dir has no room for a crash log's start",
              "reconcile/errors_handler.py",
              "        fd, crash_log = tempfile.mkstemp(prefix=\"reconcile-crash-\", suffix=\".log\")\n"
              "    except OSError as exc:",
              "        fd, crash_log = tempfile.mkstemp(prefix=\"reconcile-crash-\", suffix=\".log\")\n"
              "    except ZeroDivisionError as exc:",
              ("tests/unit/test_errors_handler.py",)),
    Safeguard("a crash log the disk could not take left behind, half written", "reconcile/errors_handler.py",
              "        with contextlib.suppress(OSError):\n            os.unlink(crash_log)\n",
              "        pass\n", ("tests/unit/test_errors_handler.py",)),
)


def check(guard: Safeguard) -> tuple[bool, str]:
    """Remove the safeguard, run its tests, restore it: (some test failed, how it went)."""
    path = REPO / guard.path
    original = path.read_text(encoding="utf-8")
    if original.count(guard.old) != 1:
        return False, f"the safeguard's text is not (exactly once) in {guard.path}: update this script"
    try:
        path.write_text(original.replace(guard.old, guard.new), encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                 *guard.tests], cwd=REPO, capture_output=True, text=True, timeout=900)
    finally:
        path.write_text(original, encoding="utf-8")
    last = (result.stdout.strip().splitlines() or [""])[-1]
    return result.returncode == 1, last


def main(selected: list[str]) -> int:
    """Check every (selected) safeguard; exit 1 if removing one failed no test."""
    missed = 0
    for guard in SAFEGUARDS:
        if selected and not any(s in guard.name for s in selected):
            continue
        caught, how = check(guard)
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}: {guard.name}: {how}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
