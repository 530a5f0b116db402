"""Config and summary trees: the planned set/unset/rename changes made on a copy.

Pure functions, no I/O. The planner renders templates against a run with its planned changes
made (so a template reading a key the same spec sets gets the new value), and apply builds its
writes and its undo from the same functions.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from reconcile.models import Change, ChangeOp, KeyPath


def set_in(tree: dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set ``path`` in ``tree``, making the dicts on the way (a scalar on the way is replaced)."""
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def del_in(tree: dict[str, Any], path: KeyPath) -> None:
    """Remove ``path`` from ``tree`` if it is there."""
    node: Any = tree
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, mutable copy (live mappings may be read-only views)."""
    return {k: plain(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in mapping.items()}


def apply_changes(tree: Mapping[str, Any], changes: Iterable[Change]) -> dict[str, Any]:
    """``tree`` (a config or summary) with the planned set/unset/rename changes made."""
    out = plain(tree)
    for change in changes:
        if change.op is ChangeOp.SET:
            set_in(out, change.key, change.after)
        elif change.op is ChangeOp.UNSET:
            del_in(out, change.key)
        elif change.op is ChangeOp.RENAME:
            if change.from_key is not None:
                del_in(out, change.from_key)
            set_in(out, change.key, change.after)
    return out
