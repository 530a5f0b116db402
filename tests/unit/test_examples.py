"""The shipped examples: each validates, carries the schema modeline and a header, and a typo'd
key anywhere in it fails with that key's line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from reconcile.models import ConfigWrites
from reconcile.spec import load_spec, schema, validate_paths
from tests.conftest import REPO

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
SPECS = sorted(EXAMPLES.glob("*.yaml"))
GITOPS = EXAMPLES / "gitops"
ALL_FILES = SPECS + sorted(GITOPS.glob("*.yaml"))


def schema_keys() -> set[str]:
    """Every property name the schema defines (the keys a typo can hit)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema())
    return found


def test_examples_cover_the_documented_use_cases() -> None:
    """The six documented examples exist, plus a GitOps directory of several files."""
    names = {p.name for p in SPECS}
    assert {
        "backfill-config.yaml",
        "rename-metric.yaml",
        "tag-hygiene.yaml",
        "checkpoint-retention.yaml",
        "best-of-sweep.yaml",
    } <= names
    assert len(list(GITOPS.glob("*.yaml"))) >= 3


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_examples_carry_the_modeline_and_a_header(path: Path) -> None:
    """The first line points editors at the schema; a comment header says what the spec is for."""
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = Path("..") / ".." if path.parent == GITOPS else Path("..")
    assert (
        lines[0]
        == f"# yaml-language-server: $schema={(relative / 'schemas' / 'reconcile.schema.json').as_posix()}"
    )
    assert (path.parent / lines[0].split("=", 1)[1]).resolve() == REPO / "schemas" / "reconcile.schema.json"
    header = [line for line in lines[1:] if line.startswith("#")]
    assert len(" ".join(header)) > 60


@pytest.mark.parametrize("path", [*SPECS, GITOPS], ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    """Each example (and the GitOps directory as one merged spec) loads with no issue."""
    assert validate_paths([path]) == []
    spec = load_spec([path])
    assert spec.rules or spec.imports
    # Config removal cannot be promised on W&B cloud (wandb/wandb#11055): only with `replace`.
    for rule in spec.rules:
        if rule.unset_config or rule.rename_config:
            assert rule.target.config_writes is ConfigWrites.REPLACE, rule.name


KEY_LINE = re.compile(r"^(?P<indent>\s*(?:-\s+)?)(?P<key>[a-z_]+):")


def typo_cases() -> list[tuple[Path, int, str]]:
    keys = schema_keys()
    cases = []
    for path in ALL_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = KEY_LINE.match(line)
            if match and match["key"] in keys:
                cases.append((path, number, match["key"]))
    return cases


@pytest.mark.parametrize(
    ("path", "line", "key"),
    typo_cases(),
    ids=lambda v: str(v.relative_to(EXAMPLES)) if isinstance(v, Path) else str(v),
)
def test_examples_typo_in_any_key_fails_on_its_line(tmp_path: Path, path: Path, line: int, key: str) -> None:
    """Misspelling any schema key of an example is reported as an unknown key on that very line."""
    copy_dir = tmp_path / path.parent.name
    if path.parent == GITOPS:
        shutil.copytree(GITOPS, copy_dir)  # the typo must also surface when the directory is merged
    else:
        copy_dir.mkdir()
        shutil.copy(path, copy_dir)
    target = copy_dir / path.name
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace(f"{key}:", f"{key}x:", 1)
    target.write_text("".join(lines), encoding="utf-8")
    found = validate_paths([copy_dir] if path.parent == GITOPS else [target])
    unknown = [i for i in found if i.message.startswith(f"unknown key '{key}x'")]
    assert len(unknown) == 1, found
    assert (unknown[0].file, unknown[0].line) == (str(target), line)
