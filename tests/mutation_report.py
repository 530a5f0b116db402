"""Summarise the last `mutmut run` (``make mutation``): per module, mutants killed / survived / timed out /
not run and the score, then the diff of every surviving mutant. Markdown on stdout, ready to compare
with the table in tests/README.md. Run from the repository root after `mutmut run`.

``--pending [--again STATUS,...] PATTERN...`` prints instead the names `make mutation` hands to
`mutmut run` to resume: the mutants matching the patterns that have no verdict (or one of the
statuses given), after re-mutating the files changed since (which drops the verdicts of the functions
that changed). mutmut re-runs every mutant its arguments name, verdict or not, so passing it the
patterns themselves would start from the beginning every time.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
from collections import Counter
from pathlib import Path

from mutmut.__main__ import create_mutants
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import copy_src_dir, walk_mutatable_files

DETECTED = ("killed", "timeout")


def main(patterns: list[str]) -> int:
    """Print the report for the mutants matching ``patterns`` (all if none); exit 1 without data."""
    rows: list[tuple[str, Counter[str]]] = []
    survivors: list[tuple[str, str]] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        counts: Counter[str] = Counter()
        for name, code in data.exit_code_by_key.items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            status = "not run" if code is None else status_by_exit_code[code]
            counts[status] += 1
            if status == "survived":
                survivors.append((name, str(path)))
        if counts:
            rows.append((str(path), counts))
    if not rows:
        print("No mutation data: run `make mutation` first.", file=sys.stderr)
        return 1
    total: Counter[str] = sum((c for _, c in rows), Counter())
    print("| module | mutants | killed | timeout | survived | no tests | not run | score |")
    print("|---|---|---|---|---|---|---|---|")
    for path, counts in [*rows, ("**all**", total)]:
        run = sum(counts.values()) - counts["not run"] - counts["skipped"]
        detected = sum(counts[s] for s in DETECTED)
        score = f"{100 * detected / run:.1f} %" if run else "-"
        print(f"| {path} | {sum(counts.values())} | {counts['killed']} | {counts['timeout']} | "
              f"{counts['survived']} | {counts['no tests']} | {counts['not run']} | {score} |")
    print(f"\n{len(survivors)} surviving mutants:\n")
    for name, path in survivors:
        print(f"### `{name}`\n\n```diff\n{get_diff_for_mutant(name, path=path).strip()}\n```\n")
    return 0


def pending(patterns: list[str], again: set[str]) -> list[str]:
    """The mutants to run: matching ``patterns``, with no verdict or one in ``again`` (the patterns
    themselves before the first run, which generates the mutants)."""
    if not Path("mutants").is_dir():
        return patterns
    with contextlib.redirect_stdout(sys.stderr):  # it prints each file's name; stdout is the list
        copy_src_dir()
        create_mutants(1)  # only files changed since: their changed functions lose their verdicts
    names: list[str] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            if any(fnmatch.fnmatch(name, p) for p in patterns) and \
                    (code is None or status_by_exit_code[code] in again):
                names.append(name)
    return names


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--pending"]:
        again: set[str] = set()
        if args[1:2] == ["--again"]:
            again, args = set(args[2].split(",")), args[2:]
        print("\n".join(pending(args[1:], again)))
        sys.exit(0)
    sys.exit(main(args))
