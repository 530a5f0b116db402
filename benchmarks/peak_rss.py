"""Run a Python module or script in this process and, at exit, write its own peak RSS (KiB) to a file.

    python benchmarks/peak_rss.py OUT_FILE -m reconcile plan -f spec.yaml
    python benchmarks/peak_rss.py OUT_FILE benchmarks/loop.py

Why not ``os.wait4``/``getrusage``: Linux carries the parent's RSS high-water mark into a child across
fork+exec (``exec_mmap`` folds the old mm's hiwater into ``signal->maxrss``), so a harness holding a
2 GB fixture would report every client at >= 2 GB. ``VmHWM`` in ``/proc/self/status`` belongs to the
exec'd program's own address space. Child processes (wandb-core) are not counted.
"""

from __future__ import annotations

import atexit
import resource
import runpy
import sys
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's own peak resident set size in KiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    """Register the exit hook, then run the module (``-m NAME``) or script with the remaining arguments."""
    out, rest = Path(sys.argv[1]), sys.argv[2:]
    atexit.register(lambda: out.write_text(str(peak_rss_kib())))
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
