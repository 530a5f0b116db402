"""reconcile as a user installs it: the sdist and the wheel built from it, the wheel installed into a
fresh venv outside the checkout, and every command run from a directory that is not the checkout
(nothing of the source tree on sys.path), against the emulator that wheel ships.

`make test` builds dist/ first and hands it over in RECONCILE_DIST; run alone, the test builds its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import reconcile
from tests.conftest import REPO, TEST_API_KEY
from tests.install.conftest import offline_pip, outside_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = REPO / "examples"
VERSION = reconcile.__version__


@dataclass
class Installed:
    """A venv with only the wheel (and its dependencies) in it, and a work directory beside it."""

    bin: Path
    work: Path
    env: dict[str, str]
    wheel: Path
    sdist: Path

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.work, env=env or self.env,
                              capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def installed(
    dist: Path, wheel: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Installed:
    """`python -m venv` + `pip install <the wheel>`, through constraints.txt, in a directory of its own."""
    (sdist,) = dist.glob("wandb_reconcile-*.tar.gz")
    root = tmp_path_factory.mktemp("user")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    home = root / "home"
    home.mkdir()
    env = outside_env(home, [venv / "bin"])
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
         str(wheel)],
        capture_output=True, text=True, env=offline_pip(env, wheelhouse), timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    work = root / "work"
    shutil.copytree(EXAMPLES, work / "examples")
    return Installed(venv / "bin", work, env, wheel, sdist)


def test_sdist_and_wheel_carry_the_schema_and_the_license(installed: Installed) -> None:
    """Both are named wandb-reconcile at this version; the wheel has the schema inside the package (one
    copy, the JSON from schemas/) and the license; the sdist has what building the wheel needs."""
    assert installed.wheel.name == f"wandb_reconcile-{VERSION}-py3-none-any.whl"
    assert installed.sdist.name == f"wandb_reconcile-{VERSION}.tar.gz"
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        schemas = [n for n in names if n.endswith(".schema.json")]
        assert schemas == ["reconcile/schemas/reconcile.schema.json"]
        assert wheel.read(schemas[0]) == (REPO / "schemas" / "reconcile.schema.json").read_bytes()
        assert f"wandb_reconcile-{VERSION}.dist-info/licenses/LICENSE" in names
        assert "reconcile/emulator/schema.graphql" in names
        assert not [n for n in names if n.startswith(("tests/", "schemas/", "examples/"))]
    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "LICENSE", "README.md", "schemas/reconcile.schema.json"} <= members


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    """From the work directory, `reconcile` imports from the venv's site-packages and nothing on sys.path
    is inside the checkout; the metadata says who we are."""
    probe = installed.run("python", "-c", (
        "import json, sys, reconcile\n"
        "from importlib import metadata, resources\n"
        "m = metadata.metadata('wandb-reconcile')\n"
        "print(json.dumps({'file': reconcile.__file__, 'path': sys.path,\n"
        "  'schema': str(resources.files('reconcile.schemas').joinpath('reconcile.schema.json')),\n"
        "  'license': m['License-Expression'], 'urls': m.get_all('Project-URL'), 'version': m['Version']}))"
    ))
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    site = installed.bin.parent / "lib"
    assert Path(found["file"]).is_relative_to(site), found["file"]
    assert Path(found["schema"]).is_relative_to(site), found["schema"]
    inside = [p for p in found["path"] if p and Path(p).resolve().is_relative_to(REPO.resolve())]
    assert inside == [], inside
    assert (found["license"], found["version"]) == ("MIT", VERSION)
    assert any(u.startswith("Repository, https://") for u in found["urls"])

    version = installed.run("reconcile", "--version")
    assert version.returncode == 0, version.stderr
    expected = rf"reconcile {re.escape(VERSION)} \(wandb 0\.31\.\d+\)\n"
    assert re.fullmatch(expected, version.stdout), version.stdout


def test_validate_every_example_file(installed: Installed) -> None:
    """Each example spec validates with the installed command: the single-file examples one by one, and
    each directory of files (GitOps, the demo) as the one spec it is."""
    examples = installed.work / "examples"
    specs = [*sorted(examples.glob("*.yaml")), examples / "gitops", examples / "demo" / "spec"]
    assert len(specs) >= 7
    for path in specs:
        result = installed.run("reconcile", "validate", str(path.relative_to(installed.work)))
        assert result.returncode == 0, (path, result.stdout, result.stderr)
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        assert result.stdout.count(": valid (") == len(files), result.stdout
    broken = installed.work / "typo.yaml"
    broken.write_text("version: 1\nrules:\n  - name: x\n    match: {all: true}\n    sett: {notes: hi}\n")
    failed = installed.run("reconcile", "validate", broken.name)
    assert failed.returncode == 1
    assert "typo.yaml:5:" in failed.stderr


@pytest.fixture
def emulator_url(installed: Installed) -> Iterator[str]:
    """The installed `reconcile emulator`, seeded with the demo fixture, on a free loopback port."""
    proc = subprocess.Popen(
        [str(installed.bin / "reconcile"), "emulator", "--port", "0", "--db", "emulator.sqlite", "--seed",
         "examples/demo/fixture.yaml"],
        cwd=installed.work, env=installed.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("serving http://127.0.0.1:"):
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the installed emulator did not start: {line}{err}")
        yield line.split(" ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_plan_show_apply_export_against_the_installed_emulator(
    installed: Installed, emulator_url: str
) -> None:
    """plan -> show -> apply -> plan (no changes) -> export -> validate, all from the wheel's install."""
    env = {**installed.env, "WANDB_BASE_URL": emulator_url, "WANDB_API_KEY": TEST_API_KEY,
           "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false"}
    spec = "examples/demo/spec"

    planned = installed.run("reconcile", "plan", "-f", spec, "-o", "plan.json", "--detailed-exitcode",
                            env=env)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert re.search(r"Plan: \d+ runs? to change", planned.stdout), planned.stdout

    shown = installed.run("reconcile", "show", "plan.json", "--format", "markdown", env=env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"Plan: \d+ runs? to change", shown.stdout), shown.stdout

    applied = installed.run("reconcile", "apply", "plan.json", "--backup-dir", "backups", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete:" in applied.stdout

    again = installed.run("reconcile", "plan", "-f", spec, "--detailed-exitcode", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout

    exported = installed.run("reconcile", "export", "acme/vision", "-o", "vision.yaml", env=env)
    assert exported.returncode == 0, exported.stderr
    checked = installed.run("reconcile", "validate", "vision.yaml", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
