"""The shape the project promises: one seam to W&B and one differ."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "reconcile"


def _importers(module: str) -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == module or n.startswith(module + ".") for n in names):
                found.add(str(path.relative_to(PACKAGE.parent)))
    return found


def test_architecture_only_the_backend_imports_wandb() -> None:
    """Exactly one module of the package imports wandb."""
    assert _importers("wandb") == {"reconcile/backend/wandb_api.py"}


def test_architecture_only_the_planner_imports_deepdiff() -> None:
    """The planner is the only module that uses deepdiff; no deepdiff object leaks elsewhere."""
    assert _importers("deepdiff") == {"reconcile/planner.py"}


def test_architecture_renderers_and_executor_do_not_import_the_backend_library() -> None:
    """Renderers and the apply executor never talk to W&B directly."""
    for module in ("wandb", "requests", "httpx"):
        assert not {p for p in _importers(module) if p.startswith(("reconcile/render", "reconcile/apply"))}
