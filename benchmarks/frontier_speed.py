"""Wall time of the Pareto-frontier knapsack solver on the search's largest instances.

The φ search and SSC solve a multiple-choice knapsack with one group per site and one
option per candidate. This times ``solve_min_sum`` on random 30-site × 19-candidate
instances (two kinds: independent values and costs, and the realistic anti-correlated
"more spikes, less sensitivity"), the instances ``tests/test_frontier.py`` checks for
correctness, and prints the median of ``--repeats`` runs after one warm-up run.

    .venv/bin/python benchmarks/frontier_speed.py
    .venv/bin/python benchmarks/frontier_speed.py --groups 60 --options 19 --repeats 5

The goal is well under 2 s per instance on one CPU core (the search solves one per
calibration, next to minutes of simulation).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from adacal.adaptive.frontier import solve_min_sum


def instance(groups: int, options: int, anti: bool, seed: int):
    """(values, costs, budget) as tests/test_frontier.py builds them (seed 7 + anti there)."""
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.0, 1.0, (groups, options))
    if anti:
        values = 1.0 - costs + 0.3 * rng.uniform(0.0, 1.0, (groups, options))
    else:
        values = rng.uniform(0.0, 1.0, (groups, options))
    budget = costs.min(1).sum() + 0.6 * (costs.max(1).sum() - costs.min(1).sum())
    return values.tolist(), costs.tolist(), float(budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=30, help="sites (default 30)")
    parser.add_argument("--options", type=int, default=19, help="candidates per site (19)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per instance (3)")
    args = parser.parse_args()
    print("| instance | groups × options | median s | frontier value |")
    print("| --- | --- | ---: | ---: |")
    for anti in (False, True):
        values, costs, budget = instance(args.groups, args.options, anti, seed=7 + anti)
        solve_min_sum(values, costs, budget)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            choice = solve_min_sum(values, costs, budget)
            times.append(time.perf_counter() - start)
        name = "anti-correlated" if anti else "independent"
        print(
            f"| {name} | {args.groups} × {args.options} | {statistics.median(times):.3f} "
            f"| {choice.value:.4f} |"
        )


if __name__ == "__main__":
    main()
