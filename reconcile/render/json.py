"""The JSON renderer (``--format json``): exactly the saved-plan document, indented."""

from __future__ import annotations

from typing import TextIO

from reconcile.models import Plan
from reconcile.planfile import dump


def render(plan: Plan, stream: TextIO, *, color: bool = False, show_kept: bool = False) -> None:
    """Write the plan as the same JSON ``-o`` saves (``color`` is ignored: JSON has none; the kept
    candidates are always in it, so ``show_kept`` changes nothing)."""
    del color, show_kept
    dump(plan, stream)
