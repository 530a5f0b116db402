"""The planner's spool: finished runs on disk, read back one at a time, so a plan's memory does not grow
with its runs (issue 16: 1,554 MiB for 80,000 changed runs when the planner held every ``RunPlan``).

Each run is one compact JSON line (the run object of the saved plan, ``planfile.run_to_dict``) in an
anonymous temporary file: it has no name in the temp dir, so nothing is left behind when the process
ends, however it ends (an error, Ctrl-C, a kill). A plan holds no secrets, and neither does the spool.
In memory stay, per run, its path and where its line is (~100 bytes), and the plan's ``Totals``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import tempfile
import threading
import weakref
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, overload

from reconcile.errors import PlanError
from reconcile.models import CountedRuns, RunPlan, Totals
from reconcile.planfile import run_from_dict, run_to_dict


def _close_quietly(file: IO[bytes]) -> None:
    """Close the spool file; data still buffered that cannot be written (a full disk) is dropped:
    the file is anonymous, so nothing of it is lost that anyone could read."""
    with contextlib.suppress(OSError):
        file.close()  # closes the descriptor even when flushing the buffer fails


def spool_write_error(exc: OSError) -> PlanError:
    """The error for a spool that cannot be created or written: which temp dir, what to do."""
    where = tempfile.gettempdir()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"no space left in the temp directory {where} for the plan's spool"
    else:
        what = f"cannot write the plan's spool in the temp directory {where} ({exc.strerror or exc})"
    return PlanError(f"{what}: free space or set TMPDIR to another directory")


class RunSpool(CountedRuns):
    """Runs ``add``-ed while planning, then ``seal``-ed: sorted by path and read back in that order."""

    def __init__(self) -> None:
        try:
            self._file = tempfile.TemporaryFile(prefix="reconcile-plan-", suffix=".jsonl")  # noqa: SIM115 - lives as long as the spool
        except OSError as exc:
            raise spool_write_error(exc) from exc
        # Closes the file (and so frees its space) when the spool is collected or at exit at the latest.
        self._release = weakref.finalize(self, _close_quietly, self._file)
        self._lock = threading.Lock()  # one seek-and-read at a time, whichever thread reads
        self._paths: list[str] = []
        self._offsets = array("q")
        self._size = 0
        self._sealed = False
        self._totals = Totals()
        self.sources: set[str] = set()
        """The imports that planned any of the runs."""

    def add(self, run: RunPlan) -> None:
        """Write ``run`` to the spool; only its path, its place in the file and its counts stay in memory."""
        if self._sealed:
            raise RuntimeError("the spool is sealed: runs are added before the plan is finished")
        line = json.dumps(run_to_dict(run), separators=(",", ":"), allow_nan=True).encode("ascii") + b"\n"
        self._write(self._file.write, line)
        self._paths.append(run.path)
        self._offsets.append(self._size)
        self._size += len(line)
        self._totals = self._totals.plus(run)
        if run.source:
            self.sources.add(run.source)

    def _write(self, write: Callable[..., object], *args: bytes) -> None:
        """``write(*args)``; when the disk refuses (full, a quota), the spool is closed at once (its
        buffered data dropped, so nothing fails again at exit) and the error says what to do."""
        try:
            write(*args)
        except OSError as exc:
            self._release()
            raise spool_write_error(exc) from exc

    def paths(self) -> Sequence[str]:
        """The paths of the runs (in the order they were added until sealed, by path afterwards)."""
        return self._paths

    def seal(self) -> RunSpool:
        """No more runs: order them by path (stable, as ``sorted``) for reading back; returns the spool."""
        if not self._sealed:
            self._write(self._file.flush)
            order = sorted(range(len(self._paths)), key=self._paths.__getitem__)
            self._paths = [self._paths[i] for i in order]
            self._offsets = array("q", (self._offsets[i] for i in order))
            self._sealed = True
        return self

    @property
    def totals(self) -> Totals:
        """What the runs add up to (counted as they were added)."""
        return self._totals

    def close(self) -> None:
        """Close and so remove the spool file; the runs cannot be read afterwards."""
        self._release()

    def __len__(self) -> int:
        return len(self._paths)

    def _data(self, index: int) -> dict[str, Any]:
        if not self._sealed:
            raise RuntimeError("the spool is read once the plan is finished")
        if not self._release.alive:
            raise PlanError("the plan's runs were released (its spool file is closed)")
        with self._lock:
            self._file.seek(self._offsets[index])
            line = self._file.readline()
        data: dict[str, Any] = json.loads(line)
        return data

    def _read(self, index: int) -> RunPlan:
        return run_from_dict(self._data(index), f"runs[{index}]")

    def run_dicts(self) -> Iterator[dict[str, Any]]:
        """The runs as the saved plan's run objects, in order: a plan is written without making each
        a ``RunPlan`` and back again."""
        for index in range(len(self)):
            yield self._data(index)

    @overload
    def __getitem__(self, index: int) -> RunPlan: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[RunPlan, ...]: ...

    def __getitem__(self, index: int | slice) -> RunPlan | tuple[RunPlan, ...]:
        if isinstance(index, slice):
            return tuple(self._read(i) for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("run index out of range")
        return self._read(index)

    def __iter__(self) -> Iterator[RunPlan]:
        for index in range(len(self)):
            yield self._read(index)

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same runs in the same order (a tuple of them, another spool)."""
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to a tuple of the same runs, which hashes otherwise

    def __repr__(self) -> str:
        return f"<RunSpool of {len(self)} runs>"
