"""Every GraphQL document that plan, apply (with backups) and undo send stays inside the installed
client's vocabulary: recorded on the wire, at the emulator, not taken from reconcile's own list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import graphql
import pytest

from reconcile.emulator import server as emulator_server
from tests.integration.test_apply import EVERY_KIND, RUN_ONE, cli, write
from tests.unit.test_schema_subset import assert_default_shape, full_emulator_schema
from tests.wandb_vocabulary import client_usage, outside, usage

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
