"""GraphQL execution for the emulator: the SDL schema in ``schema.graphql`` plus resolvers over the Store.

Documents are parsed and validated with graphql-core (unknown fields are validation errors, as on
a real server) and cached by query text, since the client sends the same few documents repeatedly.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeGuard
from urllib.parse import quote

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    build_schema,
    execute,
    parse,
    validate,
)

from reconcile.emulator import artifact_uploads, artifacts, history, sweeps
from reconcile.emulator.execution import executor_for
from reconcile.emulator.filters import FilterError
from reconcile.emulator.nodes import (
    Context,
    Info,
    Resolvers,
    json_arg,
    page_info,
    project_node,
    run_node,
    unsigned,
)
from reconcile.emulator.store import Store, StoreError, file_id, run_storage_id

_OPERATION = re.compile(r"^\s*(query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)", re.MULTILINE)


def operation_name(query: str) -> str:
    """The first ``query|mutation <Name>`` in the text; the client often sends an empty operationName (§0)."""
    match = _OPERATION.search(query)
    return match.group(2) if match else "<anonymous>"


# ---- Query ----------------------------------------------------------------------------------------
def _viewer(_: Any, info: Info) -> dict[str, Any]:
    return _user(info.context.store)


def _user(store: Store) -> dict[str, Any]:
    viewer = store.viewer()
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
    _: Any, info: Info, name: str | None = None, entityName: str | None = None
) -> dict[str, Any] | None:
    store: Store = info.context.store
    entity = entityName or store.viewer()["entity"]
    row = store.project(entity, name or "uncategorized")
    return project_node(row) if row else None


def _server_info(_: Any, __: Info) -> dict[str, Any]:
    # No features advertised: uploads register on PUT (SaaS behaviour), so the client skips
    # MarkRunFilesUploaded (protocol §7, §13.7).
    return {"features": []}


# ---- Project --------------------------------------------------------------------------------------
def _run_count(project: dict[str, Any], info: Info, filters: str | None = None) -> int:
    try:
        return info.context.store.count_runs(project["_pk"], filters)
    except FilterError as exc:
        raise GraphQLError(str(exc)) from exc


def _project_run(project: dict[str, Any], info: Info, name: str) -> dict[str, Any] | None:
    row = info.context.store.run(project["_pk"], name)
    return run_node(row) if row else None


def _project_runs(
    project: dict[str, Any],
    info: Info,
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
    edges = [{"node": run_node(row), "cursor": cursor} for row, cursor in page]
    return {"edges": edges, "pageInfo": page_info(edges, has_next), "totalCount": None}


# ---- Run ------------------------------------------------------------------------------------------
def _file_count(run: dict[str, Any], info: Info) -> int:
    return info.context.store.count_files(run["_pk"])


def _file_url(base: str, path: tuple[str, str, str], name: str) -> str:
    entity, project, run = (quote(p, safe="") for p in path)
    return f"{base}/files/{entity}/{project}/{run}/{quote(name)}"


def _lazy_file_url(base: str, path: tuple[str, str, str], name: str, _info: Info, **_: Any) -> str:
    return _file_url(base, path, name)


def _run_files(
    run: dict[str, Any],
    info: Info,
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
        # Resolved only when selected (graphql-core calls a callable value): most reads select no URL.
        url = functools.partial(_lazy_file_url, ctx.base_url, run["_path"], row["name"])
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
    return {"edges": edges, "pageInfo": page_info(edges, has_next)}


# ---- Mutation -------------------------------------------------------------------------------------
def _upsert_bucket(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    ctx: Context = info.context
    fields = dict(input)
    fields.pop("clientMutationId", None)
    for key in ("config", "summaryMetrics"):
        fields[key] = json_arg(fields.get(key), key)
        if fields[key] is not None and not isinstance(fields[key], dict):
            raise GraphQLError(f"{key} must be a JSON object")
    storage_id = fields.pop("id", None)
    name, project, entity = (
        fields.pop("name", None),
        fields.pop("modelName", None),
        fields.pop("entityName", None),
    )
    if storage_id is None and entity is None and name is not None:
        entity = ctx.store.viewer()["entity"]  # wandb.init / create_run without an entity: the viewer's
    if storage_id is None and project is None and name is not None:
        project = "uncategorized"
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
    return {"bucket": run_node(row), "inserted": inserted, "updateAvailable": False}


def _delete_files(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    try:
        info.context.store.delete_files(list(input["files"]), input.get("projectId"))
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    return {"success": True}


def _run_path_or_error(store: Store, entity: str, project: str, run: str) -> None:
    proj = store.project(entity, project)
    if proj is None or store.run(proj["id"], run) is None:
        raise GraphQLError(f"run {entity}/{project}/{run} not found")


def _create_run_files(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    ctx: Context = info.context
    entity, project, run = input["entityName"], input["projectName"], input["runName"]
    _run_path_or_error(ctx.store, entity, project, run)
    ctx.store.log("CreateRunFiles", f"{entity}/{project}/{run}", {"files": list(input["files"])})
    parts = "/".join(quote(p, safe="") for p in (entity, project, run))
    return {
        "runID": run_storage_id(entity, project, run),
        "uploadHeaders": [],
        # Absolute URLs (like W&B's signed storage URLs): the SDK's uploader PUTs to them as they are.
        "files": [
            {"name": f, "uploadUrl": ctx.sign(f"{ctx.base_url}/upload/{parts}/{quote(f)}")}
            for f in input["files"]
        ],
    }


def _mark_uploaded(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    # Files are registered on PUT already; accepted as a no-op (protocol §13.7).
    _run_path_or_error(info.context.store, input["entityName"], input["projectName"], input["runName"])
    return {"success": True}


# ---- what wandb.init asks (create, resume) ------------------------------------------------------
def _model(
    _: Any, info: Info, name: str | None = None, entityName: str | None = None
) -> dict[str, Any] | None:
    """``model(name, entityName)``: W&B's older name for a project (RunResumeStatus asks it)."""
    return _project(_, info, name, entityName)


def _project_bucket(
    project: dict[str, Any], info: Info, name: str, missingOk: bool | None = None
) -> dict[str, Any] | None:
    """``bucket(name, missingOk)``: a run of the project, or null when it does not exist."""
    return _project_run(project, info, name)


def _project_entity(project: dict[str, Any], _: Info) -> dict[str, Any]:
    return {"id": _entity_id(project["entityName"]), "name": project["entityName"]}


def _entity_id(name: str) -> str:
    return base64.b64encode(f"Entity:{name}".encode()).decode()


def _run_project(run: dict[str, Any], info: Info) -> dict[str, Any] | None:
    entity, project, _ = run["_path"]
    row = info.context.store.project(entity, project)
    return project_node(row) if row else None


def _wandb_config(run: dict[str, Any], _: Info, keys: list[str] | None = None) -> str:
    """``wandbConfig(keys)``: those keys of the config's ``_wandb`` value (``t``: the run has started)."""
    config = json_arg(run["config"], "config") or {}
    entry = config.get("_wandb")
    value = entry.get("value") if isinstance(entry, dict) else None
    value = value if isinstance(value, dict) else {}
    return json.dumps({k: v for k, v in value.items() if keys is None or k in keys})


# ---- projects and run deletion ---------------------------------------------------------------------
def _models(
    _: Any, info: Info, entityName: str | None = None, after: str | None = None, first: int | None = None
) -> dict[str, Any]:
    """``models(entityName, after, first)``: api.projects(entity), oldest project first."""
    store = info.context.store
    try:
        page, has_next = store.list_projects(entityName or store.viewer()["entity"], after=after, first=first)
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    edges = [{"node": project_node(row), "cursor": cursor} for row, cursor in page]
    return {"edges": edges, "pageInfo": page_info(edges, has_next)}  # the client pages by endCursor


def _project_created_at(project: dict[str, Any], info: Info) -> str:
    rows = info.context.store.read(
        "SELECT COALESCE(p.created_at, (SELECT MIN(created_at) FROM runs WHERE project_id = p.id)) AS t "
        "FROM projects p WHERE p.id = ?",
        (project["_pk"],),
    )
    return str(rows[0]["t"] or "2026-01-01T00:00:00") if rows else "2026-01-01T00:00:00"


def _delete_run(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    try:
        info.context.store.delete_run(input["id"])
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    return {"clientMutationId": None}


def schema_sdl() -> str:
    """The emulator's whole schema: ``schema.graphql`` then each feature module's ``*.graphql``."""
    package = resources.files("reconcile.emulator")
    names = sorted(
        entry.name
        for entry in package.iterdir()
        if entry.name.endswith(".graphql") and entry.name != "schema.graphql"
    )
    return "\n".join(package.joinpath(n).read_text(encoding="utf-8") for n in ["schema.graphql", *names])


def build_executable_schema() -> GraphQLSchema:
    """Build the schema from ``schema_sdl()`` and attach the resolvers of every module."""
    schema = build_schema(schema_sdl())
    attach: Resolvers = {
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
        ("Query", "model"): _model,
        ("Project", "bucket"): _project_bucket,
        ("Project", "entity"): _project_entity,
        ("Run", "project"): _run_project,
        ("Run", "wandbConfig"): _wandb_config,
        ("Query", "models"): _models,
        ("Project", "createdAt"): _project_created_at,
        ("Project", "isBenchmark"): lambda *_: False,
        ("Project", "user"): lambda _, info: _user(info.context.store),
        ("Mutation", "deleteRun"): _delete_run,
        **history.RESOLVERS,
        **sweeps.RESOLVERS,
        **artifacts.RESOLVERS,
        **artifact_uploads.RESOLVERS,
    }
    for (type_name, field_name), resolver in attach.items():
        schema.get_type(type_name).fields[field_name].resolve = resolver  # type: ignore[union-attr]
    return schema


def _never_awaitable(_: Any) -> TypeGuard[Awaitable[Any]]:
    return False


class Executor:
    """Parses, validates (cached by text) and executes GraphQL documents against one Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.schema = build_executable_schema()
        self._executor_class = executor_for(self.schema)
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
        sign: Callable[[str], str] = unsigned,
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
            context_value=Context(self.store, base_url, config_writes, sign),
            is_awaitable=_never_awaitable,  # every resolver is synchronous: no check per value
            executor_class=self._executor_class,  # plain leaf fields without the per-field machinery
        )
        if not isinstance(result, ExecutionResult):  # pragma: no cover - every resolver is synchronous
            raise TypeError("async resolvers are not supported")
        envelope: dict[str, Any] = {"data": result.data}
        if result.errors:
            envelope["errors"] = [e.formatted for e in result.errors]
        return envelope
