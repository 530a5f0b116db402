"""Artifacts in the emulator: collections (W&B "artifact sequences"), versions, aliases and files.

Served through the documents the wandb 0.31 client sends for artifacts (``artifacts.graphql``):
``api.artifact_collections``, ``api.artifacts``, ``api.artifact``, ``run.logged_artifacts``,
``artifact.delete(delete_aliases=...)``, ``artifact.ttl = ...; artifact.save()`` and the file
listing a download uses. Versions come from the fixture (``runs[].artifacts``). What W&B does
and what is unknown is in README.md, "Artifacts".

A version's files are stored like run files: declared size with deterministic bytes, or the
fixture's ``content``; they download from ``/artifacts/<version pk>/<file name>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from graphql import GraphQLError, GraphQLResolveInfo

from reconcile.emulator.artifact_fixture import ArtifactFixtureError, SeedArtifact
from reconcile.emulator.store import Store, StoreError, deterministic_chunks, utc_now

SQL = """
CREATE TABLE IF NOT EXISTS artifact_collections (
    pk INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS artifact_versions (
    pk INTEGER PRIMARY KEY,
    collection_pk INTEGER NOT NULL REFERENCES artifact_collections(pk),
    version_index INTEGER NOT NULL,
    run_pk INTEGER,
    state TEXT NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (collection_pk, version_index)
);
CREATE INDEX IF NOT EXISTS artifact_versions_by_run ON artifact_versions (run_pk, pk);
CREATE TABLE IF NOT EXISTS artifact_aliases (
    pk INTEGER PRIMARY KEY,
    collection_pk INTEGER NOT NULL,
    version_pk INTEGER NOT NULL,
    alias TEXT NOT NULL,
    UNIQUE (collection_pk, alias)
);
CREATE TABLE IF NOT EXISTS artifact_files (
    pk INTEGER PRIMARY KEY,
    version_pk INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    content BLOB,
    UNIQUE (version_pk, name)
);
"""

TABLES = ("artifact_files", "artifact_aliases", "artifact_versions", "artifact_collections")
"""Cleared (in this order) when the store is seeded."""


def seed(conn: sqlite3.Connection, runs: Sequence[tuple[int, int, Sequence[SeedArtifact]]]) -> None:
    """Insert the versions of ``(run pk, project id, artifacts)``; inside the caller's transaction.

    ``latest`` goes to the newest version of each collection (as W&B moves it on every log)
    unless the fixture gives it to a version explicitly.
    """
    collections: dict[tuple[int, str], tuple[int, str]] = {}  # (project, name) -> (pk, type)
    next_index: dict[int, int] = {}
    explicit_latest: set[int] = set()
    newest: dict[int, int] = {}
    for run_pk, project_id, artifacts in runs:
        for art in artifacts:
            key = (project_id, art.name)
            if key not in collections:
                cur = conn.execute(
                    "INSERT INTO artifact_collections (project_id, type, name, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (project_id, art.type, art.name, art.created_at),
                )
                collections[key] = (int(cur.lastrowid or 0), art.type)
            coll_pk, coll_type = collections[key]
            if coll_type != art.type:
                raise ArtifactFixtureError(
                    f"artifact {art.name!r} is logged with types {coll_type!r} and "
                    f"{art.type!r}; a collection has one type"
                )
            index = next_index.get(coll_pk, 0)
            next_index[coll_pk] = index + 1
            version_pk = _insert_version(conn, coll_pk, index, run_pk, art)
            newest[coll_pk] = version_pk
            for alias in art.aliases:
                if alias == "latest":
                    explicit_latest.add(coll_pk)
                set_alias(conn, coll_pk, version_pk, alias)
    for coll_pk, version_pk in newest.items():
        if coll_pk not in explicit_latest:
            set_alias(conn, coll_pk, version_pk, "latest")


def _insert_version(
    conn: sqlite3.Connection, coll_pk: int, index: int, run_pk: int | None, art: SeedArtifact
) -> int:
    digest = hashlib.md5(f"{coll_pk}:{index}:{art.size}".encode(), usedforsecurity=False).hexdigest()
    cur = conn.execute(
        "INSERT INTO artifact_versions (collection_pk, version_index, run_pk, state, size, digest, "
        "ttl_seconds, metadata, description, created_at, updated_at) "
        "VALUES (?, ?, ?, 'COMMITTED', ?, ?, ?, ?, NULL, ?, ?)",
        (
            coll_pk,
            index,
            run_pk,
            art.size,
            digest,
            art.ttl_seconds,
            json.dumps(art.metadata or {}),
            art.created_at,
            art.created_at,
        ),
    )
    version_pk = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT INTO artifact_files (version_pk, name, size, content) VALUES (?, ?, ?, ?)",
        [(version_pk, f.name, f.size, f.content) for f in art.files],
    )
    return version_pk


def set_alias(conn: sqlite3.Connection, coll_pk: int, version_pk: int, alias: str) -> None:
    # An alias names one version of a collection: giving it to another version moves it.
    conn.execute("DELETE FROM artifact_aliases WHERE collection_pk = ? AND alias = ?", (coll_pk, alias))
    conn.execute(
        "INSERT INTO artifact_aliases (collection_pk, version_pk, alias) VALUES (?, ?, ?)",
        (coll_pk, version_pk, alias),
    )


# ---- ids ------------------------------------------------------------------------------------------
def encode_id(kind: str, pk: int) -> str:
    return base64.b64encode(f"{kind}:{pk}".encode()).decode()


def decode_id(kind: str, value: str) -> int:
    try:
        prefix, _, pk = base64.b64decode(value.encode(), validate=True).decode().partition(":")
        if prefix == kind:
            return int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise StoreError(f"invalid {kind} id {value!r}")


# ---- reads ----------------------------------------------------------------------------------------
_VERSION_SELECT = (
    "SELECT v.*, c.name AS collection_name, c.type AS collection_type, c.project_id, c.created_at AS "
    "collection_created_at, p.entity, p.name AS project_name, "
    "(SELECT COUNT(*) FROM artifact_files f WHERE f.version_pk = v.pk) AS file_count "
    "FROM artifact_versions v JOIN artifact_collections c ON c.pk = v.collection_pk "
    "JOIN projects p ON p.id = c.project_id"
)


def _project_info(row: sqlite3.Row) -> dict[str, Any]:
    from reconcile.emulator.store import project_internal_id

    pid = project_internal_id(row["project_id"])
    return {
        "id": pid,
        "internalId": pid,
        "name": row["project_name"],
        "entityName": row["entity"],
        "entity": {"id": encode_id("Entity", 1), "name": row["entity"]},
        "readOnly": False,
        "_pk": row["project_id"],
    }


def _collection_node(
    row: sqlite3.Row,
    *,
    pk_key: str = "collection_pk",
    name_key: str = "collection_name",
    type_key: str = "collection_type",
    created_key: str = "collection_created_at",
) -> dict[str, Any]:
    return {
        "__typename": "ArtifactSequence",
        "id": encode_id("ArtifactCollection", row[pk_key]),
        "name": row[name_key],
        "description": None,
        "createdAt": row[created_key],
        "updatedAt": row[created_key],
        "project": _project_info(row),
        "defaultArtifactType": {
            "id": encode_id("ArtifactType", row[pk_key]),
            "name": row[type_key],
            "_project": row["project_id"],
        },
        "tags": {"edges": []},
        "_pk": row[pk_key],
    }


def _aliases(store: Store, version_pk: int, collection: dict[str, Any]) -> list[dict[str, Any]]:
    rows = store._query(
        "SELECT pk, alias FROM artifact_aliases WHERE version_pk = ? ORDER BY alias", (version_pk,)
    )
    return [
        {"id": encode_id("ArtifactAlias", r["pk"]), "alias": r["alias"], "artifactCollection": collection}
        for r in rows
    ]


def version_node(store: Store, row: sqlite3.Row) -> dict[str, Any]:
    """An ``Artifact`` for one version row (from ``_VERSION_SELECT``)."""
    collection = _collection_node(row)
    ttl = int(row["ttl_seconds"])
    return {
        "__typename": "Artifact",
        "id": encode_id("Artifact", row["pk"]),
        "artifactSequence": collection,
        "versionIndex": row["version_index"],
        "artifactType": collection["defaultArtifactType"],
        "description": row["description"],
        "metadata": row["metadata"],
        "ttlDurationSeconds": ttl,
        "ttlIsInherited": ttl == -1,
        "tags": [],
        "historyStep": None,
        "state": row["state"],
        "size": row["size"],
        "digest": row["digest"],
        "digestAlgorithm": "MANIFEST_MD5",
        "commitHash": row["digest"][:20],
        "fileCount": row["file_count"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "aliases": _aliases(store, row["pk"], collection),
        "_pk": row["pk"],
        "_collection": collection,
    }


def _page(
    rows: list[sqlite3.Row],
    first: int | None,
    after: str | None,
    key: Callable[[sqlite3.Row], list[Any]],
    *,
    descending: bool = False,
) -> tuple[list[sqlite3.Row], bool, list[str]]:
    """Keyset paging over rows already ordered by ``key``: the page, whether more follow, its cursors.

    A cursor holds the sort key of its row, so deleting rows while paging (the docs' delete loop)
    neither skips nor repeats any.
    """
    start = 0
    if after:
        try:
            mark = json.loads(base64.urlsafe_b64decode(after.encode()))
        except (ValueError, binascii.Error) as exc:
            raise GraphQLError(f"invalid cursor {after!r}") from exc
        start = next(
            (i for i, row in enumerate(rows) if (key(row) < mark if descending else key(row) > mark)),
            len(rows),
        )
    size = max(min(first or 50, 1000), 1)
    page = rows[start : start + size]
    cursors = [base64.urlsafe_b64encode(json.dumps(key(r)).encode()).decode() for r in page]
    return page, start + size < len(rows), cursors


def _connection(
    nodes: list[dict[str, Any]],
    cursors: list[str],
    has_next: bool,
    total: int,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    edges = [
        {"node": n, "cursor": c, **(extra(n) if extra else {})} for n, c in zip(nodes, cursors, strict=True)
    ]
    return {
        "totalCount": total,
        "edges": edges,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": has_next,
            "hasPreviousPage": False,
        },
    }


def _versions(
    store: Store, where: str, params: Sequence[Any], order: str = "v.version_index DESC"
) -> list[sqlite3.Row]:
    return store._query(
        f"{_VERSION_SELECT} WHERE v.state = 'COMMITTED' AND {where} ORDER BY {order}, v.pk", params
    )


def _collections(store: Store, project_id: int, type_name: str | None) -> list[sqlite3.Row]:
    sql = (
        "SELECT c.pk AS collection_pk, c.name AS collection_name, c.type AS collection_type, "
        "c.created_at AS collection_created_at, c.project_id, p.entity, p.name AS project_name "
        "FROM artifact_collections c JOIN projects p ON p.id = c.project_id WHERE c.project_id = ?"
    )
    params: list[Any] = [project_id]
    if type_name is not None:
        sql += " AND c.type = ?"
        params.append(type_name)
    sql += (
        " AND EXISTS (SELECT 1 FROM artifact_versions v WHERE v.collection_pk = c.pk "
        "AND v.state = 'COMMITTED')"
    )
    return store._query(sql + " ORDER BY c.created_at, c.pk", params)


def _ctx_store(info: GraphQLResolveInfo[Any]) -> Store:
    store: Store = info.context.store
    return store


# ---- resolvers ------------------------------------------------------------------------------------
def _project_artifact_type(
    project: dict[str, Any], info: GraphQLResolveInfo[Any], name: str
) -> dict[str, Any] | None:
    rows = _ctx_store(info)._query(
        "SELECT MIN(pk) AS pk FROM artifact_collections WHERE project_id = ? AND type = ?",
        (project["_pk"], name),
    )
    if not rows or rows[0]["pk"] is None:
        return None
    return {"id": encode_id("ArtifactType", rows[0]["pk"]), "name": name, "_project": project["_pk"]}


def _collections_connection(
    store: Store, project_id: int, type_name: str | None, after: str | None, first: int | None
) -> dict[str, Any]:
    rows = _collections(store, project_id, type_name)
    page, has_next, cursors = _page(
        rows, first, after, lambda r: [r["collection_created_at"], r["collection_pk"]]
    )
    return _connection([_collection_node(r) for r in page], cursors, has_next, len(rows))


def _project_collections(
    project: dict[str, Any],
    info: GraphQLResolveInfo[Any],
    after: str | None = None,
    first: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    return _collections_connection(_ctx_store(info), project["_pk"], None, after, first)


def _type_collections(
    art_type: dict[str, Any],
    info: GraphQLResolveInfo[Any],
    after: str | None = None,
    first: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    return _collections_connection(_ctx_store(info), art_type["_project"], art_type["name"], after, first)


def _find_collection(
    store: Store, project_id: int, name: str, type_name: str | None
) -> dict[str, Any] | None:
    for row in _collections(store, project_id, type_name):
        if row["collection_name"] == name:
            return _collection_node(row)
    return None


def _project_collection(
    project: dict[str, Any], info: GraphQLResolveInfo[Any], name: str
) -> dict[str, Any] | None:
    return _find_collection(_ctx_store(info), project["_pk"], name, None)


def _type_collection(
    art_type: dict[str, Any], info: GraphQLResolveInfo[Any], name: str
) -> dict[str, Any] | None:
    return _find_collection(_ctx_store(info), art_type["_project"], name, art_type["name"])


def _collection_artifacts(
    collection: dict[str, Any],
    info: GraphQLResolveInfo[Any],
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    store = _ctx_store(info)
    ascending = order is not None and order.lstrip("+").startswith("version") and not order.startswith("-")
    rows = _versions(
        store,
        "v.collection_pk = ?",
        (collection["_pk"],),
        "v.version_index ASC" if ascending else "v.version_index DESC",
    )
    page, has_next, cursors = _page(
        rows, first, after, lambda r: [r["version_index"]], descending=not ascending
    )
    return _connection(
        [version_node(store, r) for r in page],
        cursors,
        has_next,
        len(rows),
        extra=lambda n: {"version": f"v{n['versionIndex']}"},
    )


def _membership(store: Store, collection_pk: int, alias_or_version: str) -> dict[str, Any] | None:
    if alias_or_version.startswith("v") and alias_or_version[1:].isdigit():
        rows = _versions(
            store, "v.collection_pk = ? AND v.version_index = ?", (collection_pk, int(alias_or_version[1:]))
        )
    else:
        rows = _versions(
            store,
            "v.pk = (SELECT version_pk FROM artifact_aliases WHERE collection_pk = ? AND alias = ?)",
            (collection_pk, alias_or_version),
        )
    if not rows:
        return None
    node = version_node(store, rows[0])
    return {
        "id": encode_id("ArtifactCollectionMembership", rows[0]["pk"]),
        "versionIndex": node["versionIndex"],
        "createdAt": node["createdAt"],
        "aliases": node["aliases"],
        "artifactCollection": node["_collection"],
        "artifact": node,
        "_pk": rows[0]["pk"],
    }


def _collection_membership(
    collection: dict[str, Any], info: GraphQLResolveInfo[Any], aliasName: str
) -> dict[str, Any] | None:
    return _membership(_ctx_store(info), collection["_pk"], aliasName)


def project_membership(
    project: dict[str, Any], info: GraphQLResolveInfo[Any], name: str
) -> dict[str, Any] | None:
    collection_name, _, version = name.partition(":")
    store = _ctx_store(info)
    collection = _find_collection(store, project["_pk"], collection_name, None)
    return _membership(store, collection["_pk"], version or "latest") if collection else None


def _membership_files(
    membership: dict[str, Any],
    info: GraphQLResolveInfo[Any],
    names: list[str] | None = None,
    after: str | None = None,
    first: int | None = None,
) -> dict[str, Any]:
    store = _ctx_store(info)
    rows = store._query(
        "SELECT pk, name, size FROM artifact_files WHERE version_pk = ? ORDER BY name", (membership["_pk"],)
    )
    if names:
        rows = [r for r in rows if r["name"] in set(names)]
    page, has_next, cursors = _page(rows, first, after, lambda r: [r["name"]])
    base = info.context.base_url
    nodes = []
    for r in page:
        url = f"{base}/artifacts/{membership['_pk']}/{quote(r['name'])}"
        nodes.append(
            {
                "__typename": "File",
                "id": encode_id("File", r["pk"]),
                "name": r["name"],
                "displayName": r["name"],
                "url": url,
                "directUrl": url,
                "sizeBytes": r["size"],
                "mimetype": "application/octet-stream",
                "updatedAt": None,
                "md5": None,
                "digest": None,
                "storagePath": None,
            }
        )
    return _connection(nodes, cursors, has_next, len(rows))


def _run_output_artifacts(
    run: dict[str, Any], info: GraphQLResolveInfo[Any], after: str | None = None, first: int | None = None
) -> dict[str, Any]:
    store = _ctx_store(info)
    rows = _versions(store, "v.run_pk = ?", (run["_pk"],), "v.pk ASC")
    page, has_next, cursors = _page(rows, first, after, lambda r: [r["pk"]])
    return _connection([version_node(store, r) for r in page], cursors, has_next, len(rows))


def _artifact_by_id(_: Any, info: GraphQLResolveInfo[Any], id: str) -> dict[str, Any] | None:
    store = _ctx_store(info)
    try:
        pk = decode_id("Artifact", id)
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    rows = _versions(store, "v.pk = ?", (pk,))
    return version_node(store, rows[0]) if rows else None


def _version_or_error(store: Store, artifact_id: str) -> sqlite3.Row:
    try:
        rows = _versions(store, "v.pk = ?", (decode_id("Artifact", artifact_id),))
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    if not rows:
        raise GraphQLError(f"artifact {artifact_id} not found")
    return rows[0]


def _path(row: sqlite3.Row) -> str:
    return f"{row['entity']}/{row['project_name']}/{row['collection_name']}:v{row['version_index']}"


def _delete_artifact(_: Any, info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> dict[str, Any]:
    store = _ctx_store(info)
    row = _version_or_error(store, input["artifactID"])
    node = version_node(store, row)
    aliases = [a["alias"] for a in node["aliases"]]
    if aliases and not input.get("deleteAliases"):
        # W&B's wording is unknown; the client documents the refusal (Artifact.delete's docstring).
        raise GraphQLError(
            f"cannot delete artifact {_path(row)}: it has aliases {aliases}; "
            f"delete them first or pass deleteAliases"
        )
    with store._transaction() as conn:
        conn.execute("DELETE FROM artifact_aliases WHERE version_pk = ?", (row["pk"],))
        conn.execute(
            "UPDATE artifact_versions SET state = 'DELETED', updated_at = ? WHERE pk = ?",
            (utc_now(), row["pk"]),
        )
        store._log(
            "DeleteArtifact",
            None,
            {"artifact": _path(row), "deleteAliases": bool(input.get("deleteAliases")), "aliases": aliases},
        )
    node["state"] = "DELETED"
    node["aliases"] = []
    return {"artifact": node}


def _update_artifact(_: Any, info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> dict[str, Any]:
    store = _ctx_store(info)
    row = _version_or_error(store, input["artifactID"])
    fields: dict[str, Any] = {}
    if input.get("ttlDurationSeconds") is not None:
        fields["ttl_seconds"] = int(input["ttlDurationSeconds"])
    if input.get("description") is not None:
        fields["description"] = input["description"]
    if input.get("metadata") is not None:
        fields["metadata"] = input["metadata"]
    if fields:
        with store._transaction() as conn:
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(
                f"UPDATE artifact_versions SET {sets}, updated_at = ? WHERE pk = ?",
                (*fields.values(), utc_now(), row["pk"]),
            )
            store._log("UpdateArtifact", None, {"artifact": _path(row), **fields})
    return {"artifact": version_node(store, _version_or_error(store, input["artifactID"]))}


def _alias_change(info: GraphQLResolveInfo[Any], input: dict[str, Any], add: bool) -> dict[str, Any]:
    store = _ctx_store(info)
    row = _version_or_error(store, input["artifactID"])
    names = [a["alias"] for a in input["aliases"]]
    with store._transaction() as conn:
        for alias in names:
            if add:
                set_alias(conn, row["collection_pk"], row["pk"], alias)  # moves it from another version
            else:
                conn.execute(
                    "DELETE FROM artifact_aliases WHERE version_pk = ? AND alias = ?", (row["pk"], alias)
                )
        store._log("AddAliases" if add else "DeleteAliases", None, {"artifact": _path(row), "aliases": names})
    return {"success": True}


def _add_aliases(_: Any, info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> dict[str, Any]:
    return _alias_change(info, input, add=True)


def _delete_aliases(_: Any, info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> dict[str, Any]:
    return _alias_change(info, input, add=False)


RESOLVERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("Mutation", "addAliases"): _add_aliases,
    ("Mutation", "deleteAliases"): _delete_aliases,
    ("Query", "artifact"): _artifact_by_id,
    ("Mutation", "deleteArtifact"): _delete_artifact,
    ("Mutation", "updateArtifact"): _update_artifact,
    ("Project", "artifactType"): _project_artifact_type,
    ("Project", "artifactCollections"): _project_collections,
    ("Project", "artifactCollection"): _project_collection,
    ("Project", "artifactCollectionMembership"): project_membership,
    ("Run", "outputArtifacts"): _run_output_artifacts,
    ("ArtifactType", "artifactCollections"): _type_collections,
    ("ArtifactType", "artifactCollection"): _type_collection,
    ("ArtifactSequence", "artifacts"): _collection_artifacts,
    ("ArtifactSequence", "artifactMembership"): _collection_membership,
    ("ArtifactCollectionMembership", "files"): _membership_files,
}
"""(type, field) -> resolver, attached by ``reconcile.emulator.resolvers``."""


def file_content(store: Store, version_pk: str, name: str) -> tuple[int, Iterator[bytes]] | None:
    """The size and bytes of one file of a (not deleted) version, or None."""
    if not version_pk.isdigit():
        return None
    rows = store._query(
        "SELECT f.size, f.content FROM artifact_files f JOIN artifact_versions v ON v.pk = f.version_pk "
        "WHERE v.pk = ? AND f.name = ? AND v.state = 'COMMITTED'",
        (int(version_pk), name),
    )
    if not rows:
        return None
    size, content = int(rows[0]["size"]), rows[0]["content"]
    if content is not None:
        return len(content), iter([bytes(content)])
    return size, deterministic_chunks(f"artifact/{version_pk}/{name}", size)
