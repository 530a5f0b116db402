"""Hostile input: specs built to break the loader (alias bombs, 10 MB strings, deep nesting, unicode
tricks, bad globs and templates) and runs built to break apply (file names with ``../``, NUL, very long
paths, metric names with dots and slashes, NaN/Infinity/huge ints), applied with hostile ``--backup-dir``
names. Nothing may crash (exit 3 or a traceback), and nothing outside ``--backup-dir`` and the
plan/journal/undo files may be written."""

# ruff: noqa: E501 - the hostile YAML literals below read best one spec line per source line
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.apply.backup import name_key
from reconcile.cli import main
from tests.reliability.conftest import record, snapshot
from tests.reliability.fleet import api

pytestmark = pytest.mark.integration

HEAD = "version: 1\ntarget: {entity: acme, project: h}\nrules:\n"
LEVELS = "".join(f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
SPECS: dict[str, str | bytes] = {
    "alias-bomb": HEAD.replace("rules:\n", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", '
                               '"lol"]\n' + LEVELS + "rules:\n")
    + "  - name: bomb\n    match: {all: true}\n    set: {config: {k: *i}}\n",
    "10mb-notes": HEAD + '  - name: big\n    match: {ids: [h2]}\n    set: {notes: "' + "x" * 10_000_000 + '"}\n',
    "10mb-rule-name": HEAD + "  - name: " + "n" * 10_000_000 + "\n    match: {all: true}\n    set: {notes: a}\n",
    "10mb-glob": HEAD + '  - name: g\n    match: {name: "' + "*a" * 5_000_000 + '", all: true}\n'
    "    set: {notes: a}\n",
    "deep-flow": HEAD + "  - name: d\n    match: {all: true}\n    set: {config: {k: " + "[" * 50_000 + "]" * 50_000
    + "}}\n",
    "deep-block": HEAD + "  - name: d\n    match: {all: true}\n    set:\n      config:\n"
    + "".join("  " * (i + 4) + f"k{i}:\n" for i in range(2000)) + "  " * 2004 + "v: 1\n",
    "deep-dotted-path": HEAD + "  - name: p\n    match: {all: true}\n    set:\n      config:\n        \""
    + ".".join(["k"] * 5000) + "\": 1\n    unset: {summary: [" + ".".join(["k"] * 5000) + "]}\n",
    "unicode-tricks": HEAD + '  - name: "r\u202eelu\u200b"\n    match: {name: "h\u200b*\u202e", tags: ["t\u0430g"],'
    ' all: true}\n    set: {tags: ["\u202egnp.exe", "zw\u200dj", "\u0430dmin"], name: "\u0430dmin\u202e"}\n'
    '    files: {delete: ["*\u202e.ckpt", "**/\u200b*", "\u0441kpt/*"]}\n',
    "homoglyph-ids": HEAD + '  - name: ids\n    match: {ids: ["h\u04311", "h\uff12", "h2\u200b"]}\n'
    "    set: {notes: homoglyph}\n",
    "glob-hell": HEAD + '  - name: g\n    match: {name: "[", all: true}\n    files: {delete: ["[", '
    '"**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/*", "{a,{b,{c,{d,{e}}}}}", "\\\\", "/etc/passwd", '
    '"../**", "*/../../*"]}\n',
    "templates": HEAD + '  - name: t\n    match: {all: true}\n    set: {name: "{config.__class__.__mro__}", '
    "notes: \"{id!r:{'x'*100000}}\", group: \"{0}\", job_type: \"{config[lr]}\"}\n",
    "templates-missing-key": HEAD + '  - name: t\n    match: {all: true}\n    set: {name: "{config.__class__}"}\n',
    "nan-inf-huge": HEAD + "  - name: n\n    match: {ids: [h2]}\n    set: {config: {a: .nan, b: .inf, c: 1e400, "
    "d: 123456789012345678901234567890123456789012345678901234567890}, "
    'summary: {"a.b": .nan, "x/y": -.inf}}\n',
    "metric-names": HEAD + '  - name: m\n    match: {ids: [h2]}\n    set: {summary: {"a/b": 2, "../x": 3, '
    '"x/./y": 4}}\n    unset: {summary: [["a.b"], "x.y.z", ["..", "y"]]}\n'
    '    rename: {summary: {"a/b": "c/../d", "nan": "a.b.c"}}\n',
    "python-tag": HEAD + '  - name: a\n    match: {all: true}\n    set: {notes: !!python/object/apply:os.system '
    '["touch PWNED"]}\n',
    "bad-utf8": b"version: 1\nrules:\n  - name: \xff\xfe\n",
    "nul-bytes": "version: 1\nrules:\n  - name: a\x00b\n",
    "empty": "",
    "not-a-mapping": "- 1\n- 2\n",
    "huge-version": "version: 99999999999999999999999999999999\nrules: []\n",
    "duplicate-keys": HEAD + "  - name: a\n    name: b\n    match: {all: true}\n    set: {notes: x}\n",
    "limits-hostile": HEAD.replace("rules:", "limits: {max_changed_runs: -1, max_file_deletions: 1e999}\nrules:")
    + "  - name: a\n    match: {all: true}\n    set: {notes: x}\n",
}

UNSAFE_FILES = ["../../escape.ckpt", "a/../../b.ckpt", "x" * 300 + ".ckpt", "deep/" * 900 + "f.ckpt",
                "nul\x00.ckpt", "/abs.ckpt", "back\\slash.ckpt", "..", "./dot.ckpt"]
SAFE_FILES = ["\u202eevil.ckpt", "sp ace.ckpt", "-rf.ckpt", "y" * 200 + ".ckpt", "deep/" * 40 + "f.ckpt",
              "zw\u200bj.ckpt", "new\nline.ckpt", "\u0441kpt/homoglyph.ckpt"]
RUNS = [
    {"entity": "acme", "project": "h", "id": "h1", "name": "n\u200bame\u202e", "state": "finished",
     "created_at": "2025-01-01T00:00:00Z", "tags": ["t"],
     "config": {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "big": 10**30,
                "a.b": {"c/d": 1}},
     "summary": {"a.b": 1, "a/b": 2, "x": {"y.z": 3}, "nan": float("nan"), "../up": 4},
     "files": [{"name": n, "size": 10} for n in UNSAFE_FILES]},
    {"entity": "acme", "project": "h", "id": "h2", "name": "h2", "state": "finished",
     "created_at": "2025-01-01T00:00:00Z", "tags": ["t"], "config": {"huge": -(10**40), "x": float("nan")},
     "summary": {"a.b": 1, "a/b": 2}, "files": [{"name": n, "size": 7} for n in SAFE_FILES]},
]
PRUNE = HEAD + """  - name: prune
    match: {all: true}
    set: {config: {audited: true}, summary: {"a/b": 3}}
    files: {delete: ["**", "*", "**/*"]}
"""
BACKUP_DIRS = ["b\u202eack\nup", "-rf", "\u200b", "sp ace/../back up", "z" * 200, "..backup", "back\\up"]


def cli(*args: str) -> Result:
    """The CLI in-process; an exception escaping it is itself a failure (catch_exceptions=False)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_handled(result: Result, what: str) -> None:
    """Exit 0, 1 or 2 and no traceback: the error handler, not a crash, dealt with it."""
    assert result.exit_code in (0, 1, 2), f"{what}: exit {result.exit_code}: {result.output[-2000:]}"
    assert "Traceback" not in result.output, what


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A working directory (cwd) and an empty TMPDIR where a crash log would land."""
    work, crash = tmp_path / "work", tmp_path / "tmpdir"
    work.mkdir()
    crash.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(crash))
    monkeypatch.setattr(tempfile, "tempdir", str(crash))
    return work, crash


def test_hostile_specs_validate_and_plan_without_crashing(emulator: Callable[..., Any], wandb_env: Any,
                                                          sandbox: tuple[Path, Path]) -> None:
    """Every hostile spec is validated, planned (-o) and, if a plan came out, shown, applied and planned
    again (no changes): exit 0/1/2, no traceback, no crash log, and only plan/journal/undo files appear."""
    work, crash = sandbox
    wandb_env(emulator(seed={"runs": RUNS}).url)
    specs = work / "specs"
    specs.mkdir()
    for name, text in SPECS.items():
        path = specs / f"{name}.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(work)
    tried = 0
    for name in SPECS:
        spec, plan = f"specs/{name}.yaml", f"{name}.plan.json"
        assert_handled(cli("validate", spec), f"validate {name}")
        planned = cli("plan", "-f", spec, "-o", plan, "--format", "json")
        assert_handled(planned, f"plan {name}")
        tried += 1
        if Path(plan).exists():
            assert_handled(cli("show", plan, "--format", "markdown"), f"show {name}")
            applied = cli("apply", plan, "--no-backup")
            assert_handled(applied, f"apply {name}")
            if applied.exit_code == 0:  # what was applied stays applied: planning again finds nothing
                again = cli("plan", "-f", spec, "--detailed-exitcode")
                assert again.exit_code == 0, f"{name}: {again.output[-2000:]}"
    assert not (work / "PWNED").exists()
    # A 10 MB glob is refused up front (it took wcmatch ~25 s to translate, at validate and again at plan).
    assert "a glob may have at most 1024" in cli("validate", "specs/10mb-glob.yaml").output
    assert_handled(cli("plan", "-f", "specs", "--detailed-exitcode"), "plan the whole directory")
    record(inputs=tried)
    new = set(snapshot(work)) - set(before)
    assert all(p.endswith((".plan.json", ".plan.journal.jsonl", ".plan.undo.json")) for p in new), sorted(new)
    assert not list(crash.glob("reconcile-crash-*")), "a crash log was written"


def test_hostile_runs_apply_with_hostile_backup_dirs_writes_only_inside_them(
        emulator: Callable[..., Any], wandb_env: Any, sandbox: tuple[Path, Path]) -> None:
    """Runs with escaping, NUL, over-long and trick file names and non-JSON-safe config/summary values:
    plan, apply with each hostile --backup-dir, undo, export and re-plan the export. Unsafe names are
    refused (the run is reported, exit 1), safe ones are backed up inside the directory given."""
    work, crash = sandbox
    Path("prune.yaml").write_text(PRUNE, encoding="utf-8")
    before = snapshot(work)
    allowed: set[str] = set()
    for number, backup in enumerate(BACKUP_DIRS):
        emu = emulator(seed={"runs": RUNS})  # a fresh copy each time, so every directory gets backups
        wandb_env(emu.url)
        plan = f"p{number}.json"
        assert_handled(cli("plan", "-f", "prune.yaml", "-o", plan), f"plan for --backup-dir {backup!r}")
        applied = cli("apply", plan, "--backup-dir", backup)
        assert_handled(applied, f"apply --backup-dir {backup!r}")
        assert applied.exit_code == 1
        assert "failed: acme/h/h1: refusing to back up" in applied.stderr
        allowed |= {plan, f"p{number}.journal.jsonl", f"p{number}.undo.json", os.path.normpath(backup)}
        live = {f.name for f in api(emu.url).run("acme/h/h2").files()}
        assert not live & set(SAFE_FILES), ("safe names are backed up, then deleted", applied.stderr[-3000:])
        [apply_dir] = (work / os.path.normpath(backup)).iterdir()  # DIR/<apply id>/files/...
        for name in SAFE_FILES:
            assert (apply_dir / "files/acme/h/h2" / name_key(name) / name).is_file(), (backup, name)
        record(inputs=1)
    number = len(BACKUP_DIRS) - 1
    assert_handled(cli("apply", f"p{number}.undo.json"), "apply the undo plan (re-uploads odd names)")
    allowed |= {f"p{number}.undo.journal.jsonl", f"p{number}.undo.undo.json"}
    restored = {f.name for f in api(emu.url).run("acme/h/h2").files()}
    assert set(SAFE_FILES) <= restored
    exported = cli("export", "acme/h", "-o", "export.yaml")
    assert_handled(exported, "export")
    again = cli("plan", "-f", "export.yaml", "--detailed-exitcode")
    assert again.exit_code == 0, again.output[-3000:]  # NaN, Infinity, dotted keys pin exactly
    allowed.add("export.yaml")
    new = set(snapshot(work)) - set(before)
    outside = {p for p in new if not any(p == a or p.startswith(a + "/") for a in allowed)}
    assert not outside, sorted(outside)
    assert not list(crash.glob("reconcile-crash-*")), "a crash log was written"
