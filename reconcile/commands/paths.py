"""Output paths are checked before anything is read from or written to W&B.

A plan that took minutes to read, or an apply that already changed runs, must not end in a
crash because ``-o``, ``--undo-out``, ``--journal`` or ``--backup-dir`` points somewhere that
cannot be written: each is checked first, and a bad one is a clear error (exit 1). Nor may an
output be one of the inputs (a spec, the plan being applied) or another output: ``check_distinct``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from reconcile.errors import PlanError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (one that exists by any name, or the same absolute
    path once symlinks are resolved)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_distinct(outputs: Sequence[tuple[str, Path]], inputs: Sequence[tuple[str, Path]]) -> None:
    """No output (``(what, path)``) is one of the ``inputs`` or another output: writing it would
    destroy what is being read, or two writers would share one file."""
    for i, (flag, path) in enumerate(outputs):
        for what, other in inputs:
            if _same(path, other):
                raise PlanError(f"{flag} {path} is {what}; writing it would destroy it. Choose another path. "
                                "Nothing was written.")
        for other_flag, other in outputs[:i]:
            if _same(path, other):
                raise PlanError(f"{flag} {path} is also {other_flag}; each output needs a path of its own. "
                                "Nothing was written.")


def check_output_file(path: Path, flag: str) -> None:
    """``path`` can be (re)written: not a directory, in an existing, writable directory (a directory
    that does not exist is an error, never created)."""
    if path.is_dir():
        raise PlanError(f"{flag} {path} is a directory; give a file name (e.g. {path / 'plan.json'}).")
    parent = path.parent if str(path.parent) else Path(".")
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
    _try_creating(path, flag)


def _try_creating(path: Path, flag: str) -> None:
    """Create the missing part of ``path`` and remove it again: permissions alone do not say whether
    it can be made (root passes every check; /proc refuses anyway)."""
    target = path.resolve()  # as the backup store makes it: `a/../b` is b, not a and then a/..
    missing = [p for p in (target, *target.parents) if not p.exists()]
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            directory.mkdir()
            created.append(directory)
    except OSError as exc:
        raise PlanError(f"{flag} {path} cannot be created ({exc.strerror or type(exc).__name__}); choose "
                        "another path. Nothing was written.") from None
    finally:
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                directory.rmdir()
