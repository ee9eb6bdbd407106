"""Exact multiple-choice knapsack by a Pareto-frontier dynamic programme.

Both searches of Adaptive Calibration pick one option per layer (group) under one summed budget:

- firing-pattern search: per layer l pick a firing pattern φ_l to minimise Σ_l sensitivity_l(φ_l)
  subject to Σ_l spikes_l(φ_l) <= ρ · Σ_l spikes_l(φ_target)  -> :func:`solve_min_sum`;
- Sensitivity Spike Compression: per layer pick a compression r_l to minimise Σ_l spikes_l(r_l)
  subject to Σ_l sensitivity_l(r_l) <= ρ · Σ_l sensitivity_l(r=1)  -> :func:`solve_min_cost`,
  which is :func:`solve_min_sum` with the roles of values and costs swapped.

Recurrence. Group l = 1..L has options j with value v[l][j] and cost c[l][j] >= 0, budget B:

    F_0 = {(cost 0, value 0)}
    F_l = ND({(c + c[l][j], v + v[l][j]) : (c, v) in F_{l-1}, all j, c + c[l][j] + m_l <= B})

where m_l = Σ_{k>l} min_j c[k][j] is the cheapest possible rest (costs are non-negative, so a
partial sum that cannot be completed within B is dropped early), and ND sorts the points by
(cost, value) and keeps only those whose value is strictly lower than every cheaper point's value
(the non-dominated points). F_L is then ordered by increasing cost and strictly decreasing value,
so its last point is the optimum: the lowest value, and the lowest cost among solutions with that
value. Every point keeps a back-pointer (parent point in F_{l-1}, option j) so the chosen indices
are read back from F_L to F_1. Dominated points are pruned at every step, so the frontier stays
small and each step is one vectorised numpy combine + sort.

Conventions:

- Costs must be non-negative (the early pruning relies on it); values may have any sign. All
  numbers must be finite.
- A total cost counts as within budget if it is <= B + 1e-9·|B| + 1e-12 (i.e.
  B·(1 + 1e-9) + 1e-12 for B >= 0): sums of the same numbers in a different order can differ in
  the last bit, and a budget computed as such a sum must stay feasible.
- Ties: among solutions with equal value the cheaper one wins; among solutions with exactly equal
  value and cost the lexicographically smallest index tuple wins (each frontier point carries the
  lexicographic rank of its index prefix, used as the last sort key). Ties that differ only by
  floating-point rounding are broken by the rounded sums.
- Invalid input (no groups, an empty group, values/costs of different shapes, NaN or infinite
  numbers, a negative cost, a NaN budget) and infeasible budgets raise
  :class:`~adacal.errors.ConfigError` under the caller's config key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adacal.errors import ConfigError

__all__ = ["Choice", "solve_min_cost", "solve_min_sum"]

REL_TOL = 1e-9
ABS_TOL = 1e-12


@dataclass(frozen=True)
class Choice:
    """One option per group and its totals."""

    indices: list[int]  # chosen option per group
    value: float  # Σ values of the chosen options
    cost: float  # Σ costs of the chosen options


def budget_limit(budget: float) -> float:
    """The largest total that still counts as within ``budget`` (see the module docstring)."""
    return budget + REL_TOL * abs(budget) + ABS_TOL


def _as_groups(
    values: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]],
    key: str,
    names: tuple[str, str],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate and convert to per-group float64 arrays; ``names`` = (value name, cost name)."""
    vn, cn = names
    if len(values) != len(costs):
        raise ConfigError(
            key, f"{vn}s have {len(values)} groups but {cn}s have {len(costs)}; pass one each"
        )
    if len(values) == 0:
        raise ConfigError(key, "no groups to choose from; pass at least one group of options")
    vs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    for g, (v_row, c_row) in enumerate(zip(values, costs, strict=True)):
        try:
            v = np.asarray(v_row, dtype=np.float64)
            c = np.asarray(c_row, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, f"group {g} is not a flat list of numbers ({exc})") from exc
        if v.ndim != 1 or c.ndim != 1:
            raise ConfigError(key, f"group {g} must be a flat list of numbers")
        if v.size == 0 or c.size == 0:
            raise ConfigError(key, f"group {g} has no options; every group needs at least one")
        if v.size != c.size:
            raise ConfigError(
                key, f"group {g} has {v.size} {vn}s but {c.size} {cn}s; pass one {cn} per {vn}"
            )
        if not (np.isfinite(v).all() and np.isfinite(c).all()):
            raise ConfigError(key, f"group {g} has a NaN or infinite {vn} or {cn}")
        if (c < 0).any():
            raise ConfigError(
                key, f"group {g} has a negative {cn} ({c.min():.6g}); {cn}s must be >= 0"
            )
        vs.append(v)
        cs.append(c)
    return vs, cs


def _best_per_cost(
    order: np.ndarray, cost: np.ndarray, value: np.ndarray, lex: np.ndarray
) -> np.ndarray:
    """From candidates ``order``ed by cost, keep per distinct cost the lowest (value, lex) one."""
    sc = cost[order]
    same = sc[1:] == sc[:-1]
    if not same.any():
        return order
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    counts = np.diff(np.append(starts, order.size))
    sv = value[order]
    is_min = sv == np.repeat(np.minimum.reduceat(sv, starts), counts)
    sl = np.where(is_min, lex[order], np.iinfo(np.int64).max)
    first = sl == np.repeat(np.minimum.reduceat(sl, starts), counts)
    return order[is_min & first]


def _solve(
    values: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]],
    budget: float,
    key: str,
    names: tuple[str, str],
) -> Choice:
    """The frontier DP; ``names`` = (minimised, constrained) quantity, for error messages."""
    vs, cs = _as_groups(values, costs, key, names)
    cost_name = names[1]
    budget = float(budget)
    if np.isnan(budget):
        raise ConfigError(key, "the budget is NaN; pass a number")
    limit = budget_limit(budget)
    # Cheapest possible completion after each group (suffix sums of per-group minimum costs).
    mins = np.array([c.min() for c in cs])
    min_total = float(sum(mins.tolist()))
    if not min_total <= limit:
        raise ConfigError(
            key,
            f"infeasible: the smallest achievable total {cost_name} is {min_total:.6g}, above the "
            f"budget {budget:.6g}; raise the budget ratio",
        )
    rest = np.concatenate([np.cumsum(mins[::-1])[::-1][1:], [0.0]])
    # Looser limit for the early pruning: rest is summed in another order than the final total.
    prune_limit = limit + 1e-12 * abs(limit) + ABS_TOL

    f_cost = np.zeros(1)
    f_value = np.zeros(1)
    f_rank = np.zeros(1, dtype=np.int64)  # lexicographic rank of each point's index prefix
    parents: list[np.ndarray] = []
    options: list[np.ndarray] = []
    for g, (v, c) in enumerate(zip(vs, cs, strict=True)):
        n, k = f_cost.size, v.size
        # Candidates option-major (flat index j * n + parent): k runs, each sorted by cost.
        cand_cost = (c[:, None] + f_cost[None, :]).ravel()
        cand_value = (v[:, None] + f_value[None, :]).ravel()
        cand_lex = (np.arange(k)[:, None] + f_rank[None, :] * k).ravel()  # unique per candidate
        ok = (cand_cost <= limit) & (cand_cost + rest[g] <= prune_limit)
        idx = np.flatnonzero(ok)
        if idx.size == 0:  # cannot happen after the min_total check, kept as a guard
            raise ConfigError(
                key,
                f"infeasible: the smallest achievable total {cost_name} is {min_total:.6g}, "
                f"above the budget {budget:.6g}; raise the budget ratio",
            )
        order = idx[np.argsort(cand_cost[idx], kind="stable")]  # merges the sorted runs
        order = _best_per_cost(order, cand_cost, cand_value, cand_lex)
        sorted_value = cand_value[order]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(sorted_value)[:-1]])
        keep = order[sorted_value < best_before]
        f_cost = cand_cost[keep]
        f_value = cand_value[keep]
        lex = cand_lex[keep]
        f_rank = np.empty(keep.size, dtype=np.int64)
        f_rank[np.argsort(lex)] = np.arange(keep.size)
        parents.append(keep % n)
        options.append(keep // n)

    # The last frontier point has the lowest value (and the lowest cost for that value).
    indices = [0] * len(vs)
    point = f_cost.size - 1
    for g in range(len(vs) - 1, -1, -1):
        indices[g] = int(options[g][point])
        point = int(parents[g][point])
    value = float(sum(float(v[j]) for v, j in zip(vs, indices, strict=True)))
    cost = float(sum(float(c[j]) for c, j in zip(cs, indices, strict=True)))
    return Choice(indices=indices, value=value, cost=cost)


def solve_min_sum(
    values: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]],
    budget: float,
    key: str = "budget",
) -> Choice:
    """Pick one option per group l: minimise Σ_l values[l][j_l] s.t. Σ_l costs[l][j_l] <= budget.

    Costs must be non-negative. Raises :class:`ConfigError` under ``key`` for invalid input or
    when even the cheapest option of every group exceeds the budget in total.
    """
    return _solve(values, costs, budget, key, ("value", "cost"))


def solve_min_cost(
    values: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]],
    value_budget: float,
    key: str = "budget",
) -> Choice:
    """Pick one option per group l: minimise Σ_l costs[l][j_l] s.t. Σ_l values[l][j_l] <= budget.

    The same solver with the roles swapped, so here the values must be non-negative. The returned
    ``value``/``cost`` keep their meaning (Σ values, Σ costs). Ties: lower Σ values, then the
    lexicographically smallest indices.
    """
    swapped = _solve(costs, values, value_budget, key, ("cost", "value"))
    return Choice(indices=swapped.indices, value=swapped.cost, cost=swapped.value)
