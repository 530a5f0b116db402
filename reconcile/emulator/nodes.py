"""What every resolver module shares: the per-request context and the GraphQL node dicts built from rows.

Feature modules (``history``, ``sweeps``, ...) import from here, never from ``resolvers``, which
imports them all to build the executable schema.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from reconcile.emulator.store import Store, project_internal_id, run_storage_id

Resolver = Callable[..., Any]
"""A graphql-core field resolver: ``(parent, info, **arguments) -> value``."""

Resolvers = dict[tuple[str, str], Resolver]
"""``{(type name, field name): resolver}``: what each feature module contributes to the schema."""


def unsigned(url: str) -> str:
    """The signer of a context that signs nothing (no server secret)."""
    return url


@dataclass
class Context:
    """Per-request context handed to resolvers."""

    store: Store
    base_url: str
    config_writes: str
    sign: Callable[[str], str] = unsigned
    """Makes an upload URL its own credential, as W&B's signed storage URLs are (``server.UrlSigner``)."""


Info = GraphQLResolveInfo[Context]
"""What resolvers receive as ``info``; ``info.context`` is the request's :class:`Context`."""


def json_arg(value: Any, name: str) -> Any:
    """Parse a JSONString argument (the client sends JSON text); dicts and lists pass through."""
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError) as exc:
        raise GraphQLError(f"{name} is not a valid JSONString: {exc}") from exc


def project_node(row: sqlite3.Row) -> dict[str, Any]:
    """A Project node from a ``projects`` row."""
    return {
        "id": project_internal_id(row["id"]),
        "internalId": project_internal_id(row["id"]),
        "name": row["name"],
        "entityName": row["entity"],
        "readOnly": False,
        "_pk": row["id"],
    }


def run_node(row: sqlite3.Row) -> dict[str, Any]:
    """A Run node from a ``runs`` row joined with its project's entity and name."""
    history = int(row["history_line_count"])
    keys = row["history_keys"]
    return {
        "_pk": row["pk"],
        "id": run_storage_id(row["entity"], row["project"], row["name"]),
        "name": row["name"],
        "displayName": row["display_name"],
        "projectId": row["project_id"],
        "sweepName": row["sweep_name"],
        "state": row["state"],
        "config": row["config"],
        "group": row["group_name"],
        "jobType": row["job_type"],
        "commit": row["commit_hash"],
        "host": row["host"],
        "readOnly": False,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "heartbeatAt": row["heartbeat_at"],
        "description": row["description"],
        "notes": row["notes"],
        "tags": json.loads(row["tags"]),
        "systemMetrics": row["system_metrics"],
        "summaryMetrics": row["summary"],
        "historyLineCount": history,
        # Seeded runs declare only a line count; streamed runs keep their keys and last step.
        "historyKeys": json.loads(keys) if keys else {"lastStep": max(history - 1, 0), "keys": {}},
        "user": {"id": None, "name": row["username"], "username": row["username"]},
        "stopped": False,
        "_path": (row["entity"], row["project"], row["name"]),
    }


def page_info(edges: list[dict[str, Any]], has_next: bool) -> dict[str, Any]:
    """A PageInfo for one page of edges."""
    return {
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
        "hasNextPage": has_next,
        "hasPreviousPage": False,
    }
