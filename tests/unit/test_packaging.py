"""The package as users install it: one name of our own, one version, the schema inside the package
(read from the one file in schemas/), honest metadata, and install lines that pin that release."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata, resources

import tomllib
from click.testing import CliRunner

import reconcile
from reconcile.cli import main
from reconcile.spec import SCHEMA_FILE, SCHEMA_PACKAGE
from tests.conftest import REPO

DIST = "wandb-reconcile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_defined_once_and_installed_metadata_agrees() -> None:
    """pyproject takes the version from reconcile.__version__; the installed metadata carries it."""
    assert "version" not in PYPROJECT["project"]
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "reconcile.__version__"}
    assert metadata.version(DIST) == reconcile.__version__


def test_version_flag_names_reconcile_and_the_wandb_client() -> None:
    """`reconcile --version` says which release this is and which wandb client it runs on."""
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"reconcile {reconcile.__version__} (wandb {metadata.version('wandb')})\n"


def test_distribution_has_a_name_of_its_own_and_keeps_the_command() -> None:
    """The distribution is wandb-reconcile; the import package and the console script stay reconcile."""
    assert PYPROJECT["project"]["name"] == DIST
    assert PYPROJECT["project"]["scripts"] == {"reconcile": "reconcile.cli:main"}
    scripts = metadata.distribution(DIST).entry_points.select(group="console_scripts")
    assert {(e.name, e.value) for e in scripts} == {("reconcile", "reconcile.cli:main")}


def test_metadata_has_license_and_project_urls() -> None:
    """`pip show` and the package index show the license and where the project lives."""
    meta = metadata.metadata(DIST)
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File", [])
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert {"Homepage", "Repository", "Issues"} <= set(urls)
    assert all(u.startswith("https://github.com/reconcile/reconcile") for u in urls.values())


def test_every_package_under_reconcile_ships() -> None:
    """pyproject names the packages one by one (schemas/ maps into reconcile.schemas, which automatic
    discovery cannot do): a new sub-package that is not listed would be missing from the wheel."""
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "reconcile").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert found | {"reconcile.schemas"} == listed, "add the new package to [tool.setuptools] packages"


def test_schema_is_read_from_the_one_file_in_schemas() -> None:
    """reconcile reads the schema through importlib.resources, and (installed editable, as here) that is
    schemas/reconcile.schema.json itself: the repository holds no second copy to drift."""
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {SCHEMA_PACKAGE: "schemas"}
    shipped = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE)
    with resources.as_file(shipped) as path:
        assert path.resolve() == (REPO / "schemas" / SCHEMA_FILE).resolve()
    tracked = subprocess.run(["git", "ls-files", "*.json"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert [name for name in tracked if name.endswith(".schema.json")] == [f"schemas/{SCHEMA_FILE}"]


def test_install_lines_pin_this_release() -> None:
    """The workflow, the README and the pre-commit example install wandb-reconcile at this version
    (the bare name `reconcile` on the index is someone else's project)."""
    version = reconcile.__version__
    workflow = (REPO / "examples" / "github" / "reconcile.yml").read_text(encoding="utf-8")
    installs = re.findall(r"pip install (.*)", workflow)
    assert installs
    pinned = re.compile(rf'"?wandb-reconcile=={re.escape(version)}"?(\s|$)')
    assert all(pinned.match(line) for line in installs), installs
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    readme_installs = re.findall(r"pip install (\S+)", readme)
    assert f"wandb-reconcile=={version}" in readme_installs
    assert "reconcile" not in readme_installs
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    assert f"rev: v{version}\n" in hooks
