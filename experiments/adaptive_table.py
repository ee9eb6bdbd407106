"""Render the Adaptive Calibration comparison table from run folders (one per method).

    .venv/bin/python experiments/adaptive_table.py outputs/adacal_r20/*/ --T 2 4 8 16 32

The run whose method is ``if`` (IF neuron, fixed T) is the baseline for the savings. Runs
of the same method (e.g. T = 2…16 in one run and T = 32 in another) are merged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adacal.reporting.methods import load_runs, methods_markdown

ORDER = ("if", "burst", "adafire", "adafire + ssc", "adafire + ssc + iat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding metrics.json")
    parser.add_argument("--T", nargs="+", type=int, required=True)
    args = parser.parse_args()
    merged: dict[str, dict] = {}  # runs of one method for different T (e.g. T = 32 apart)
    found = [r for r in args.runs if (r / "metrics.json").is_file()]
    for missing in sorted(set(args.runs) - set(found)):
        print(f"no metrics.json (not started, or still in its first T): {missing}", file=sys.stderr)
    for label, metrics in load_runs(found):
        merged.setdefault(label, {}).update(metrics)
    runs = list(merged.items())
    runs.sort(key=lambda r: next((i for i, o in enumerate(ORDER) if r[0].startswith(o)), 99))
    print(methods_markdown(runs, args.T, baseline="if"))


if __name__ == "__main__":
    main()
