"""The emulator's state in SQLite: projects, runs, run files (with bytes) and the mutation log.

One connection shared by all server threads behind a lock: SQLite work per request is short
(a page of 1,000 runs reads in milliseconds), and a single writer keeps the mutation log ordered.
Listings page in SQL (keyset cursors), so even 100,000 runs are served with flat memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from reconcile.emulator.filters import FilterError, compile_filter, compile_order
from reconcile.emulator.fixture import Fixture

MAX_PAGE_SIZE = 1000
"""Largest ``first`` the emulator honours; larger requests get this many plus ``hasNextPage``.
W&B's own cap is unknown (protocol §13.8): this is the emulator's choice, not W&B's."""

_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT,
    UNIQUE (entity, name)
);
CREATE TABLE IF NOT EXISTS runs (
    pk INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    display_name TEXT,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    config TEXT NOT NULL,
    summary TEXT NOT NULL,
    tags TEXT NOT NULL,
    group_name TEXT,
    job_type TEXT,
    notes TEXT,
    description TEXT,
    username TEXT,
    sweep_name TEXT,
    commit_hash TEXT,
    system_metrics TEXT NOT NULL,
    history_line_count INTEGER NOT NULL,
    history_keys TEXT,
    stream_heartbeat_at TEXT,
    host TEXT,
    program TEXT,
    UNIQUE (project_id, name)
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (project_id, created_at, pk);
CREATE INDEX IF NOT EXISTS runs_streaming ON runs (stream_heartbeat_at) WHERE stream_heartbeat_at IS NOT NULL
    AND state IN ('running', 'preempting');
CREATE TABLE IF NOT EXISTS files (
    pk INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL REFERENCES runs(pk),
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    mimetype TEXT,
    md5 TEXT,
    content BLOB,
    UNIQUE (run_pk, name)
);
-- Lines the SDK streams through file_stream (history.py, file_stream.py): stream is 'history',
-- 'events' (system metrics) or 'output' (console); line is the file_stream offset.
CREATE TABLE IF NOT EXISTS run_lines (
    run_pk INTEGER NOT NULL REFERENCES runs(pk),
    stream TEXT NOT NULL,
    line INTEGER NOT NULL,
    step INTEGER,
    content TEXT NOT NULL,
    PRIMARY KEY (run_pk, stream, line)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_lines_by_step ON run_lines (run_pk, stream, step);
-- Sweeps (sweeps.py): name is the sweep id users see; config is the YAML the client sent.
CREATE TABLE IF NOT EXISTS sweeps (
    pk INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    display_name TEXT,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    scheduled INTEGER NOT NULL DEFAULT 0,
    UNIQUE (name)
);
CREATE TABLE IF NOT EXISTS sweep_agents (
    pk INTEGER PRIMARY KEY,
    sweep_pk INTEGER NOT NULL REFERENCES sweeps(pk),
    host TEXT NOT NULL,
    created_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mutations (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    operation TEXT NOT NULL,
    run TEXT,
    fields TEXT NOT NULL
);
"""


_TABLES = ("run_lines", "files", "sweep_agents", "sweeps", "runs", "projects", "mutations", "meta")
"""Every table, children first: seeding empties them all in this order."""


class StoreError(ValueError):
    """A request names something the store cannot act on (bad id, unknown run); becomes a GraphQL error."""


def utc_now(*, precise: bool = False) -> str:
    """The current time in the stored zone-less UTC ISO form (``precise``: with microseconds)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return now.isoformat(timespec="microseconds" if precise else "seconds")


def run_storage_id(entity: str, project: str, name: str) -> str:
    """W&B's storage id of a run: base64 ``Run:v1:<name>:<project>:<entity>`` (protocol §2)."""
    return base64.b64encode(f"Run:v1:{name}:{project}:{entity}".encode()).decode()


def project_internal_id(project_id: int) -> str:
    """``project.internalId``: base64 ``ProjectInternalId:<n>`` (protocol §13.6, wandb/wandb#9338)."""
    return base64.b64encode(f"ProjectInternalId:{project_id}".encode()).decode()


def file_id(pk: int) -> str:
    """The opaque GraphQL id of a run file."""
    return base64.b64encode(f"File:{pk}".encode()).decode()


def _decode_file_id(value: str) -> int:
    try:
        kind, _, number = base64.b64decode(value, validate=True).decode().partition(":")
        if kind != "File":
            raise ValueError(kind)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise StoreError(f"invalid file id {value!r}") from exc


def _decode_run_id(storage_id: str) -> tuple[str, str, str]:
    """``(entity, project, name)`` of a run storage id (base64 ``Run:v1:<name>:<project>:<entity>``)."""
    try:
        kind, version, rest = base64.b64decode(storage_id, validate=True).decode().split(":", 2)
        name, project, entity = rest.rsplit(":", 2)
        if (kind, version) != ("Run", "v1"):
            raise ValueError(kind)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise StoreError(f"invalid run id {storage_id!r}") from exc
    return entity, project, name


def _encode_cursor(key: Any, pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, pk]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        key, pk = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return key, int(pk)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise StoreError(f"invalid cursor {cursor!r}") from exc


def _after(expr: str, descending: bool, cursor: str | None) -> tuple[str, list[Any]]:
    """Keyset condition for rows after ``cursor`` in ``ORDER BY expr, pk`` (NULLs sort lowest)."""
    if not cursor:
        return "1", []
    key, pk = _decode_cursor(cursor)
    if not descending:
        if key is None:
            return f"(({expr}) IS NULL AND r.pk > ?) OR ({expr}) IS NOT NULL", [pk]
        return f"({expr}) > ? OR (({expr}) = ? AND r.pk > ?)", [key, key, pk]
    if key is None:
        return f"({expr}) IS NULL AND r.pk < ?", [pk]
    return f"({expr}) < ? OR (({expr}) = ? AND r.pk < ?) OR ({expr}) IS NULL", [key, key, pk]


@lru_cache(maxsize=128)
def _compiled_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: Any) -> bool:
    return isinstance(value, str) and _compiled_regex(pattern).search(value) is not None


def deterministic_chunks(seed: str, size: int) -> Iterator[bytes]:
    """Yield ``size`` bytes derived only from ``seed`` (a seeded file's content), in 1 MiB chunks."""
    block = hashlib.sha256(seed.encode()).digest() * (_CHUNK // 32)
    remaining = size
    while remaining > 0:
        n = min(remaining, len(block))
        yield block[:n]
        remaining -= n


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - W&B's md5 field, not security


def deep_merge(stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """Merge ``sent`` into ``stored`` recursively: dicts merge, anything else replaces (wandb/wandb#11055)."""
    merged = dict(stored)
    for key, value in sent.items():
        old = merged.get(key)
        merged[key] = deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def _ensure_project(conn: sqlite3.Connection, entity: str, project: str) -> int:
    """The project's id inside a transaction, creating the project when it does not exist."""
    conn.execute(
        "INSERT OR IGNORE INTO projects (entity, name, created_at) VALUES (?, ?, ?)",
        (entity, project, utc_now()),
    )
    row = conn.execute("SELECT id FROM projects WHERE entity = ? AND name = ?", (entity, project)).fetchone()
    return int(row["id"])


def locate_run(conn: sqlite3.Connection, entity: str, project: str, run: str) -> sqlite3.Row:
    """The run's ``pk`` and ``state`` inside a transaction; StoreError when there is no such run."""
    row = conn.execute(
        "SELECT r.pk, r.state FROM runs r JOIN projects p ON p.id = r.project_id "
        "WHERE p.entity = ? AND p.name = ? AND r.name = ?",
        (entity, project, run),
    ).fetchone()
    if row is None:
        raise StoreError(f"run {entity}/{project}/{run} not found")
    return row  # type: ignore[no-any-return]


class Store:
    """Thread-safe access to the emulator's SQLite database."""

    def __init__(self, path: Path, *, reset: bool = False) -> None:
        self.path = Path(path)
        if reset:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.create_function("regexp", 2, _regexp, deterministic=True)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        from reconcile.emulator import artifact_uploads, artifacts  # their own modules, built on this one

        self._conn.executescript(artifacts.SQL)
        self._conn.executescript(artifact_uploads.SQL)

    def close(self) -> None:
        """Close the connection (the data stays in the file)."""
        with self._lock:
            self._conn.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---- seeding -------------------------------------------------------------------------------
    def seed(self, fixture: Fixture) -> None:
        """Replace everything with the fixture's projects, runs, files and artifacts, in one transaction."""
        from reconcile.emulator import artifact_uploads, artifacts

        projects: dict[tuple[str, str], int] = {}
        for entity, name in [*fixture.projects, *((r.entity, r.project) for r in fixture.runs)]:
            projects.setdefault((entity, name), len(projects) + 1)
        run_rows = []
        file_rows = []
        for pk, run in enumerate(fixture.runs, start=1):
            run_rows.append(
                (
                    pk,
                    projects[(run.entity, run.project)],
                    run.id,
                    run.display_name,
                    run.state,
                    run.created_at,
                    run.heartbeat_at,
                    run.heartbeat_at,
                    json.dumps(run.config),
                    json.dumps(run.summary),
                    json.dumps(run.tags),
                    run.group,
                    run.job_type,
                    run.notes,
                    run.description,
                    run.username or fixture.viewer_username,
                    run.sweep,
                    run.commit,
                    json.dumps(run.system_metrics),
                    run.history_line_count,
                )
            )
            for f in run.files:
                md5 = f.md5 or (_md5_b64(f.content) if f.content is not None else None)
                file_rows.append((pk, f.name, f.size, f.updated_at, f.mimetype, md5, f.content))
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            try:
                for table in (*artifact_uploads.TABLES, *artifacts.TABLES, *_TABLES):
                    c.execute(f"DELETE FROM {table}")
                c.executemany(
                    "INSERT INTO projects (id, entity, name) VALUES (?, ?, ?)",
                    [(pid, e, n) for (e, n), pid in projects.items()],
                )
                c.executemany(
                    "INSERT INTO runs (pk, project_id, name, display_name, state, created_at, heartbeat_at, "
                    "updated_at, config, summary, tags, group_name, job_type, notes, description, username, "
                    "sweep_name, commit_hash, system_metrics, history_line_count) VALUES ("
                    + ",".join("?" * 20)
                    + ")",
                    run_rows,
                )
                c.executemany(
                    "INSERT INTO files (run_pk, name, size, updated_at, mimetype, md5, content) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    file_rows,
                )
                artifacts.seed(c, [(pk, projects[(run.entity, run.project)], run.artifacts)
                                   for pk, run in enumerate(fixture.runs, start=1)])
                c.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("viewer_entity", fixture.viewer_entity), ("viewer_username", fixture.viewer_username)],
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    # ---- reads ---------------------------------------------------------------------------------
    def viewer(self) -> dict[str, str]:
        """The viewer's entity and username (from the fixture; the first run's entity by default)."""
        meta = {row["key"]: row["value"] for row in self._query("SELECT key, value FROM meta")}
        if "viewer_entity" not in meta:
            first = self._query("SELECT entity FROM projects ORDER BY id LIMIT 1")
            meta["viewer_entity"] = first[0]["entity"] if first else "emulator"
        entity = meta["viewer_entity"]
        return {"entity": entity, "username": meta.get("viewer_username", entity)}

    def project(self, entity: str, name: str) -> sqlite3.Row | None:
        """The project row, or None."""
        rows = self._query(
            "SELECT id, entity, name FROM projects WHERE entity = ? AND name = ?", (entity, name)
        )
        return rows[0] if rows else None

    _RUN_SELECT = (
        "SELECT r.*, p.entity AS entity, p.name AS project FROM runs r JOIN projects p ON p.id = r.project_id"
    )

    def run(self, project_id: int, name: str) -> sqlite3.Row | None:
        """One run of a project by run id (W&B's ``name``), or None."""
        rows = self._query(f"{self._RUN_SELECT} WHERE r.project_id = ? AND r.name = ?", (project_id, name))
        return rows[0] if rows else None

    def count_runs(self, project_id: int, filters: str | None) -> int:
        """``runCount(filters)``: the number of runs that match."""
        where, params = compile_filter(filters)
        rows = self._query(
            f"SELECT COUNT(*) AS n FROM runs r WHERE r.project_id = ? AND ({where})", [project_id, *params]
        )
        return int(rows[0]["n"])

    def list_runs(
        self, project_id: int, *, filters: str | None, order: str | None, after: str | None, first: int | None
    ) -> tuple[list[tuple[sqlite3.Row, str]], bool]:
        """One page of runs with their cursors, and whether more follow."""
        where, params = compile_filter(filters)
        compiled = compile_order(order)
        after_sql, after_params = _after(compiled.expr, compiled.descending, after)
        limit = min(MAX_PAGE_SIZE, 50 if first is None else max(first, 0))
        direction = "DESC" if compiled.descending else "ASC"
        sql = (
            f"SELECT r.*, p.entity AS entity, p.name AS project, {compiled.expr} AS sort_key FROM runs r "
            f"JOIN projects p ON p.id = r.project_id WHERE r.project_id = ? AND ({where}) AND ({after_sql}) "
            f"ORDER BY sort_key {direction}, r.pk {direction} LIMIT ?"
        )
        rows = self._query(sql, [project_id, *params, *after_params, limit + 1])
        page = [(row, _encode_cursor(row["sort_key"], row["pk"])) for row in rows[:limit]]
        return page, len(rows) > limit

    def count_files(self, run_pk: int) -> int:
        """``fileCount``: every file of the run, whatever the names/pattern filter (protocol §6)."""
        return int(self._query("SELECT COUNT(*) AS n FROM files WHERE run_pk = ?", (run_pk,))[0]["n"])

    def list_files(
        self,
        run_pk: int,
        *,
        names: Sequence[str] | None,
        pattern: str | None,
        after: str | None,
        first: int | None,
    ) -> tuple[list[tuple[sqlite3.Row, str]], bool]:
        """One page of a run's files ordered by name: ``names`` exact, ``pattern`` SQL LIKE."""
        conds: list[str] = ["f.run_pk = ?"]
        params: list[Any] = [run_pk]
        if names:
            conds.append(f"f.name IN ({','.join('?' * len(names))})")
            params.extend(names)
        if pattern is not None:
            # MySQL LIKE semantics: backslash escapes, case-insensitive under W&B's default collation [INF].
            conds.append("f.name LIKE ? ESCAPE '\\'")
            params.append(pattern)
        if after:
            key, pk = _decode_cursor(after)
            conds.append("(f.name > ? OR (f.name = ? AND f.pk > ?))")
            params.extend([key, key, pk])
        limit = min(MAX_PAGE_SIZE, 50 if first is None else max(first, 0))
        rows = self._query(
            "SELECT f.pk, f.name, f.size, f.updated_at, f.mimetype, f.md5 FROM files f "
            f"WHERE {' AND '.join(conds)} ORDER BY f.name, f.pk LIMIT ?",
            [*params, limit + 1],
        )
        return [(row, _encode_cursor(row["name"], row["pk"])) for row in rows[:limit]], len(rows) > limit

    def file_content(
        self, entity: str, project: str, run: str, name: str
    ) -> tuple[int, Iterator[bytes]] | None:
        """The size and bytes of a run file, or None when it does not exist."""
        rows = self._query(
            "SELECT f.size, f.content FROM files f JOIN runs r ON r.pk = f.run_pk JOIN projects p "
            "ON p.id = r.project_id WHERE p.entity = ? AND p.name = ? AND r.name = ? AND f.name = ?",
            (entity, project, run, name),
        )
        if not rows:
            return None
        size, content = int(rows[0]["size"]), rows[0]["content"]
        if content is not None:
            return len(content), iter([bytes(content)])
        return size, deterministic_chunks(f"{entity}/{project}/{run}/{name}", size)

    def mutations(self) -> list[dict[str, Any]]:
        """The mutation log, oldest first."""
        return [
            {
                "seq": row["seq"],
                "time": row["time"],
                "operation": row["operation"],
                "run": row["run"],
                "fields": json.loads(row["fields"]),
            }
            for row in self._query("SELECT * FROM mutations ORDER BY seq")
        ]

    # ---- for the feature modules (history, file_stream, sweeps) ----------------------------------
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one read-only statement under the store's lock."""
        return self._query(sql, params)

    def transaction(self) -> _Transaction:
        """``with store.transaction() as conn``: one IMMEDIATE transaction under the store's lock."""
        return self._transaction()

    def log_write(self, operation: str, run: str | None, fields: dict[str, Any]) -> None:
        """Append a mutation-log entry; call inside :meth:`transaction` so it commits with the write."""
        self._log(operation, run, fields)

    def run_by_path(self, entity: str, project: str, name: str) -> sqlite3.Row | None:
        """The run row (with ``entity`` and ``project``) for a path, or None."""
        rows = self._query(
            f"{self._RUN_SELECT} WHERE p.entity = ? AND p.name = ? AND r.name = ?", (entity, project, name)
        )
        return rows[0] if rows else None

    # ---- writes --------------------------------------------------------------------------------
    def _log(self, operation: str, run: str | None, fields: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO mutations (time, operation, run, fields) VALUES (?, ?, ?, ?)",
            (utc_now(), operation, run, json.dumps(fields)),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self._lock)

    def upsert_run(
        self,
        *,
        storage_id: str | None,
        entity: str | None,
        project: str | None,
        name: str | None,
        fields: dict[str, Any],
        config_writes: str,
        operation: str = "UpsertBucket",
    ) -> tuple[sqlite3.Row, bool]:
        """Apply an UpsertBucket: null/absent fields stay; config merges (or replaces); summary, tags replace.

        Returns the run row after the write and whether the run was created.
        """
        if storage_id:
            entity, project, name = _decode_run_id(storage_id)
        if not (entity and project and name):
            raise StoreError("upsertBucket needs id, or name with entityName and modelName")
        with self._transaction() as c:
            proj = c.execute(
                "SELECT id FROM projects WHERE entity = ? AND name = ?", (entity, project)
            ).fetchone()
            row = (
                None
                if proj is None
                else c.execute(
                    "SELECT * FROM runs WHERE project_id = ? AND name = ?", (proj["id"], name)
                ).fetchone()
            )
            inserted = False
            if row is None:
                if storage_id:
                    raise StoreError(f"run {entity}/{project}/{name} not found")
                project_id = _ensure_project(c, entity, project)
                # wandb.init's create form and Api.create_run: the project and run come into being
                # on demand, running unless the input says otherwise (create_run sends "pending").
                now = utc_now()
                c.execute(
                    "INSERT INTO runs (project_id, name, state, created_at, heartbeat_at, updated_at, "
                    "config, summary, tags, username, system_metrics, history_line_count) "
                    "VALUES (?, ?, ?, ?, ?, ?, '{}', '{}', '[]', ?, '{}', 0)",
                    (
                        project_id,
                        name,
                        fields.get("state") or "running",
                        now,
                        now,
                        now,
                        self.viewer()["username"],
                    ),
                )
                row = c.execute(
                    "SELECT * FROM runs WHERE project_id = ? AND name = ?", (project_id, name)
                ).fetchone()
                inserted = True
            updates: dict[str, Any] = {}
            columns = {
                "displayName": "display_name",
                "notes": "notes",
                "description": "description",
                "groupName": "group_name",
                "jobType": "job_type",
                "state": "state",
                "commit": "commit_hash",
                "sweep": "sweep_name",
                "host": "host",
                "jobProgram": "program",
            }
            for key, column in columns.items():
                if fields.get(key) is not None:
                    updates[column] = fields[key]
            if fields.get("tags") is not None:
                updates["tags"] = json.dumps(list(fields["tags"]))
            if fields.get("config") is not None:
                sent = fields["config"]
                updates["config"] = json.dumps(
                    sent if config_writes == "replace" else deep_merge(json.loads(row["config"]), sent)
                )
            if fields.get("summaryMetrics") is not None:
                updates["summary"] = json.dumps(fields["summaryMetrics"])
            updates["updated_at"] = utc_now()
            assignments = ", ".join(f"{column} = ?" for column in updates)
            c.execute(f"UPDATE runs SET {assignments} WHERE pk = ?", [*updates.values(), row["pk"]])
            written = {k: v for k, v in fields.items() if v is not None}
            self._log(operation, f"{entity}/{project}/{name}", written)
            result = c.execute(f"{self._RUN_SELECT} WHERE r.pk = ?", (row["pk"],)).fetchone()
        return result, inserted

    def ensure_project(self, entity: str, project: str) -> int:
        """The project's id, creating the project first when it does not exist."""
        with self._transaction() as c:
            return _ensure_project(c, entity, project)

    def list_projects(
        self, entity: str, *, after: str | None, first: int | None
    ) -> tuple[list[tuple[sqlite3.Row, str]], bool]:
        """One page of an entity's projects (oldest first) with their cursors, and whether more follow."""
        pk = _decode_cursor(after)[1] if after else 0
        limit = min(MAX_PAGE_SIZE, 50 if first is None else max(first, 0))
        rows = self._query(
            "SELECT p.id, p.entity, p.name, COALESCE(p.created_at, (SELECT MIN(created_at) FROM runs "
            "WHERE project_id = p.id)) AS created_at FROM projects p WHERE p.entity = ? AND p.id > ? "
            "ORDER BY p.id LIMIT ?",
            (entity, pk, limit + 1),
        )
        return [(row, _encode_cursor(None, row["id"])) for row in rows[:limit]], len(rows) > limit

    def delete_run(self, storage_id: str) -> None:
        """``deleteRun``: the run, its files and streamed lines are gone (an unknown id is an error)."""
        entity, project, name = _decode_run_id(storage_id)
        with self._transaction() as c:
            row = locate_run(c, entity, project, name)
            for table in ("run_lines", "files"):
                c.execute(f"DELETE FROM {table} WHERE run_pk = ?", (row["pk"],))
            c.execute("DELETE FROM runs WHERE pk = ?", (row["pk"],))
            self._log("deleteRun", f"{entity}/{project}/{name}", {})

    def delete_files(self, ids: Sequence[str], project_id: int | None) -> int:
        """Delete every listed file at once; unknown (already deleted) ids are a no-op. Returns the count.

        Ids of another run are deleted too (file ids are global); with ``project_id`` given, an id of a
        file in another project is an error and nothing is deleted (W&B's behaviour is unknown, §14.4).
        """
        pks = [_decode_file_id(i) for i in ids]
        if not pks:
            return 0
        with self._transaction() as c:
            placeholders = ",".join("?" * len(pks))
            rows = c.execute(
                "SELECT f.pk, f.name, r.name AS run, r.project_id, p.entity, p.name AS project FROM files f "
                "JOIN runs r ON r.pk = f.run_pk JOIN projects p ON p.id = r.project_id "
                f"WHERE f.pk IN ({placeholders}) ORDER BY f.pk",
                pks,
            ).fetchall()
            if project_id is not None:
                foreign = [file_id(row["pk"]) for row in rows if row["project_id"] != project_id]
                if foreign:
                    raise StoreError(
                        f"files {foreign} do not belong to project {project_id}; nothing was deleted"
                    )
            c.execute(f"DELETE FROM files WHERE pk IN ({placeholders})", pks)
            by_run: dict[str, list[sqlite3.Row]] = {}
            for row in rows:
                by_run.setdefault(f"{row['entity']}/{row['project']}/{row['run']}", []).append(row)
            for run_path, files in by_run.items():
                self._log(
                    "deleteFiles",
                    run_path,
                    {"files": [f["name"] for f in files], "ids": [file_id(f["pk"]) for f in files]},
                )
            missing = sorted(set(ids) - {file_id(row["pk"]) for row in rows})
            if missing:
                self._log("deleteFiles", None, {"already_deleted": missing})
        return len(rows)

    def put_file(self, entity: str, project: str, run: str, name: str, data: bytes) -> None:
        """Store an uploaded file's bytes, registering it on the run (SaaS registers on PUT, §13.7)."""
        with self._transaction() as c:
            row = locate_run(c, entity, project, run)
            c.execute(
                "INSERT INTO files (run_pk, name, size, updated_at, md5, content) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_pk, name) DO UPDATE SET size = excluded.size, "
                "updated_at = excluded.updated_at, "
                "md5 = excluded.md5, content = excluded.content",
                # microseconds: files a run saves within one second keep their upload order
                (row["pk"], name, len(data), utc_now(precise=True), _md5_b64(data), data),
            )
            self._log("upload", f"{entity}/{project}/{run}", {"file": name, "size": len(data)})

    def log(self, operation: str, run: str | None, fields: dict[str, Any]) -> None:
        """Append a mutation-log entry for a write that changes no table (e.g. CreateRunFiles)."""
        with self._transaction():
            self._log(operation, run, fields)


class _Transaction:
    """``with store._transaction() as conn``: lock, BEGIN IMMEDIATE, COMMIT or ROLLBACK."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn, self._lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


__all__ = ["MAX_PAGE_SIZE", "FilterError", "Store", "StoreError", "deep_merge", "run_storage_id"]
