"""The one place that maps exceptions to exit codes and messages.

0 success, 1 a handled error (``ReconcileError``), 2 "has changes" (returned by the
command itself, only with ``--detailed-exitcode``), 3 an unexpected error (a bug:
the traceback goes to a crash log, not the terminal), 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable

import click
from humanfriendly.text import pluralize

from reconcile.errors import ReconcileError, SpecError
from reconcile.log import redact_text
from reconcile.render.common import printable

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130


def _shown(message: str) -> str:
    """A message fit for the terminal: no API key, no raw control or bidi character (run data
    and server answers end up in messages), line breaks kept."""
    return "\n".join(printable(line) for line in redact_text(message).split("\n"))


def handle_errors(command: Callable[[], int]) -> int:
    """Run ``command`` and turn whatever it raises into a message on stderr and an exit code."""
    try:
        return command()
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(_shown(str(issue)), err=True)
        problems = pluralize(len(exc.issues), "problem")
        click.echo(f"Error: the spec has {problems}; fix them and run again.", err=True)
        return EXIT_ERROR
    except ReconcileError as exc:
        click.echo(f"Error: {_shown(str(exc))}", err=True)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`reconcile plan --format json | head`): nothing left to tell it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.ClickException, click.Abort):
        raise
    except Exception:  # the last line of defence: report, never a raw traceback
        text = redact_text(traceback.format_exc())
        fd, crash_log = tempfile.mkstemp(prefix="reconcile-crash-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        click.echo(f"Error: unexpected failure ({last}). This is a bug in reconcile; "
                   f"the details are in {crash_log}.", err=True)
        if os.environ.get("RECONCILE_DEBUG"):
            sys.stderr.write(text)
        return EXIT_UNEXPECTED
