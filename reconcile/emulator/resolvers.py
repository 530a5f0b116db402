"""GraphQL execution for the emulator: the SDL schema in ``schema.graphql`` plus resolvers over the Store.

Documents are parsed and validated with graphql-core (unknown fields are validation errors, as on
a real server) and cached by query text, since the client sends the same few documents repeatedly.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
    execute,
    parse,
    validate,
)

from reconcile.emulator.filters import FilterError
from reconcile.emulator.store import (
    Store,
    StoreError,
    file_id,
    project_internal_id,
    run_storage_id,
)

_OPERATION = re.compile(r"^\s*(query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)", re.MULTILINE)


def operation_name(query: str) -> str:
    """The first ``query|mutation <Name>`` in the text; the client often sends an empty operationName (§0)."""
    match = _OPERATION.search(query)
    return match.group(2) if match else "<anonymous>"


@dataclass
class Context:
    """Per-request context handed to resolvers."""

    store: Store
    base_url: str
    config_writes: str


def _json_arg(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError) as exc:
        raise GraphQLError(f"{name} is not a valid JSONString: {exc}") from exc


def _project_node(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": project_internal_id(row["id"]),
        "internalId": project_internal_id(row["id"]),
        "name": row["name"],
        "entityName": row["entity"],
        "readOnly": False,
        "_pk": row["id"],
    }


def _run_node(row: sqlite3.Row) -> dict[str, Any]:
    history = int(row["history_line_count"])
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
        "historyKeys": {"lastStep": max(history - 1, 0), "keys": {}},
        "user": {"id": None, "name": row["username"], "username": row["username"]},
        "_path": (row["entity"], row["project"], row["name"]),
    }


def _page_info(edges: list[dict[str, Any]], has_next: bool) -> dict[str, Any]:
    return {
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
        "hasNextPage": has_next,
        "hasPreviousPage": False,
    }


# ---- Query ----------------------------------------------------------------------------------------
def _viewer(_: Any, info: GraphQLResolveInfo[Context]) -> dict[str, Any]:
    viewer = info.context.store.viewer()
    return {
        "id": "VXNlcjox",
        "name": viewer["username"],
        "username": viewer["username"],
        "email": f"{viewer['username']}@example.invalid",
        "entity": viewer["entity"],
        "admin": False,
        "flags": "{}",
        "deletedAt": None,
        "apiKeys": {"edges": []},
        "teams": {"edges": [{"node": {"id": "RW50aXR5OjE=", "name": viewer["entity"]}, "cursor": "0"}]},
    }


def _project(
    _: Any, info: GraphQLResolveInfo[Context], name: str | None = None, entityName: str | None = None
) -> dict[str, Any] | None:
    store: Store = info.context.store
    entity = entityName or store.viewer()["entity"]
    row = store.project(entity, name or "uncategorized")
    return _project_node(row) if row else None


def _server_info(_: Any, __: GraphQLResolveInfo[Context]) -> dict[str, Any]:
    # No features advertised: uploads register on PUT (SaaS behaviour), so the client skips
    # MarkRunFilesUploaded (protocol §7, §13.7).
    return {"features": []}


# ---- Project --------------------------------------------------------------------------------------
def _run_count(project: dict[str, Any], info: GraphQLResolveInfo[Context], filters: str | None = None) -> int:
    try:
        return info.context.store.count_runs(project["_pk"], filters)
    except FilterError as exc:
        raise GraphQLError(str(exc)) from exc


def _project_run(
    project: dict[str, Any], info: GraphQLResolveInfo[Context], name: str
) -> dict[str, Any] | None:
    row = info.context.store.run(project["_pk"], name)
    return _run_node(row) if row else None


def _project_runs(
    project: dict[str, Any],
    info: GraphQLResolveInfo[Context],
    filters: str | None = None,
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    try:
        page, has_next = info.context.store.list_runs(
            project["_pk"], filters=filters, order=order, after=after, first=first
        )
    except (FilterError, StoreError) as exc:
        raise GraphQLError(str(exc)) from exc
    edges = [{"node": _run_node(row), "cursor": cursor} for row, cursor in page]
    return {"edges": edges, "pageInfo": _page_info(edges, has_next), "totalCount": None}


# ---- Run ------------------------------------------------------------------------------------------
def _file_count(run: dict[str, Any], info: GraphQLResolveInfo[Context]) -> int:
    return info.context.store.count_files(run["_pk"])


def _file_url(base: str, path: tuple[str, str, str], name: str) -> str:
    entity, project, run = (quote(p, safe="") for p in path)
    return f"{base}/files/{entity}/{project}/{run}/{quote(name)}"


def _run_files(
    run: dict[str, Any],
    info: GraphQLResolveInfo[Context],
    names: list[str | None] | None = None,
    after: str | None = None,
    first: int | None = None,
    pattern: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    ctx: Context = info.context
    try:
        page, has_next = ctx.store.list_files(
            run["_pk"],
            names=[n for n in names or [] if n is not None],
            pattern=pattern,
            after=after,
            first=first,
        )
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    edges = []
    for row, cursor in page:
        url = _file_url(ctx.base_url, run["_path"], row["name"])
        edges.append(
            {
                "cursor": cursor,
                "node": {
                    "id": file_id(row["pk"]),
                    "name": row["name"],
                    "displayName": row["name"],
                    "url": url,
                    "directUrl": url,
                    "sizeBytes": row["size"],
                    "mimetype": row["mimetype"] or "application/octet-stream",
                    "updatedAt": row["updated_at"],
                    "md5": row["md5"],
                    "digest": row["md5"],
                },
            }
        )
    return {"edges": edges, "pageInfo": _page_info(edges, has_next)}


# ---- Mutation -------------------------------------------------------------------------------------
def _upsert_bucket(_: Any, info: GraphQLResolveInfo[Context], input: dict[str, Any]) -> dict[str, Any]:
    ctx: Context = info.context
    fields = dict(input)
    fields.pop("clientMutationId", None)
    for key in ("config", "summaryMetrics"):
        fields[key] = _json_arg(fields.get(key), key)
        if fields[key] is not None and not isinstance(fields[key], dict):
            raise GraphQLError(f"{key} must be a JSON object")
    storage_id = fields.pop("id", None)
    name, project, entity = (
        fields.pop("name", None),
        fields.pop("modelName", None),
        fields.pop("entityName", None),
    )
    try:
        row, inserted = ctx.store.upsert_run(
            storage_id=storage_id,
            entity=entity,
            project=project,
            name=name,
            fields=fields,
            config_writes=ctx.config_writes,
        )
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    return {"bucket": _run_node(row), "inserted": inserted, "updateAvailable": False}


def _delete_files(_: Any, info: GraphQLResolveInfo[Context], input: dict[str, Any]) -> dict[str, Any]:
    try:
        info.context.store.delete_files(list(input["files"]), input.get("projectId"))
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    return {"success": True}


def _run_path_or_error(store: Store, entity: str, project: str, run: str) -> None:
    proj = store.project(entity, project)
    if proj is None or store.run(proj["id"], run) is None:
        raise GraphQLError(f"run {entity}/{project}/{run} not found")


def _create_run_files(_: Any, info: GraphQLResolveInfo[Context], input: dict[str, Any]) -> dict[str, Any]:
    ctx: Context = info.context
    entity, project, run = input["entityName"], input["projectName"], input["runName"]
    _run_path_or_error(ctx.store, entity, project, run)
    ctx.store.log("CreateRunFiles", f"{entity}/{project}/{run}", {"files": list(input["files"])})
    parts = "/".join(quote(p, safe="") for p in (entity, project, run))
    return {
        "runID": run_storage_id(entity, project, run),
        "uploadHeaders": [],
        # Relative URLs: the client puts its base_url in front (protocol §7).
        "files": [{"name": f, "uploadUrl": f"/upload/{parts}/{quote(f)}"} for f in input["files"]],
    }


def _mark_uploaded(_: Any, info: GraphQLResolveInfo[Context], input: dict[str, Any]) -> dict[str, Any]:
    # Files are registered on PUT already; accepted as a no-op (protocol §13.7).
    _run_path_or_error(info.context.store, input["entityName"], input["projectName"], input["runName"])
    return {"success": True}


def build_executable_schema() -> GraphQLSchema:
    """Build the schema from ``schema.graphql`` and attach the resolvers."""
    sdl = resources.files("reconcile.emulator").joinpath("schema.graphql").read_text(encoding="utf-8")
    schema = build_schema(sdl)
    attach = {
        ("Query", "viewer"): _viewer,
        ("Query", "project"): _project,
        ("Query", "serverInfo"): _server_info,
        ("Project", "runCount"): _run_count,
        ("Project", "run"): _project_run,
        ("Project", "runs"): _project_runs,
        ("Run", "fileCount"): _file_count,
        ("Run", "files"): _run_files,
        ("Mutation", "upsertBucket"): _upsert_bucket,
        ("Mutation", "deleteFiles"): _delete_files,
        ("Mutation", "createRunFiles"): _create_run_files,
        ("Mutation", "markRunFilesUploaded"): _mark_uploaded,
    }
    for (type_name, field_name), resolver in attach.items():
        schema.get_type(type_name).fields[field_name].resolve = resolver  # type: ignore[union-attr]
    return schema


class Executor:
    """Parses, validates (cached by text) and executes GraphQL documents against one Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.schema = build_executable_schema()
        self._cache: dict[str, DocumentNode | list[GraphQLError]] = {}
        self._lock = threading.Lock()

    def _document(self, query: str) -> DocumentNode | list[GraphQLError]:
        with self._lock:
            cached = self._cache.get(query)
        if cached is not None:
            return cached
        document: DocumentNode | list[GraphQLError]
        try:
            parsed = parse(query)
        except GraphQLError as exc:
            document = [exc]
        else:
            errors = validate(self.schema, parsed)
            document = errors or parsed
        with self._lock:
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[query] = document
        return document

    def run(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation: str | None,
        *,
        base_url: str,
        config_writes: str,
    ) -> dict[str, Any]:
        """Execute one request body and return the response envelope (``data`` and/or ``errors``)."""
        document = self._document(query)
        if isinstance(document, list):
            return {"errors": [e.formatted for e in document]}
        result = execute(
            self.schema,
            document,
            variable_values=variables or {},
            operation_name=operation or None,
            context_value=Context(self.store, base_url, config_writes),
        )
        if not isinstance(result, ExecutionResult):  # pragma: no cover - every resolver is synchronous
            raise TypeError("async resolvers are not supported")
        envelope: dict[str, Any] = {"data": result.data}
        if result.errors:
            envelope["errors"] = [e.formatted for e in result.errors]
        return envelope
