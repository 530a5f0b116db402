"""A run's history, system-metric events and console output: stored as the SDK streams them, read back
the ways the public API and wandb-core ask.

Writes come from ``file_stream.py`` (``append_lines``). Reads: ``Run.history(samples, minStep, maxStep)``
(``run.history()`` and wandb-core's ``HistoryPage``), ``Run.sampledHistory(specs)`` (``run.history(keys=)``,
``SampledHistoryPage``), ``Run.events(samples)`` (``history(stream="events")``),
``Run.parquetHistory(liveKeys)`` (``scan_history``'s ``RunParquetHistory``: every row is live data, no
parquet file), and the resume fields (line counts, ``historyTail``, ``eventsTail``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from graphql import GraphQLError

from reconcile.emulator.nodes import Info, Resolvers, json_arg

HISTORY, EVENTS, OUTPUT = "history", "events", "output"
"""The streams of ``run_lines``: wandb-history.jsonl, wandb-events.jsonl and output.log."""

TAIL_LINES = 10
"""How many last lines ``historyTail``/``eventsTail`` return (W&B's number is unknown; the client reads
only the last one)."""


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "nil"
    return "map" if isinstance(value, dict) else "list"


def append_lines(
    conn: sqlite3.Connection, run_pk: int, stream: str, offset: int, lines: Sequence[str]
) -> None:
    """Write ``lines`` at ``offset`` (file_stream's position): later writes to a line replace it.

    History lines also update the run's ``historyLineCount`` and ``historyKeys`` (key types, last step).
    """
    rows = []
    parsed: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        step = None
        if stream == HISTORY:
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"history line {offset + i} is not JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise ValueError(f"history line {offset + i} is not a JSON object")
            parsed.append(row)
            step = row.get("_step") if isinstance(row.get("_step"), int) else offset + i
        rows.append((run_pk, stream, offset + i, step, line))
    conn.executemany(
        "INSERT OR REPLACE INTO run_lines (run_pk, stream, line, step, content) VALUES (?, ?, ?, ?, ?)", rows
    )
    if stream == HISTORY and parsed:
        _update_history_keys(conn, run_pk, parsed)


def _update_history_keys(conn: sqlite3.Connection, run_pk: int, rows: Iterable[dict[str, Any]]) -> None:
    current = conn.execute("SELECT history_keys FROM runs WHERE pk = ?", (run_pk,)).fetchone()
    keys_doc = json.loads(current["history_keys"]) if current and current["history_keys"] else {}
    keys: dict[str, Any] = keys_doc.get("keys", {})
    last_step = int(keys_doc.get("lastStep", -1))
    for row in rows:
        step = row.get("_step")
        if isinstance(step, int):
            last_step = max(last_step, step)
        for key, value in row.items():
            counts = keys.setdefault(key, {"typeCounts": []})["typeCounts"]
            kind = _json_type(value)
            for entry in counts:
                if entry["type"] == kind:
                    entry["count"] += 1
                    break
            else:
                counts.append({"type": kind, "count": 1})
    count = conn.execute(
        "SELECT COUNT(*) AS n FROM run_lines WHERE run_pk = ? AND stream = ?", (run_pk, HISTORY)
    ).fetchone()["n"]
    conn.execute(
        "UPDATE runs SET history_keys = ?, history_line_count = ? WHERE pk = ?",
        (json.dumps({"keys": keys, "lastStep": last_step}), count, run_pk),
    )


def line_count(conn_or_store: Any, run_pk: int, stream: str) -> int:
    """How many lines a stream holds (file_stream resumes appending at this offset)."""
    rows = conn_or_store.read(
        "SELECT COALESCE(MAX(line) + 1, 0) AS n FROM run_lines WHERE run_pk = ? AND stream = ?",
        (run_pk, stream),
    )
    return int(rows[0]["n"])


def _lines(info: Info, run_pk: int, stream: str, where: str = "1", params: Sequence[Any] = ()) -> list[str]:
    rows = info.context.store.read(
        f"SELECT content FROM run_lines WHERE run_pk = ? AND stream = ? AND ({where}) ORDER BY line",
        [run_pk, stream, *params],
    )
    return [row["content"] for row in rows]


def sample(items: Sequence[Any], samples: int | None) -> list[Any]:
    """At most ``samples`` items, evenly spaced, always keeping the first and the last.

    W&B samples large histories too; which rows it keeps is unknown (README).
    """
    if samples is None or samples <= 0 or len(items) <= samples:
        return list(items)
    if samples == 1:
        return [items[-1]]
    last = len(items) - 1
    return [items[round(i * last / (samples - 1))] for i in range(samples)]


# ---- resolvers -------------------------------------------------------------------------------------
def _history(
    run: dict[str, Any],
    info: Info,
    samples: int | None = None,
    minStep: int | None = None,
    maxStep: int | None = None,
) -> list[str]:
    """``history(samples, minStep, maxStep)``: JSON lines; ``maxStep`` is exclusive (see HistoryPage)."""
    where, params = ["1"], []
    if minStep is not None:
        where.append("step >= ?")
        params.append(minStep)
    if maxStep is not None:
        where.append("step < ?")
        params.append(maxStep)
    return sample(_lines(info, run["_pk"], HISTORY, " AND ".join(where), params), samples)


def _events(run: dict[str, Any], info: Info, samples: int | None = None) -> list[str]:
    return sample(_lines(info, run["_pk"], EVENTS), samples)


def _sampled_history(run: dict[str, Any], info: Info, specs: list[str]) -> list[list[dict[str, Any]]]:
    """One list of rows per spec ``{keys, samples, minStep?, maxStep? (inclusive)}``.

    A row is returned when it has every requested key, projected onto those keys (the documented
    behaviour of ``scan_history(keys=)``, which reads through this field).
    """
    rows = [json.loads(line) for line in _lines(info, run["_pk"], HISTORY)]
    result = []
    for raw in specs:
        spec = json_arg(raw, "specs")
        if not isinstance(spec, dict) or not isinstance(spec.get("keys"), list):
            raise GraphQLError("each sampledHistory spec needs a list of keys")
        keys = [str(k) for k in spec["keys"]]
        low, high = spec.get("minStep"), spec.get("maxStep")
        picked = [
            {k: row[k] for k in keys}
            for row in rows
            if all(k in row for k in keys)
            and (low is None or row.get("_step", 0) >= low)
            and (high is None or row.get("_step", 0) <= high)
        ]
        result.append(sample(picked, spec.get("samples")))
    return result


def _parquet_history(run: dict[str, Any], info: Info, liveKeys: list[str]) -> dict[str, Any]:
    """No parquet export: every row is live data, projected onto ``liveKeys`` (wandb-core reads ``_step``)."""
    rows = [json.loads(line) for line in _lines(info, run["_pk"], HISTORY)]
    return {"parquetUrls": [], "liveData": [{k: row[k] for k in liveKeys if k in row} for row in rows]}


def _count(stream: str) -> Any:
    def resolve(run: dict[str, Any], info: Info) -> int:
        return line_count(info.context.store, run["_pk"], stream)

    return resolve


def _tail(stream: str) -> Any:
    def resolve(run: dict[str, Any], info: Info) -> str:
        rows = info.context.store.read(
            "SELECT content FROM run_lines WHERE run_pk = ? AND stream = ? ORDER BY line DESC LIMIT ?",
            (run["_pk"], stream, TAIL_LINES),
        )
        return json.dumps([row["content"] for row in reversed(rows)])

    return resolve


RESOLVERS: Resolvers = {
    ("Run", "history"): _history,
    ("Run", "events"): _events,
    ("Run", "sampledHistory"): _sampled_history,
    ("Run", "parquetHistory"): _parquet_history,
    ("Run", "logLineCount"): _count(OUTPUT),
    ("Run", "eventsLineCount"): _count(EVENTS),
    ("Run", "historyTail"): _tail(HISTORY),
    ("Run", "eventsTail"): _tail(EVENTS),
}
