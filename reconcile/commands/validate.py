"""``reconcile validate SPEC...``: offline checks of spec files (YAML, JSON Schema, semantics).

Needs no credentials and no network: it only reads the files.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconcile.errors_handler import EXIT_ERROR, EXIT_OK
from reconcile.spec import inspect_paths


def run(specs: list[Path], *, color: bool) -> int:
    """Print one "valid" line per good file and one ``file:line:col: path: message`` line per problem."""
    result = inspect_paths(specs)
    for report in result.files:
        if not report.issues:
            noun = "rule" if report.rules == 1 else "rules"
            status = click.style("valid", fg="green") if color else "valid"
            click.echo(f"{report.file}: {status} ({report.rules} {noun})", color=color)
    for issue in result.issues:
        click.echo(click.style(str(issue), fg="red") if color else str(issue), err=True, color=color)
    if result.issues:
        bad_files = len({i.file for i in result.issues})
        click.echo(f"{len(result.issues)} problem(s) in {bad_files} file(s); fix them and run "
                   "`reconcile validate` again.", err=True)
        return EXIT_ERROR
    return EXIT_OK
