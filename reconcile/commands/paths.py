"""Output paths are checked before anything is read from or written to W&B.

A plan that took minutes to read, or an apply that already changed runs, must not end in a
crash because ``-o``, ``--undo-out``, ``--journal`` or ``--backup-dir`` points somewhere that
cannot be written: each is checked first, and a bad one is a clear error (exit 1).
"""

from __future__ import annotations

import os
from pathlib import Path

from reconcile.errors import PlanError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_file(path: Path, flag: str, *, create_parent: bool = False) -> None:
    """``path`` can be (re)written: not a directory, in an existing (or, with ``create_parent``,
    creatable), writable directory."""
    if path.is_dir():
        raise PlanError(f"{flag} {path} is a directory; give a file name (e.g. {path / 'plan.json'}).")
    parent = path.parent if str(path.parent) else Path(".")
    if create_parent and not parent.exists():
        check_output_dir(parent, flag)
        return
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise PlanError(f"{flag} {path}: the directory {parent} {what}; create it or choose another path. "
                        "Nothing was written.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PlanError(f"{flag} {path} cannot be written (permission denied); choose another path. "
                        "Nothing was written.")


def check_output_dir(path: Path, flag: str) -> None:
    """``path`` is, or can be created as, a writable directory."""
    if path.exists() and not path.is_dir():
        raise PlanError(f"{flag} {path} exists and is not a directory; choose another path. Nothing was "
                        "written.")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise PlanError(f"{flag} {path}: {base} is not a directory; choose another path. Nothing was "
                        "written.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PlanError(f"{flag} {path} cannot be written (permission denied on {base}); choose another "
                        "path. Nothing was written.")
