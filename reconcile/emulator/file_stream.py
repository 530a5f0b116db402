"""``POST /files/<entity>/<project>/<run>/file_stream``: what a live run streams (wandb-core's filestream).

A request body (wandb-core ``FileStreamRequestJSON``) is
``{"files": {name: {"offset": n, "content": [line, ...]}}, "uploaded": [...], "preempting": bool,
"complete": bool, "exitcode": int}``; every field may be absent (an empty body is a heartbeat).
Files: ``wandb-history.jsonl`` (one JSON row per line), ``wandb-events.jsonl`` (system metrics),
``wandb-summary.json`` (the whole summary on its line; the last line wins), ``output.log`` (console lines,
rewritten in place for progress bars). The answer is a JSON object (wandb-core decodes it and reads
only ``stopped``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from reconcile.emulator.history import EVENTS, HISTORY, OUTPUT, append_lines
from reconcile.emulator.store import Store, locate_run, utc_now

STREAMS = {"wandb-history.jsonl": HISTORY, "wandb-events.jsonl": EVENTS, "output.log": OUTPUT}
SUMMARY_FILE = "wandb-summary.json"


class FileStreamError(ValueError):
    """The body is not a file_stream request; answered 400."""


def _chunks(body: dict[str, Any]) -> dict[str, tuple[int, list[str]]]:
    files = body.get("files") or {}
    if not isinstance(files, dict):
        raise FileStreamError("files must be an object")
    chunks = {}
    for name, chunk in files.items():
        if not isinstance(chunk, dict):
            raise FileStreamError(f"files[{name!r}] must be an object with offset and content")
        offset, content = chunk.get("offset", 0), chunk.get("content") or []
        if not isinstance(offset, int) or offset < 0:
            raise FileStreamError(f"files[{name!r}].offset must be a non-negative integer")
        if not isinstance(content, list) or not all(isinstance(line, str) for line in content):
            raise FileStreamError(f"files[{name!r}].content must be a list of strings")
        chunks[name] = (offset, content)
    return chunks


def final_state(exitcode: Any) -> str:
    """The state a completed run ends in: exit code 0 is ``finished``, anything else ``failed``."""
    return "finished" if exitcode in (0, None) else "failed"


def _run_updates(
    body: dict[str, Any], chunks: dict[str, tuple[int, list[str]]], logged: dict[str, Any]
) -> dict[str, Any]:
    """The run columns one request changes: heartbeat, summary, system metrics and state."""
    now = utc_now()
    updates: dict[str, Any] = {"heartbeat_at": now, "stream_heartbeat_at": now}
    summary = chunks.get(SUMMARY_FILE)
    if summary and summary[1]:
        try:
            parsed = json.loads(summary[1][-1])
        except ValueError as exc:
            raise FileStreamError(f"{SUMMARY_FILE} line is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise FileStreamError(f"{SUMMARY_FILE} line must be a JSON object")
        updates["summary"] = json.dumps(parsed)
        logged["summary"] = True
    events = chunks.get("wandb-events.jsonl")
    if events and events[1]:
        updates["system_metrics"] = events[1][-1]
    if body.get("complete") is True:
        updates["state"] = final_state(body.get("exitcode"))
        logged.update(complete=True, exitcode=body.get("exitcode"))
    elif body.get("preempting") is True:
        updates["state"] = "preempting"
        logged["preempting"] = True
    else:
        # Data from the process means it is alive: a resumed run is running again.
        updates["state"] = "running"
    return updates


def apply(store: Store, entity: str, project: str, run: str, raw: bytes) -> dict[str, Any]:
    """Apply one file_stream request to the run; returns the JSON answer."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise FileStreamError(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise FileStreamError("body must be a JSON object")
    chunks = _chunks(body)
    with store.transaction() as conn:
        row = locate_run(conn, entity, project, run)
        logged: dict[str, Any] = {}
        try:
            for name, (offset, lines) in chunks.items():
                if name in STREAMS and lines:
                    append_lines(conn, row["pk"], STREAMS[name], offset, lines)
                    logged[STREAMS[name]] = [offset, len(lines)]
        except ValueError as exc:
            raise FileStreamError(str(exc)) from exc
        updates = _run_updates(body, chunks, logged)
        assignments = ", ".join(f"{column} = ?" for column in updates)
        conn.execute(f"UPDATE runs SET {assignments} WHERE pk = ?", [*updates.values(), row["pk"]])
        if logged:
            store.log_write("file_stream", f"{entity}/{project}/{run}", logged)
    return {}


def expire_heartbeats(store: Store, crash_after: float) -> int:
    """Runs whose process stopped streaming ``crash_after`` seconds ago without ``complete`` become
    ``crashed`` (``preempted`` after a ``preempting`` signal). Seeded runs never streamed: they stay.

    W&B marks such runs crashed; after how long is unknown (README). Returns how many changed.
    """
    cutoff = (datetime.now(timezone.utc) - timedelta(seconds=crash_after)).replace(tzinfo=None)
    where = (
        "r.stream_heartbeat_at IS NOT NULL AND r.state IN ('running', 'preempting') "
        "AND r.stream_heartbeat_at <= ?"
    )
    params = (cutoff.isoformat(timespec="seconds"),)
    if not store.read(f"SELECT 1 FROM runs r WHERE {where} LIMIT 1", params):
        return 0
    with store.transaction() as conn:
        rows = conn.execute(
            "SELECT r.pk, r.name, r.state, p.entity, p.name AS project FROM runs r "
            f"JOIN projects p ON p.id = r.project_id WHERE {where}",
            params,
        ).fetchall()
        for row in rows:
            state = "preempted" if row["state"] == "preempting" else "crashed"
            conn.execute("UPDATE runs SET state = ? WHERE pk = ?", (state, row["pk"]))
            store.log_write(
                "heartbeat_timeout", f"{row['entity']}/{row['project']}/{row['name']}", {"state": state}
            )
    return len(rows)
