"""The one place that maps exceptions to exit codes and messages.

0 success, 1 a handled error (``ReconcileError``; also stdout closed early), 2 "has changes" (returned by the
command itself, only with ``--detailed-exitcode``), 3 an unexpected error (a bug:
the traceback goes to a crash log, not the terminal), 130 on Ctrl-C.
"""

from __future__ import annotations

import contextlib
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


def _write_crash_log(text: str) -> str:
    """Write ``text`` to a new crash log in the temp dir and say where it is, or, when it cannot be
    written (a full or unusable temp dir), say that. Never raises, never leaves an empty or partial
    log behind."""
    try:
        fd, crash_log = tempfile.mkstemp(prefix="reconcile-crash-", suffix=".log")
    except OSError as exc:
        return _no_crash_log(exc)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(crash_log)
        return _no_crash_log(exc)
    return f"the details are in {crash_log}."


def _no_crash_log(exc: OSError) -> str:
    where = tempfile.tempdir or os.environ.get("TMPDIR") or "the temp directory"
    return (f"no crash log could be written in {where} ({exc.strerror or exc}); "
            "run again with RECONCILE_DEBUG=1 to see the details here.")


def handle_errors(command: Callable[[], int]) -> int:
    """Run ``command`` and turn whatever it raises into a message on stderr and an exit code."""
    try:
        code = command()
        sys.stdout.flush()  # a reader gone by now is a broken pipe here, not a message at exit
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
        # The reader went away (`reconcile plan --format json | head`): nothing left to tell it, and
        # nothing to say on stderr (as a Unix tool killed by SIGPIPE); exit 1: the output is incomplete.
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
        last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        where = _write_crash_log(text)
        click.echo(f"Error: unexpected failure ({last}). This is a bug in reconcile; {where}", err=True)
        if os.environ.get("RECONCILE_DEBUG"):
            sys.stderr.write(text)
        return EXIT_UNEXPECTED
    return code
