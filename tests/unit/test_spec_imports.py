"""`imports:` in the spec: the models it builds, and every mistake a user can make in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli import main
from reconcile.models import MlflowSource, Target, WandbSource
from reconcile.spec import load_spec, validate_paths

TWO_IMPORTS = """\
version: 1
target: {entity: acme, project: vision}
imports:
  - name: churn-from-mlflow
    from:
      mlflow:
        tracking_uri: http://127.0.0.1:5000
        experiments: [churn, churn-v2]
        filter: "metrics.auc > 0.8"
    target: {project: churn}
  - name: vision-from-cloud
    from:
      wandb:
        base_url: https://api.wandb.ai/
        api_key_env: SOURCE_WANDB_API_KEY
        entity: acme
        project: vision
        filters: {state: finished}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def issues(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    return [(i.line, i.column, i.path, i.message) for i in validate_paths([write(tmp_path / "s.yaml", text)])]


def test_imports_build_sources_and_destinations_over_the_spec_target(tmp_path: Path) -> None:
    spec = load_spec([write(tmp_path / "s.yaml", TWO_IMPORTS)])
    assert spec.rules == ()
    first, second = spec.imports
    assert first.name == "churn-from-mlflow"
    assert (first.location.line, first.location.column) == (4, 5)
    assert first.source == MlflowSource(
        experiments=("churn", "churn-v2"), tracking_uri="http://127.0.0.1:5000", filter="metrics.auc > 0.8"
    )
    assert first.target == Target("acme", "churn")
    assert second.source == WandbSource(
        base_url="https://api.wandb.ai",
        api_key_env="SOURCE_WANDB_API_KEY",
        entity="acme",
        project="vision",
        filters={"state": "finished"},
    )
    assert second.target == Target("acme", "vision")


def test_tracking_uri_is_optional_and_falls_back_later(tmp_path: Path) -> None:
    text = "version: 1\nimports:\n  - name: m\n    from: {mlflow: {experiments: [e]}}\n"
    (entry,) = load_spec([write(tmp_path / "s.yaml", text)]).imports
    assert entry.source == MlflowSource(experiments=("e",))
    assert entry.target == Target()


def test_import_and_rule_names_are_unique_across_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "version: 1\nrules:\n  - name: shared\n    match: {all: true}\n"
              "    add_tags: [x]\n")
    b = write(tmp_path / "b.yaml", "version: 1\nimports:\n  - name: shared\n"
              "    from: {mlflow: {experiments: [e]}}\n")
    (issue,) = validate_paths([a, b])
    assert (issue.file, issue.line, issue.column, issue.path) == (str(b), 3, 11, "imports[0].name")
    assert issue.message.startswith(f"duplicate import name 'shared': also at {a}:3:11;")


BAD = {
    "both-sources": (
        "    from:\n      mlflow: {experiments: [e]}\n      wandb: {base_url: http://h, api_key_env: K, "
        "entity: e, project: p}\n",
        [(5, 7, "imports[0].from", "give exactly one source: `mlflow` or `wandb`")],
    ),
    "no-source": (
        "    from: {}\n",
        [(4, 11, "imports[0].from", "give exactly one source: `mlflow` or `wandb`")],
    ),
    "unknown-source": (
        "    from: {mlfow: {experiments: [e]}}\n",
        [
            (4, 12, "imports[0].from.mlfow", "unknown key 'mlfow'; did you mean 'mlflow'?"),
        ],
    ),
    "no-experiments": (
        "    from: {mlflow: {tracking_uri: http://h}}\n",
        [(4, 20, "imports[0].from.mlflow", "missing required key 'experiments'")],
    ),
    "key-in-the-variable": (
        "    from: {wandb: {base_url: http://h, api_key_env: " + "ab12" * 10 + ", entity: e, project: p}}\n",
        [(4, 53, "imports[0].from.wandb.api_key_env",
          "looks like an API key, not the name of a variable; put the key in an environment variable and "
          "name that variable here")],
    ),
    "local-key-in-the-variable": (
        "    from: {wandb: {base_url: http://h, api_key_env: local-"
        + "ab12" * 10
        + ", entity: e, project: p}}\n",
        [(4, 53, "imports[0].from.wandb.api_key_env",
          "must be the name of an environment variable (letters, digits and _), never the key itself")],
    ),
    "credentials-in-the-url": (
        "    from: {wandb: {base_url: 'https://api:secret@h', api_key_env: K, entity: e, project: p}}\n",
        [(4, 30, "imports[0].from.wandb.base_url",
          "must not carry credentials; name the variable holding the API key in api_key_env")],
    ),
    "not-a-url": (
        "    from: {wandb: {base_url: api.wandb.ai, api_key_env: K, entity: e, project: p}}\n",
        [(4, 30, "imports[0].from.wandb.base_url", "must be an http:// or https:// URL")],
    ),
    "no-name": ("    target: {project: p}\n", None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_import_mistakes_are_named_with_file_line_and_field(tmp_path: Path, case: str) -> None:
    body, expected = BAD[case]
    head = "version: 1\nimports:\n" + ("  - name: i\n" if case != "no-name" else "  - from: {}\n")
    found = issues(tmp_path, head + body)
    if expected is None:
        assert ("imports[0]", "missing required key 'name'") in [(i[2], i[3]) for i in found]
        return
    assert found == expected
    assert "ab12ab12" not in repr(found)


def test_an_api_key_given_as_the_variable_is_never_repeated(tmp_path: Path) -> None:
    key = "ab12" * 10
    found = validate_paths([write(tmp_path / "s.yaml", "version: 1\nimports:\n  - name: i\n    from: {wandb: "
                                  f"{{base_url: http://h, api_key_env: {key}, entity: e, project: p}}}}\n")])
    assert found, "expected an issue"
    assert key not in repr(found)


def test_validate_counts_imports_per_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", TWO_IMPORTS)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid (0 rules, 2 imports)" in result.output

