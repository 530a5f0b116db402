"""``reconcile show PLAN.json``: render a saved plan, with no network and no credentials."""

from __future__ import annotations

import sys
from pathlib import Path

from reconcile.errors_handler import EXIT_OK
from reconcile.planfile import read_plan
from reconcile.render import render


def run(plan_file: Path, *, fmt: str, color: bool, show_kept: bool = False) -> int:
    """Print the saved plan in ``fmt``; a missing or corrupt file raises ``PlanError`` naming it."""
    plan = read_plan(plan_file)
    render(plan, sys.stdout, fmt, color=color and fmt == "text", show_kept=show_kept)
    return EXIT_OK
