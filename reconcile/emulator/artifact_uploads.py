"""Artifacts made by the SDK: ``run.log_artifact`` / ``wandb.log_model`` through wandb-core's saver.

wandb-core logs a version in this order (the documents are its own, see ``artifact_uploads.graphql``):
``CreateArtifact`` (a PENDING version, or the committed one with the same digest when deduplication
is on) -> ``CreateArtifactManifest`` (an upload URL for the manifest JSON) -> ``CreateArtifactFiles``
(an upload URL per file) -> PUT of each file and of the manifest -> ``CommitArtifact``. Commit makes
the version COMMITTED, sizes it from its manifest and gives it the aliases ``CreateArtifact`` asked for
(``latest`` included by the SDK), moving each alias from the version that had it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from graphql import GraphQLError

from reconcile.emulator import artifacts
from reconcile.emulator.artifact_fixture import TTL_DISABLED
from reconcile.emulator.nodes import Info
from reconcile.emulator.store import Store, StoreError, locate_run, utc_now

SQL = """
CREATE TABLE IF NOT EXISTS artifact_pending_aliases (
    version_pk INTEGER NOT NULL,
    alias TEXT NOT NULL,
    UNIQUE (version_pk, alias)
);
"""

TABLES = ("artifact_pending_aliases",)


def _version_pk(value: str) -> int:
    try:
        return artifacts.decode_id("Artifact", value)
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc


def _create_artifact(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    store: Store = info.context.store
    entity, project, run = input["entityName"], input["projectName"], input.get("runName")
    collection, type_name = input["artifactCollectionName"], input["artifactTypeName"]
    aliases = sorted({a["alias"] for a in input.get("aliases") or []})
    ttl = input.get("ttlDurationSeconds")
    with store._transaction() as conn:
        project_row = conn.execute(
            "SELECT id FROM projects WHERE entity = ? AND name = ?", (entity, project)
        ).fetchone()
        if project_row is None:
            raise GraphQLError(f"project {entity}/{project} not found")
        run_pk = locate_run(conn, entity, project, run)["pk"] if run else None
        coll = conn.execute(
            "SELECT pk, type FROM artifact_collections WHERE project_id = ? AND name = ?",
            (project_row["id"], collection),
        ).fetchone()
        if coll is not None and coll["type"] != type_name:
            raise GraphQLError(f"artifact {collection} is of type {coll['type']}, not {type_name}")
        if coll is None:
            coll_pk = int(
                conn.execute(
                    "INSERT INTO artifact_collections (project_id, type, name, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (project_row["id"], type_name, collection, utc_now()),
                ).lastrowid
                or 0
            )
        else:
            coll_pk = coll["pk"]
        same = conn.execute(
            "SELECT pk FROM artifact_versions WHERE collection_pk = ? AND digest = ? AND state = 'COMMITTED'",
            (coll_pk, input["digest"]),
        ).fetchone()
        if same is not None and input.get("enableDigestDeduplication"):
            version_pk = same["pk"]  # W&B returns the existing version; the new aliases go to it
            for alias in aliases:
                artifacts.set_alias(conn, coll_pk, version_pk, alias)
        else:
            index = conn.execute(
                "SELECT COALESCE(MAX(version_index) + 1, 0) FROM artifact_versions WHERE collection_pk = ?",
                (coll_pk,),
            ).fetchone()[0]
            now = utc_now()
            version_pk = int(
                conn.execute(
                    "INSERT INTO artifact_versions (collection_pk, version_index, run_pk, state, size, "
                    "digest, "
                    "ttl_seconds, metadata, description, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?, ?)",
                    (
                        coll_pk,
                        index,
                        run_pk,
                        input["digest"],
                        ttl if ttl is not None and ttl > 0 else TTL_DISABLED,
                        input.get("metadata") or "{}",
                        input.get("description"),
                        now,
                        now,
                    ),
                ).lastrowid
                or 0
            )
            conn.executemany(
                "INSERT OR IGNORE INTO artifact_pending_aliases VALUES (?, ?)",
                [(version_pk, a) for a in aliases],
            )
        store._log(
            "CreateArtifact",
            f"{entity}/{project}/{run}" if run else None,
            {"artifact": f"{collection}", "aliases": aliases},
        )
        state = conn.execute("SELECT state FROM artifact_versions WHERE pk = ?", (version_pk,)).fetchone()[0]
    artifact_id = artifacts.encode_id("Artifact", version_pk)
    return {
        "artifact": {
            "id": artifact_id,
            "state": state,
            "artifactSequence": {"latestArtifact": {"id": artifact_id}},
        }
    }


def _manifest(info: Info, version_pk: int) -> dict[str, Any]:
    url = info.context.sign(f"{info.context.base_url}/artifact-manifest/{version_pk}")
    manifest_id = artifacts.encode_id("ArtifactManifest", version_pk)
    return {
        "artifactManifest": {
            "id": manifest_id,
            "file": {"id": manifest_id, "uploadUrl": url, "uploadHeaders": []},
        }
    }


def _create_manifest(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    return _manifest(info, _version_pk(input["artifactID"]))


def _update_manifest(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    return _manifest(info, artifacts.decode_id("ArtifactManifest", input["artifactManifestID"]))


def _create_files(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    edges = []
    for spec in input["artifactFiles"]:
        version_pk = _version_pk(spec["artifactID"])
        path = f"{version_pk}/{quote(spec['name'])}"
        edges.append(
            {
                "cursor": path,
                "node": {
                    "id": artifacts.encode_id("File", version_pk),
                    "name": spec["name"],
                    "storagePath": path,
                    "uploadUrl": info.context.sign(f"{info.context.base_url}/artifact-upload/{path}"),
                    "uploadHeaders": [],
                    "uploadMultipartUrls": None,
                    "artifact": {"id": spec["artifactID"]},
                },
            }
        )
    return {
        "files": {
            "edges": edges,
            "pageInfo": {
                "startCursor": None,
                "endCursor": None,
                "hasNextPage": False,
                "hasPreviousPage": False,
            },
        }
    }


def _commit(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    store: Store = info.context.store
    version_pk = _version_pk(input["artifactID"])
    with store._transaction() as conn:
        row = conn.execute(
            "SELECT collection_pk, digest, state FROM artifact_versions WHERE pk = ?", (version_pk,)
        ).fetchone()
        if row is None:
            raise GraphQLError(f"artifact {input['artifactID']} not found")
        size = conn.execute(
            "SELECT COALESCE(SUM(size), 0) FROM artifact_files WHERE version_pk = ?", (version_pk,)
        ).fetchone()[0]
        conn.execute(
            "UPDATE artifact_versions SET state = 'COMMITTED', size = ?, updated_at = ? WHERE pk = ?",
            (size, utc_now(), version_pk),
        )
        pending = [
            r[0]
            for r in conn.execute(
                "SELECT alias FROM artifact_pending_aliases WHERE version_pk = ? ORDER BY alias",
                (version_pk,),
            )
        ]
        for alias in pending:
            artifacts.set_alias(conn, row["collection_pk"], version_pk, alias)
        conn.execute("DELETE FROM artifact_pending_aliases WHERE version_pk = ?", (version_pk,))
        store._log(
            "CommitArtifact", None, {"artifact": input["artifactID"], "aliases": pending, "size": size}
        )
    return {"artifact": {"id": input["artifactID"], "digest": row["digest"]}}


def _use_artifact(_: Any, __: Info, input: dict[str, Any]) -> dict[str, Any]:
    # Lineage (which run used which version) is not kept: reconcile never reads it.
    return {"artifact": {"id": input["artifactID"]}}


def put(store: Store, path: str, data: bytes) -> bool:
    """A PUT to ``/artifact-upload/<version>/<name>`` (a file) or ``/artifact-manifest/<version>``; False
    when the path names neither."""
    if path.startswith("/artifact-upload/"):
        version, _, name = path[len("/artifact-upload/") :].partition("/")
        if not version.isdigit() or not name:
            return False
        with store._transaction() as conn:
            conn.execute(
                "INSERT INTO artifact_files (version_pk, name, size, content) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (version_pk, name) DO UPDATE SET size = excluded.size, "
                "content = excluded.content",
                (int(version), unquote(name), len(data), data),
            )
        return True
    if path.startswith("/artifact-manifest/"):
        version = path[len("/artifact-manifest/") :]
        if not version.isdigit():
            return False
        _register_manifest(store, int(version), data)
        return True
    return False


def _register_manifest(store: Store, version_pk: int, data: bytes) -> None:
    """Files the manifest lists that were not uploaded (deduplicated against an earlier version) are
    registered with their sizes, so the version's size and file list are whole."""
    try:
        contents = json.loads(data).get("contents") or {}
    except (ValueError, AttributeError):
        return
    with store._transaction() as conn:
        for name, entry in contents.items():
            size = entry.get("size") if isinstance(entry, dict) else None
            if isinstance(size, int):
                conn.execute(
                    "INSERT OR IGNORE INTO artifact_files (version_pk, name, size, content) "
                    "VALUES (?, ?, ?, NULL)",
                    (version_pk, name, size),
                )


def _project_artifact(project: dict[str, Any], info: Info, name: str) -> dict[str, Any] | None:
    membership = artifacts.project_membership(project, info, name)
    return membership["artifact"] if membership else None


RESOLVERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("Mutation", "createArtifact"): _create_artifact,
    ("Mutation", "createArtifactManifest"): _create_manifest,
    ("Mutation", "updateArtifactManifest"): _update_manifest,
    ("Mutation", "createArtifactFiles"): _create_files,
    ("Mutation", "commitArtifact"): _commit,
    ("Mutation", "useArtifact"): _use_artifact,
    ("Project", "artifact"): _project_artifact,
}
"""(type, field) -> resolver, attached by ``reconcile.emulator.resolvers``."""
