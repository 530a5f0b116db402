"""The command line: click decorators that turn options into typed values and call one
function per command (``reconcile.commands.<name>.run``), which returns the exit code.

No business logic lives here.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import click

from reconcile import __version__
from reconcile.errors_handler import handle_errors
from reconcile.log import color_enabled, configure_logging

F = TypeVar("F", bound=Callable[..., Any])

# Invalid input exits 1 (the contract); click's default of 2 would read as "has changes" to a CI
# job running `plan --detailed-exitcode`.
click.exceptions.UsageError.exit_code = 1

FORMATS = click.Choice(["text", "json", "markdown"])
FORMAT_HELP = ("text: Terraform-style, for a terminal; json: the saved-plan format, for tools; "
               "markdown: for a pull-request comment or $GITHUB_STEP_SUMMARY.")


def common_options(func: F) -> F:
    """The flags every command takes: --no-color, --log-format, -v."""

    @click.option("--no-color", is_flag=True,
                  help="Plain text output, even on a terminal (as NO_COLOR=1 does).")
    @click.option("--log-format", type=click.Choice(["console", "json"]), default="console",
                  show_default=True, help="How log lines on stderr look.")
    @click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
    @functools.wraps(func)
    def wrapper(*args: Any, no_color: bool, log_format: str, verbose: int, **kwargs: Any) -> Any:
        configure_logging(log_format=log_format, verbosity=verbose, no_color=no_color)
        ctx = click.get_current_context()
        ctx.obj = {"color": color_enabled(sys.stdout, no_color=no_color), "log_format": log_format,
                   "verbose": verbose}
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def parallelism_option(func: F) -> F:
    """``--parallelism``: only on the commands that read or write many runs at once."""
    return click.option("--parallelism", type=click.IntRange(1, 64), default=10, show_default=True,
                        help="Runs read or written at once.")(func)


def _options() -> dict[str, Any]:
    obj: dict[str, Any] = click.get_current_context().obj
    return obj


def _exit(code: int) -> None:
    sys.exit(code)


def version_text() -> str:
    """``reconcile X.Y.Z (wandb A.B.C)``: ours and the wandb client's, read from the installed
    metadata so that ``--version`` never imports wandb."""
    try:
        wandb = f"wandb {metadata.version('wandb')}"
    except metadata.PackageNotFoundError:
        wandb = "wandb is not installed: pip install wandb-reconcile"
    return f"reconcile {__version__} ({wandb})"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show reconcile's version and the wandb client's, and exit.")
def main() -> None:
    """Terraform-style plan/apply for Weights & Biases runs.

    \b
    Keep a YAML spec in git that says how your runs should look, then:
      reconcile validate spec.yaml              # offline checks
      reconcile plan -f spec.yaml -o plan.json  # what would change
      reconcile apply plan.json                 # make exactly those changes

    Credentials and location come from WANDB_API_KEY (or the netrc `wandb login`
    writes), WANDB_BASE_URL, WANDB_ENTITY and WANDB_PROJECT.
    """


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@common_options
def validate(specs: tuple[Path, ...]) -> None:
    """Check spec files offline: YAML, JSON Schema and semantic checks.

    \b
    Needs no credentials and no network. Exit 0 and one "valid" line per file,
    or exit 1 with one `file:line:col: path: message` line per problem.

    \b
    Example:
      reconcile validate examples/*.yaml
    """
    from reconcile.commands import validate as command

    _exit(handle_errors(lambda: command.run(list(specs), color=_options()["color"])))


@main.command()
@click.option("-f", "--file", "files", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Spec file or directory of specs (repeatable).")
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Save the plan as JSON for apply.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help=FORMAT_HELP)
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when there are no changes, 2 when there are, 1 on error.")
@click.option("--target", "targets", multiple=True, metavar="ENTITY/PROJECT[/RUN_ID]",
              help="Plan only this run, or every run of this project (repeatable). Rankings "
                   "(unless_top, artifact versions) still count every run a rule matches.")
@click.option("--show-kept", is_flag=True,
              help="Also list each retention candidate that survives, and why (JSON always has it).")
@parallelism_option
@common_options
def plan(files: tuple[Path, ...], out: Path | None, fmt: str, detailed_exitcode: bool,
         targets: tuple[str, ...], show_kept: bool, parallelism: int) -> None:
    """Read live runs, compare them with the spec and print what would change.

    \b
    Examples:
      reconcile plan -f reconcile.yaml
      reconcile plan -f specs/ -o plan.json --format markdown > plan.md
      reconcile plan -f reconcile.yaml --detailed-exitcode   # 2 = drift
      reconcile plan -f reconcile.yaml --show-kept           # what retention keeps, and why

    \b
    -o is written before the plan is printed: a reader that stops early
    (| head) still gets the file; the output then ends quietly with exit 1.
    """
    from reconcile.commands import plan as command

    opts = _options()
    _exit(handle_errors(lambda: command.run(
        list(files), out=out, fmt=fmt, detailed_exitcode=detailed_exitcode, targets=list(targets),
        color=opts["color"], parallelism=parallelism, show_kept=show_kept)))


@main.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@click.option("-f", "--file", "files", multiple=True, type=click.Path(path_type=Path),
              help="Plan from these specs and apply after confirmation (instead of PLAN_FILE).")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation (needed without a TTY).")
@click.option("--journal", type=click.Path(path_type=Path),
              help="Journal file (default: beside the plan, PLAN.journal.jsonl).")
@click.option("--backup-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Download each file and artifact version here (DIR/<apply id>/...) and verify it before "
                   "deleting it; the undo plan re-uploads the files (a deleted artifact version cannot be "
                   "re-created: its files stay here). A plan that deletes files needs this or --no-backup.")
@click.option("--no-backup", is_flag=True,
              help="Delete the plan's files without a copy: they cannot be restored.")
@click.option("--undo-out", type=click.Path(path_type=Path),
              help="Where to write the undo plan (default: beside the plan, PLAN.undo.json).")
@click.option("--target", "targets", multiple=True, metavar="ENTITY/PROJECT[/RUN_ID]",
              help="With -f: plan and apply only this run, or this project's runs (repeatable).")
@parallelism_option
@common_options
def apply(plan_file: Path | None, files: tuple[Path, ...], auto_approve: bool, journal: Path | None,
          backup_dir: Path | None, no_backup: bool, undo_out: Path | None, targets: tuple[str, ...],
          parallelism: int) -> None:
    """Make the changes of a saved plan (or of a fresh plan after confirmation).

    \b
    Runs whose live state changed since the plan are stale: nothing is written to
    them and the exit code is 1. An apply killed at any moment can be run again: the
    journal makes it finish the rest without doing anything twice; a second apply of
    the same plan while one runs exits 1 (the journal is locked). A plan that deletes
    files needs --backup-dir DIR or --no-backup.

    \b
    Examples:
      reconcile apply plan.json
      reconcile apply plan.json --backup-dir backups/ --undo-out undo.json
      reconcile apply -f reconcile.yaml --auto-approve --backup-dir backups/
      reconcile apply undo.json                      # restore what an apply changed
    """
    from reconcile.commands import apply as command

    opts = _options()
    if (plan_file is None) == (not files):
        raise click.UsageError("give either PLAN_FILE or -f SPEC, not both and not neither")
    _exit(handle_errors(lambda: command.run(
        plan_file=plan_file, files=list(files), auto_approve=auto_approve, journal=journal,
        backup_dir=backup_dir, no_backup=no_backup, undo_out=undo_out, targets=list(targets),
        color=opts["color"], parallelism=parallelism, log_format=opts["log_format"])))


@main.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help=FORMAT_HELP)
@click.option("--show-kept", is_flag=True, help="Also list each retention candidate that survives, and why.")
@common_options
def show(plan_file: Path, fmt: str, show_kept: bool) -> None:
    """Render a saved plan.

    \b
    Examples:
      reconcile show plan.json --format markdown >> "$GITHUB_STEP_SUMMARY"
      reconcile show plan.json --show-kept
    """
    from reconcile.commands import show as command

    _exit(handle_errors(lambda: command.run(plan_file, fmt=fmt, color=_options()["color"],
                                            show_kept=show_kept)))


@main.command()
@click.argument("project_path", metavar="ENTITY/PROJECT")
@click.option("--filters", help="W&B MongoDB-style filter as JSON, e.g. '{\"state\": \"finished\"}'.")
@click.option("--ids", multiple=True, help="Only these run ids (repeatable, or comma-separated).")
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Write the spec here (default stdout).")
@common_options
def export(project_path: str, filters: str | None, ids: tuple[str, ...], out: Path | None) -> None:
    """Write a spec that pins the current state of runs: the on-ramp for a project.

    \b
    Planning the exported spec right away gives "No changes".

    \b
    Example:
      reconcile export acme/vision --filters '{"state": "finished"}' -o vision.yaml
    """
    from reconcile.commands import export as command

    run_ids = [i for chunk in ids for i in chunk.split(",") if i]
    _exit(handle_errors(lambda: command.run(project_path, filters=filters, ids=run_ids, out=out)))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False),
              help="SQLite file holding the state (default: a temporary file).")
@click.option("--seed", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Reset the database to this fixture (YAML or JSON).")
@click.option("--api-key", envvar="RECONCILE_EMULATOR_API_KEY",
              help="Accept only this API key; others get HTTP 401.")
@click.option("--latency-ms", type=click.IntRange(0), default=0, help="Added to every request.")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of requests answered with HTTP 500.")
@click.option("--rate-limit", type=click.FloatRange(0, min_open=True), default=None,
              help="Requests per second above which it answers 429 with Retry-After.")
@click.option("--config-writes", type=click.Choice(["merge", "replace"]), default="merge",
              show_default=True, help="How UpsertBucket's config is stored (W&B cloud merges).")
@click.option("--hang-rate", type=click.FloatRange(0, 1), default=0.0, hidden=True,
              help="Share of requests that sleep past the client's timeout (reliability tests).")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, hidden=True,
              help="Share of requests whose connection closes mid-response (reliability tests).")
@common_options
def emulator(host: str, port: int, db: Path | None, seed: Path | None, api_key: str | None,
             latency_ms: int, fail_rate: float, rate_limit: float | None, config_writes: str,
             hang_rate: float, drop_rate: float) -> None:
    """Serve a local W&B-compatible GraphQL API backed by SQLite.

    \b
    Prints `serving http://127.0.0.1:PORT`; point the wandb client (and reconcile)
    at it with WANDB_BASE_URL. Stops on Ctrl-C or SIGTERM.

    \b
    Example:
      reconcile emulator --port 8080 --db runs.sqlite --seed examples/demo/fixture.yaml
      WANDB_BASE_URL=http://127.0.0.1:8080 reconcile plan -f examples/demo/spec
    """
    from reconcile.commands import emulator as command

    _exit(handle_errors(lambda: command.run(
        host=host, port=port, db=db, seed=seed, api_key=api_key, latency_ms=latency_ms,
        fail_rate=fail_rate, rate_limit=rate_limit, config_writes=config_writes,
        hang_rate=hang_rate, drop_rate=drop_rate)))


if __name__ == "__main__":  # pragma: no cover
    main()
