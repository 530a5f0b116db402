"""Run a command on a pseudo-terminal, as a person at a terminal would, and capture what it drew."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Mapping, Sequence


def run_on_terminal(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
                    timeout: float = 120, columns: int = 100) -> tuple[int, str]:
    """``python -m reconcile ARGS`` with stdin, stdout and stderr on one pseudo-terminal.

    Returns the exit code and everything written to the terminal (escape sequences kept).
    """
    import fcntl
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    full_env = {**os.environ, **(env or {}), "COLUMNS": str(columns), "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "reconcile", *args], stdin=secondary, stdout=secondary,
                            stderr=secondary, env=full_env, cwd=cwd, close_fds=True)
    os.close(secondary)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=timeout)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", errors="replace")
