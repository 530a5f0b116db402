"""The README stays true: its spec example validates and the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from reconcile.cli import main
from reconcile.spec import validate_paths
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_readme_spec_example_is_valid(tmp_path: Path) -> None:
    """Every ```yaml block in the README is a valid spec."""
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    assert blocks
    for index, block in enumerate(blocks):
        path = tmp_path / f"readme-{index}.yaml"
        path.write_text(block)
        assert validate_paths([path]) == [], block


def test_readme_commands_exist_with_their_flags() -> None:
    """Each `reconcile <command> --flag` the README's command table names is accepted by --help."""
    rows = re.findall(r"^\| `reconcile (\w+)([^`]*)`", README, flags=re.M)
    assert {name for name, _ in rows} >= {"validate", "plan", "apply", "show", "export", "emulator"}
    for name, rest in rows:
        help_text = CliRunner().invoke(main, [name, "--help"]).output
        for flag in re.findall(r"--[a-z-]+", rest):
            assert flag in help_text, f"README names `reconcile {name} {flag}` but --help does not"
