"""``make demo``: start an empty emulator, train the demo's runs with the real SDK, then plan -> apply -> plan.

``train.py`` (numpy, seconds) makes the runs the way users do: ``wandb.init``, a metric per step,
checkpoints and images through ``wandb.save``, ``finish``. Everything runs on 127.0.0.1 with the
real wandb client underneath; the emulator is stopped at the end whatever happens. Outputs (plan,
journal, undo plan, backups) go to ``demo-out/``. ``fixture.yaml`` (seeded runs) stays for the
README's examples, the tests and, through ``make_fixture.py``-style generation, the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = Path(os.environ.get("RECONCILE_DEMO_OUT", REPO / "demo-out")).resolve()
SPEC = HERE / "spec"
DEMO_KEY = "local-" + "d" * 40  # the emulator accepts any key; wandb wants 40+ characters


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as a person would type it)."""
    return os.path.relpath(path, REPO) if path.is_relative_to(REPO) else str(path)


def step(title: str, *argv: str, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> int:
    """Run one reconcile command, echoing it first like a person would type it."""
    print(f"\n\033[1m$ reconcile {' '.join(argv)}\033[0m  # {title}", flush=True)
    code = subprocess.call([sys.executable, "-m", "reconcile", *argv], env=env)
    if code not in ok:
        raise SystemExit(f"demo: `reconcile {' '.join(argv)}` exited {code}")
    return code


def main() -> int:
    """Run the demo; exit non-zero if any step does not behave as promised."""
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "emulator", "--port", "0", "--db", str(OUT / "demo.sqlite"),
         "--seed", str(HERE / "viewer.yaml")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline().strip()
        if not line.startswith("serving "):
            raise SystemExit(f"demo: the emulator did not start ({line!r})")
        url = line.split(" ", 1)[1]
        print(f"Emulator started without runs, {line}")
        env = {**os.environ, "WANDB_BASE_URL": url, "WANDB_API_KEY": DEMO_KEY, "WANDB_SILENT": "true",
               "WANDB_DIR": str(OUT / "wandb"), "WANDB_CONFIG_DIR": str(OUT / "wandb-config"),
               "WANDB_CACHE_DIR": str(OUT / "wandb-cache"), "WANDB_ERROR_REPORTING": "false"}
        print(f"\n\033[1m$ python {shown(HERE / 'train.py')}\033[0m  # make the runs with the real SDK", flush=True)
        if subprocess.call([sys.executable, str(HERE / "train.py")], env=env) != 0:
            raise SystemExit("demo: the training script failed")
        spec = shown(SPEC)
        plan = shown(OUT / "plan.json")
        os.chdir(REPO)
        step("offline checks", "validate", *sorted(shown(p) for p in SPEC.glob("*.yaml")),
             env=env)
        step("what would change", "plan", "-f", spec, "-o", plan, "--detailed-exitcode", env=env, ok=(2,))
        step("make exactly those changes", "apply", plan, "--backup-dir", shown(OUT / "backups"),
             env=env)
        step("nothing left to do", "plan", "-f", spec, "--detailed-exitcode", env=env, ok=(0,))
        print(f"\nDemo done. The plan, its journal, the undo plan and the backups are in {shown(OUT)}/.")
        return 0
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()


if __name__ == "__main__":
    sys.exit(main())
