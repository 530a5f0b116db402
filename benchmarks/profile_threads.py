"""Run ``python -m MODULE ARGS`` with a CPU profile of every thread (cProfile on ``time.thread_time``),
merged into one pstats file at exit (also on SIGTERM, which is how the harness stops an emulator).

    python benchmarks/profile_threads.py OUT.prof reconcile emulator --port 0 --db W/c.sqlite --latency-ms 20
    python benchmarks/profile_threads.py OUT.prof reconcile plan -f W/spec.yaml -o W/plan.json

cProfile alone sees only the main thread; the emulator answers on one thread per connection and apply
writes on a pool. Profiling inflates code that makes many small calls: read the ranking, not the seconds.
"""
import atexit
import cProfile
import pstats
import runpy
import signal
import sys
import threading
import time

out, module, *rest = sys.argv[1:]
profiles: list[cProfile.Profile] = []  # one per thread
lock = threading.Lock()
orig_run = threading.Thread.run


def run(self: threading.Thread) -> None:
    prof = cProfile.Profile(time.thread_time)
    with lock:
        profiles.append(prof)
    prof.enable()
    try:
        orig_run(self)
    finally:
        prof.disable()


threading.Thread.run = run  # type: ignore[method-assign]
main = cProfile.Profile(time.thread_time)
profiles.append(main)


def dump() -> None:
    main.disable()
    for p in profiles:
        p.disable()
    stats = None
    for p in profiles:
        try:
            s = pstats.Stats(p)
        except TypeError:
            continue
        stats = s if stats is None else stats.add(s)
    if stats is not None:
        stats.dump_stats(out)


atexit.register(dump)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
sys.argv = [module, *rest]
main.enable()
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    dump()
    atexit.unregister(dump)
