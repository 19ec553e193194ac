"""``python -m bench [group ...] [-k text]``: run the benchmark cases and write bench/results/report.md.

``-k text`` keeps only the cases whose name contains ``text``.

Each ``bench/cases_<group>.py`` module exposes ``cases() -> list[Case]``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench.harness import report, run_case, write

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    only = None
    if "-k" in argv:
        at = argv.index("-k")
        only, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    wanted = set(argv)
    groups = sorted(m.name.removeprefix("cases_") for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("cases_"))
    results = []
    for group in groups:
        if wanted and group not in wanted:
            continue
        print(f"[bench] {group}", flush=True)
        module = importlib.import_module(f"bench.cases_{group}")
        for case in module.cases():
            if only is not None and only not in case.name:
                continue
            try:
                results.append(run_case(case))
            except Exception as err:  # noqa: BLE001 - one broken case must not lose the others' figures
                print(f"[bench] {case.group} / {case.name} FAILED: {type(err).__name__}: {err}", flush=True)
    path = write(results, HERE / "results")
    print(report(results))
    print(f"[bench] report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
