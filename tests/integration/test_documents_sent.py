"""Every GraphQL document that plan, apply (with backups) and undo send stays inside the installed
client's vocabulary: recorded on the wire, at the emulator, not taken from reconcile's own list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import graphql
import pytest

from reconcile.emulator import server as emulator_server
from reconcile.emulator.resolvers import Executor
from tests.integration.test_apply import EVERY_KIND, RUN_ONE, cli, write
from tests.unit.test_schema_subset import assert_default_shape, full_emulator_schema
from tests.wandb_vocabulary import client_documents, client_usage, codegen_input_types, outside, usage

pytestmark = pytest.mark.integration


def test_documents_sent_by_plan_apply_and_undo_use_only_the_clients_parts(
        emulator: Any, wandb_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    real = emulator_server.operation_name

    def recording(query: str) -> Any:
        sent.append(query)
        return real(query)

    monkeypatch.setattr(emulator_server, "operation_name", recording)
    emu = emulator(seed={"runs": [RUN_ONE]})
    wandb_env(emu.url)
    spec = write(tmp_path / "s.yaml", EVERY_KIND)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    applied = cli("apply", str(plan), "--backup-dir", str(tmp_path / "backup"))
    assert applied.exit_code == 0, applied.output
    undone = cli("apply", str(tmp_path / "plan.undo.json"))
    # A merging server keeps the config key the apply added: the undo says so (exit 1), the rest is undone.
    assert "2 files restored" in undone.stdout, undone.output
    schema = full_emulator_schema()
    names = set()
    for text in sent:
        document = graphql.parse(text)
        names |= {d.name.value for d in document.definitions  # type: ignore[attr-defined]
                  if getattr(d, "name", None)}
        assert graphql.validate(schema, document) == [], text
        assert outside(usage(document, schema), client_usage(schema)) == [], text
        assert_default_shape(document)
    # The reads with files inside the batched Runs query, the writes, the re-upload: all seen.
    assert {"Runs", "UpsertBucket", "deleteFiles", "CreateRunFiles"} <= names
    assert any("files(first:" in text for text in sent)


ARTIFACT_FIXTURE = {"runs": [{
    "entity": "acme", "project": "vision", "id": "train1", "state": "finished",
    "created_at": "2026-03-01T00:00:00Z",
    "artifacts": [{"name": "model-train1", "type": "model", "created_at": f"2026-03-01T0{i}:00:00Z",
                   "files": [{"name": "model.ckpt", "size": 1000 + i}]} for i in range(6)],
}]}

ARTIFACT_SPEC = """
version: 1
target: {entity: acme, project: vision}
rules:
  - name: prune
    match: {all: true}
    artifacts: {type: model, keep_last: 2, ttl: 365d}
"""


def test_documents_sent_for_artifact_versions_are_the_clients_own_with_inputs_it_uses(
        emulator: Any, wandb_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan and apply (with backups) of an artifacts rule that deletes versions and sets TTLs: every
    document is valid, inside the client's vocabulary, and either of the default shape or one of the
    client's own documents verbatim (its artifact documents alias their root field `result:`); every
    input object sent in the variables uses only input fields the client's generated models declare."""
    sent: list[tuple[str, dict[str, Any]]] = []
    real = Executor.run

    def recording(self: Executor, query: str, variables: dict[str, Any] | None, *args: Any,
                  **kwargs: Any) -> Any:
        sent.append((query, dict(variables or {})))
        return real(self, query, variables, *args, **kwargs)

    monkeypatch.setattr(Executor, "run", recording)
    emu = emulator(seed=ARTIFACT_FIXTURE)
    wandb_env(emu.url)
    spec = write(tmp_path / "s.yaml", ARTIFACT_SPEC)
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", str(spec), "-o", str(plan)).exit_code == 0
    applied = cli("apply", str(plan), "--backup-dir", str(tmp_path / "backup"))
    assert applied.exit_code == 0, applied.output
    assert "3 artifact versions deleted" in applied.output and "2 artifact version TTLs set" in applied.output

    schema = full_emulator_schema()  # with the artifact modules' SDL
    clients = {graphql.print_ast(definition)  # each of the client's definitions, as text
               for _, document in client_documents().parsed for definition in document.definitions}
    inputs = codegen_input_types()
    names = set()
    for text, variables in sent:
        document = graphql.parse(text)
        names |= {d.name.value for d in document.definitions  # type: ignore[attr-defined]
                  if getattr(d, "name", None)}
        assert graphql.validate(schema, document) == [], text
        assert outside(usage(document, schema), client_usage(schema)) == [], text
        own = all(graphql.print_ast(d) in clients for d in graphql.parse(text, no_location=True).definitions)
        if not own:  # a document of ours: no aliases, at most one mutation field
            assert_default_shape(document)
        for definition in document.definitions:
            for declared in getattr(definition, "variable_definitions", None) or ():
                type_name = graphql.get_named_type(
                    graphql.type_from_ast(schema, declared.type)).name  # type: ignore[arg-type]
                value = variables.get(declared.variable.name.value)
                if type_name in inputs and isinstance(value, dict):
                    assert set(value) <= inputs[type_name], (type_name, sorted(value))
    assert {"RunOutputArtifacts", "DeleteArtifact", "UpdateArtifact"} <= names
    updates = [v for t, v in sent if "UpdateArtifact" in t]
    assert [sorted(u["input"]) for u in updates] == [["artifactID", "ttlDurationSeconds"]] * 2
