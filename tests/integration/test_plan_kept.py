"""`plan --show-kept` and the no-match warning against a seeded emulator with the real wandb client:
each surviving retention candidate and why, in text, markdown and (always) JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_plan import invoke

pytestmark = pytest.mark.integration

MB = 1_000_000


def _file(name: str, day: int, size: int = 20 * MB) -> dict[str, Any]:
    return {"name": name, "size": size, "updated_at": f"2026-09-{day:02d}T10:00:00Z"}


FIXTURE = {
    "runs": [
        {
            "entity": "acme",
            "project": "vision",
            "id": "r1",
            "name": "first",
            "state": "finished",
            "created_at": "2026-09-01T00:00:00Z",
            "config": {},
            "summary": {"acc": 0.5},
            "tags": [],
            "files": [_file(f"ckpt/step-{i}.pt", i) for i in range(1, 6)]
            + [_file("ckpt/best.pt", 2), _file("output.log", 1)],
        },
        {
            "entity": "acme",
            "project": "vision",
            "id": "r2",
            "name": "second",
            "state": "finished",
            "created_at": "2026-09-01T00:00:00Z",
            "config": {},
            "summary": {"acc": 0.9},
            "tags": [],
            "files": [_file("ckpt/step-1.pt", 3), _file("ckpt/step-2.pt", 4)],
        },
    ]
}

SPEC = """\
version: 1
target: {entity: acme, project: vision}
rules:
  - name: prune-checkpoints
    match: {all: true}
    files:
      delete: ["ckpt/**", "output.log"]
      keep: ["ckpt/best.pt"]
      keep_last: 2
  - name: typo
    match: {all: true}
    files:
      delete: ["*.ckpnt"]
"""


@pytest.fixture
def spec(emulator: Any, wandb_env: Any, tmp_path: Path) -> Path:
    """The spec above, against an emulator seeded with FIXTURE."""
    wandb_env(emulator(seed=FIXTURE).url)
    path = tmp_path / "retention.yaml"
    path.write_text(SPEC)
    return path


def test_show_kept_text_lists_survivors_and_reasons(spec: Path) -> None:
    """Text: the deletions, then per run each kept candidate with its rule and reason, and the warning."""
    result = invoke("plan", "-f", str(spec), "--show-kept", "--no-color")
    assert result.exit_code == 0, result.output
    out = result.output
    assert '- file "ckpt/step-1.pt"' in out and '- file "ckpt/step-3.pt"' in out
    kept = out[out.index("Kept by the retention rules") :]
    r1 = kept[kept.index("# acme/vision/r1") : kept.index("# acme/vision/r2")]
    assert '= file "ckpt/best.pt" (20 MB' not in r1  # sizes are binary units
    assert '= file "ckpt/best.pt" (19.07 MiB' in r1
    assert 'prune-checkpoints: keep "ckpt/best.pt"' in r1
    assert '= file "ckpt/step-5.pt"' in r1 and "prune-checkpoints: keep_last 1 of 2" in r1
    assert "prune-checkpoints: keep_last 2 of 2" in r1
    assert "prune-checkpoints: system_file" in r1
    assert "step-3.pt" not in r1  # deleted, not kept
    r2 = kept[kept.index("# acme/vision/r2") :]
    assert '= file "ckpt/step-1.pt"' in r2 and '= file "ckpt/step-2.pt"' in r2
    assert (
        "Warning: rule 'typo': files.delete globs ['*.ckpnt'] match no file of any of the 2 runs it matches"
    ) in out
    assert out.rstrip().splitlines()[-1].startswith("Plan: 1 run to change")


def test_without_show_kept_text_has_no_kept_section_but_the_warning(spec: Path) -> None:
    """The kept list is opt-in for text; the warning is not."""
    result = invoke("plan", "-f", str(spec), "--no-color")
    assert "Kept by the retention rules" not in result.output
    assert "Warning: rule 'typo'" in result.output


def test_show_kept_markdown(spec: Path) -> None:
    """Markdown: a collapsed table per run with the file, its size and age, and why it survives."""
    result = invoke("plan", "-f", str(spec), "--show-kept", "--format", "markdown")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "### Kept by the retention rules" in out
    assert (
        "<details><summary>acme/vision/r2 &quot;second&quot; (2 kept)</summary>" in out
        or '<details><summary>acme/vision/r2 "second" (2 kept)</summary>' in out
    )
    assert '| = file "ckpt/best.pt" | 19.07 MiB' in out
    assert 'prune-checkpoints: keep "ckpt/best.pt"' in out.replace("\\", "")
    assert "**Warnings:**" in out and "typo" in out


def test_json_plan_always_has_kept_and_warnings(spec: Path, tmp_path: Path) -> None:
    """JSON (and the -o file) carry the kept candidates per run without --show-kept, and apply's
    reading of the saved plan round-trips them."""
    out = tmp_path / "plan.json"
    result = invoke("plan", "-f", str(spec), "-o", str(out), "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    runs = {r["path"]: r for r in plan["runs"]}
    assert set(runs) == {"acme/vision/r1", "acme/vision/r2"}
    assert runs["acme/vision/r2"]["changes"] == []  # listed for its kept files only
    kept = {k["name"]: k["reasons"] for k in runs["acme/vision/r2"]["kept"]}
    assert kept == {
        "ckpt/step-1.pt": [{"rule": "prune-checkpoints", "selector": "keep_last", "detail": "2 of 2"}],
        "ckpt/step-2.pt": [{"rule": "prune-checkpoints", "selector": "keep_last", "detail": "1 of 2"}],
    }
    r1_kept = {k["name"] for k in runs["acme/vision/r1"]["kept"]}
    assert r1_kept == {"ckpt/best.pt", "ckpt/step-4.pt", "ckpt/step-5.pt", "output.log"}
    assert plan["warnings"] == [
        "rule 'typo': files.delete globs ['*.ckpnt'] match no file of any of the 2 runs it matches"
    ]
    shown = invoke("show", str(out), "--show-kept", "--no-color")
    assert shown.exit_code == 0
    assert "prune-checkpoints: keep_last 2 of 2" in shown.output


CALENDAR_FIXTURE = {
    "runs": [
        {
            "entity": "acme",
            "project": "vision",
            "id": "c1",
            "name": "cal",
            "state": "finished",
            "created_at": "2026-09-01T00:00:00Z",
            "config": {},
            "summary": {},
            "tags": [],
            "files": [
                {"name": f"checkpoints/step-{step}.pt", "size": MB, "updated_at": when}
                for step, when in (
                    (100, "2026-09-01T08:00:00Z"),
                    (200, "2026-09-01T20:00:00Z"),
                    (300, "2026-09-02T09:00:00Z"),
                    (900, "2026-09-03T09:00:00Z"),
                    (1000, "2026-09-03T07:00:00Z"),
                )
            ],
        },
    ]
}


def test_calendar_selectors_in_a_real_plan(emulator: Any, wandb_env: Any, tmp_path: Path) -> None:
    """keep_daily 2 with order_by: name keeps step-1000 (Sep 3) and step-300 (Sep 2); the rest go."""
    wandb_env(emulator(seed=CALENDAR_FIXTURE).url)
    spec = tmp_path / "cal.yaml"
    spec.write_text(
        "version: 1\ntarget: {entity: acme, project: vision}\nrules:\n  - name: cal\n"
        "    match: {all: true}\n    files:\n      delete: ['checkpoints/*.pt']\n"
        "      keep_daily: 2\n      order_by: name\n"
    )
    out = tmp_path / "plan.json"
    result = invoke("plan", "-f", str(spec), "-o", str(out), "--show-kept", "--no-color")
    assert result.exit_code == 0, result.output
    [run] = json.loads(out.read_text())["runs"]
    assert sorted(c["file"]["name"] for c in run["changes"]) == [
        "checkpoints/step-100.pt",
        "checkpoints/step-200.pt",
        "checkpoints/step-900.pt",
    ]
    assert {k["name"]: [r["detail"] for r in k["reasons"]] for k in run["kept"]} == {
        "checkpoints/step-1000.pt": ["2026-09-03"],
        "checkpoints/step-300.pt": ["2026-09-02"],
    }
    assert (
        '= file "checkpoints/step-1000.pt"' in result.output and "cal: keep_daily 2026-09-03" in result.output
    )
