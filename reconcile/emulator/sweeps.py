"""Sweeps: ``wandb.sweep(config)`` creates one, ``wandb.agent`` asks it for runs, the public API reads it.

W&B runs the sweep's controller on its servers: an agent registers (``createAgent``) and heartbeats
(``agentHeartbeat``); each answer may carry a command ``{"type": "run", "run_id", "args"}`` that the agent
turns into a ``wandb.init`` with those parameters (the run's UpsertBucket names the sweep). This module is
that controller for the ``grid`` and ``random`` methods (``bayes`` is sampled at random: W&B's Bayesian
search is not reproduced). The sweep's runs are the runs whose ``sweep`` is its name.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import random
import secrets
import string
from typing import Any

import yaml
from graphql import GraphQLError

from reconcile.emulator.nodes import Info, Resolvers, json_arg, project_node
from reconcile.emulator.store import Store, StoreError, utc_now

METHODS = ("grid", "random", "bayes")
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id() -> str:
    """An 8-character id like W&B's sweep and run ids."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _sweep_storage_id(pk: int) -> str:
    return base64.b64encode(f"Sweep:{pk}".encode()).decode()


def _agent_id(pk: int) -> str:
    return base64.b64encode(f"Agent:{pk}".encode()).decode()


def _decode(value: str, kind: str) -> int:
    try:
        prefix, _, number = base64.b64decode(value, validate=True).decode().partition(":")
        if prefix != kind:
            raise ValueError(prefix)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GraphQLError(f"invalid {kind.lower()} id {value!r}") from exc


# ---- the sweep configuration ----------------------------------------------------------------------
def parse_config(text: str) -> dict[str, Any]:
    """The YAML (or JSON) the client sends, checked enough to run it: method and parameters."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GraphQLError(f"sweep config is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise GraphQLError("sweep config must be a mapping")
    if config.get("method") not in METHODS:
        raise GraphQLError(f"sweep config: method must be one of {', '.join(METHODS)}")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise GraphQLError("sweep config: parameters must be a non-empty mapping")
    for name, spec in parameters.items():
        if not isinstance(spec, dict) or not ({"value", "values", "min", "distribution"} & set(spec)):
            raise GraphQLError(f"sweep config: parameter {name!r} needs value, values or min/max")
        if config["method"] == "grid" and not ({"value", "values"} & set(spec)):
            raise GraphQLError(f"sweep config: grid search needs value or values for parameter {name!r}")
    return config


def _sample(spec: dict[str, Any], rng: random.Random) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(list(spec["values"]))
    low: Any = spec.get("min")
    high: Any = spec.get("max")
    distribution = spec.get("distribution") or (
        "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    )
    if distribution == "int_uniform":
        return rng.randint(int(low), int(high))
    if distribution == "uniform":
        return rng.uniform(float(low), float(high))
    if distribution == "log_uniform_values":
        return math.exp(rng.uniform(math.log(float(low)), math.log(float(high))))
    if distribution == "normal":
        return rng.gauss(float(spec.get("mu", 0)), float(spec.get("sigma", 1)))
    raise GraphQLError(f"sweep parameter distribution {distribution!r} is not supported by the emulator")


def parameters_for(config: dict[str, Any], index: int, seed: str) -> dict[str, Any] | None:
    """The parameters of the sweep's ``index``-th run, or None when a grid is exhausted.

    Grid: the Cartesian product of the parameters' values, parameters in name order (W&B's order is
    unknown). Random and bayes: independent draws, reproducible from the sweep name and index.
    """
    parameters: dict[str, dict[str, Any]] = config["parameters"]
    names = sorted(parameters)
    if config["method"] == "grid":
        axes = [
            [parameters[n]["value"]] if "value" in parameters[n] else list(parameters[n]["values"])
            for n in names
        ]
        grid = itertools.islice(itertools.product(*axes), index, index + 1)
        point = next(grid, None)
        return None if point is None else dict(zip(names, point, strict=True))
    rng = random.Random(f"{seed}:{index}")
    return {n: _sample(parameters[n], rng) for n in names}


# ---- storage --------------------------------------------------------------------------------------
def _sweep_node(row: Any, store: Store) -> dict[str, Any]:
    config = yaml.safe_load(row["config"])
    run_count = store.read(
        "SELECT COUNT(*) AS n FROM runs WHERE project_id = ? AND sweep_name = ?",
        (row["project_id"], row["name"]),
    )[0]["n"]
    return {
        "id": _sweep_storage_id(row["pk"]),
        "name": row["name"],
        "displayName": row["display_name"],
        "method": config.get("method", "grid"),
        "state": row["state"],
        "description": row["description"],
        "bestLoss": None,
        "config": row["config"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "runCount": int(run_count),
        "runCountExpected": config.get("run_cap"),
        "_project_pk": row["project_id"],
    }


def _project_sweep(project: dict[str, Any], info: Info, sweepName: str) -> dict[str, Any] | None:
    rows = info.context.store.read(
        "SELECT * FROM sweeps WHERE project_id = ? AND name = ?", (project["_pk"], sweepName)
    )
    return _sweep_node(rows[0], info.context.store) if rows else None


def _sweep_project(sweep: dict[str, Any], info: Info) -> dict[str, Any] | None:
    rows = info.context.store.read(
        "SELECT id, entity, name FROM projects WHERE id = ?", (sweep["_project_pk"],)
    )
    return project_node(rows[0]) if rows else None


def _upsert_sweep(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    """Create a sweep (no ``id``) or change an existing one's state, description or display name."""
    store = info.context.store
    now = utc_now()
    if input.get("id"):
        pk = _decode(input["id"], "Sweep")
        changes = {k: input[k] for k in ("state", "description", "displayName") if input.get(k) is not None}
        with store.transaction() as conn:
            row = conn.execute("SELECT * FROM sweeps WHERE pk = ?", (pk,)).fetchone()
            if row is None:
                raise GraphQLError(f"sweep {input['id']!r} not found")
            columns = {"state": "state", "description": "description", "displayName": "display_name"}
            for key, value in changes.items():
                conn.execute(
                    f"UPDATE sweeps SET {columns[key]} = ?, updated_at = ? WHERE pk = ?", (value, now, pk)
                )
            store.log_write("UpsertSweep", None, {"sweep": row["name"], **changes})
            row = conn.execute("SELECT * FROM sweeps WHERE pk = ?", (pk,)).fetchone()
        return {"sweep": _sweep_node(row, store), "configValidationWarnings": []}
    text = input.get("config")
    if not text:
        raise GraphQLError("upsertSweep needs a config to create a sweep")
    parse_config(text)
    entity = input.get("entityName") or store.viewer()["entity"]
    project = input.get("projectName") or "uncategorized"
    name = new_id()
    try:
        project_id = store.ensure_project(entity, project)
    except StoreError as exc:
        raise GraphQLError(str(exc)) from exc
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO sweeps (project_id, name, display_name, config, state, description, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                project_id,
                name,
                input.get("displayName"),
                text,
                input.get("state") or "RUNNING",
                input.get("description"),
                now,
                now,
            ),
        )
        if input.get("priorRunsFilters"):
            _attach_prior_runs(
                conn, project_id, name, json_arg(input["priorRunsFilters"], "priorRunsFilters")
            )
        store.log_write("UpsertSweep", f"{entity}/{project}", {"sweep": name, "config": text})
        row = conn.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
    return {"sweep": _sweep_node(row, store), "configValidationWarnings": []}


def _attach_prior_runs(conn: Any, project_id: int, sweep: str, filters: Any) -> None:
    """``wandb.sweep(prior_runs=[...])`` sends ``{"$or": [{"name": id}, ...]}``: those runs join the sweep."""
    names = [clause.get("name") for clause in (filters or {}).get("$or", []) if isinstance(clause, dict)]
    for name in names:
        if isinstance(name, str):
            conn.execute(
                "UPDATE runs SET sweep_name = ? WHERE project_id = ? AND name = ?", (sweep, project_id, name)
            )


def _create_agent(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    store = info.context.store
    entity = input.get("entityName") or store.viewer()["entity"]
    project = input.get("projectName") or "uncategorized"
    now = utc_now()
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT s.pk FROM sweeps s JOIN projects p ON p.id = s.project_id "
            "WHERE s.name = ? AND p.entity = ? AND p.name = ?",
            (input["sweep"], entity, project),
        ).fetchone()
        if row is None:
            raise GraphQLError(f"sweep {entity}/{project}/{input['sweep']} not found")
        cursor = conn.execute(
            "INSERT INTO sweep_agents (sweep_pk, host, created_at, heartbeat_at) VALUES (?, ?, ?, ?)",
            (row["pk"], input["host"], now, now),
        )
        store.log_write(
            "CreateAgent", f"{entity}/{project}", {"sweep": input["sweep"], "host": input["host"]}
        )
    return {"agent": {"id": _agent_id(int(cursor.lastrowid or 0))}}


def _agent_heartbeat(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    """Hand the agent its next run when none of its runs is alive; ``exit`` when the sweep is done."""
    store = info.context.store
    agent_pk = _decode(input["id"], "Agent")
    alive = json_arg(input.get("runState"), "runState") or {}
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT s.* FROM sweep_agents a JOIN sweeps s ON s.pk = a.sweep_pk WHERE a.pk = ?", (agent_pk,)
        ).fetchone()
        if row is None:
            raise GraphQLError(f"agent {input['id']!r} not found")
        conn.execute("UPDATE sweep_agents SET heartbeat_at = ? WHERE pk = ?", (utc_now(), agent_pk))
        if row["state"] in ("FINISHED", "CANCELED"):
            return {"agent": {"id": input["id"]}, "commands": json.dumps([{"type": "exit"}])}
        if row["state"] == "PAUSED" or any(alive.values()):
            return {"agent": {"id": input["id"]}, "commands": "[]"}
        config = yaml.safe_load(row["config"])
        index = int(row["scheduled"])
        cap = config.get("run_cap")
        params = None if cap is not None and index >= int(cap) else parameters_for(config, index, row["name"])
        if params is None:
            conn.execute(
                "UPDATE sweeps SET state = 'FINISHED', updated_at = ? WHERE pk = ?", (utc_now(), row["pk"])
            )
            return {"agent": {"id": input["id"]}, "commands": json.dumps([{"type": "exit"}])}
        run_id = new_id()
        conn.execute("UPDATE sweeps SET scheduled = scheduled + 1 WHERE pk = ?", (row["pk"],))
        store.log_write("agentHeartbeat", None, {"sweep": row["name"], "run": run_id, "args": params})
    command = {
        "type": "run",
        "run_id": run_id,
        "program": config.get("program"),
        "args": {name: {"value": value} for name, value in params.items()},
    }
    return {"agent": {"id": input["id"]}, "commands": json.dumps([command])}


RESOLVERS: Resolvers = {
    ("Project", "sweep"): _project_sweep,
    ("Sweep", "project"): _sweep_project,
    ("Mutation", "upsertSweep"): _upsert_sweep,
    ("Mutation", "createAgent"): _create_agent,
    ("Mutation", "agentHeartbeat"): _agent_heartbeat,
}
