"""Summarise the last `mutmut run` (``make mutation``): per module, mutants killed / survived / timed out /
not run and the score, then the diff of every surviving mutant. Markdown on stdout, ready to compare
with the table in tests/README.md. Run from the repository root after `mutmut run`."""

from __future__ import annotations

import fnmatch
import sys
from collections import Counter

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
