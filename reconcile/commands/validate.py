"""``reconcile validate SPEC...``: offline checks of spec files (YAML, JSON Schema, semantics).

Needs no credentials and no network: it only reads the files. Each argument is checked as
a spec of its own (so ``reconcile validate examples/*.yaml`` checks independent specs); a
directory argument is one spec merged from its files, as ``plan -f DIR`` reads it.
"""

from __future__ import annotations

from pathlib import Path

import click
from humanfriendly.text import pluralize

from reconcile.errors_handler import EXIT_ERROR, EXIT_OK
from reconcile.spec import inspect_paths


def run(specs: list[Path], *, color: bool) -> int:
    """Print one "valid" line per good file and one ``file:line:col: path: message`` line per problem."""
    problems = 0
    bad_files: set[str] = set()
    for spec in specs:
        result = inspect_paths([spec])
        for report in result.files:
            if not report.issues:
                counts = pluralize(report.rules, "rule")
                if report.imports:
                    counts += f", {pluralize(report.imports, 'import')}"
                status = click.style("valid", fg="green") if color else "valid"
                click.echo(f"{report.file}: {status} ({counts})", color=color)
        for issue in result.issues:
            click.echo(click.style(str(issue), fg="red") if color else str(issue), err=True, color=color)
            bad_files.add(issue.file)
        problems += len(result.issues)
    if problems:
        click.echo(
            f"{pluralize(problems, 'problem')} in {pluralize(len(bad_files), 'file')}; fix them and run "
            "`reconcile validate` again.",
            err=True,
        )
        return EXIT_ERROR
    return EXIT_OK
