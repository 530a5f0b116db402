"""Plan renderers: one module per output format behind ``render(plan, stream, fmt)``.

Renderers only format: every count comes from a ``Plan``/``RunPlan`` property and every
value from the plan itself (Terraform's ``jsonformat``: the differ builds, renderers print).
"""

from __future__ import annotations

from typing import TextIO

from reconcile.errors import PlanError
from reconcile.models import Plan
from reconcile.render import json as json_format
from reconcile.render import markdown, text

FORMATS = {"text": text.render, "json": json_format.render, "markdown": markdown.render}
"""Output format name -> ``render(plan, stream, *, color=False, show_kept=False)``."""


def render(plan: Plan, stream: TextIO, fmt: str, *, color: bool = False, show_kept: bool = False) -> None:
    """Write ``plan`` to ``stream`` in format ``fmt`` (text, json or markdown); colors only for text;
    ``show_kept`` adds the surviving retention candidates to text and markdown (JSON always has them)."""
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        raise PlanError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}") from None
    renderer(plan, stream, color=color, show_kept=show_kept)
