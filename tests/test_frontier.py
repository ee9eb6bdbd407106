"""The Pareto-frontier multiple-choice knapsack solver against brute force and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from adacal.adaptive.frontier import Choice, solve_min_cost, solve_min_sum
from adacal.errors import ConfigError

N_RANDOM = 60


def within(total: float, budget: float) -> bool:
    """The solver's documented budget tolerance."""
    return total <= budget + 1e-9 * abs(budget) + 1e-12


def random_instance(seed: int) -> tuple[list[list[float]], list[list[float]], bool]:
    """2-6 groups x 1-5 options; every other instance integer-valued with many exact ties."""
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(2, 7))
    integer = seed % 2 == 0
    values, costs = [], []
    for _ in range(n_groups):
        k = int(rng.integers(1, 6))
        if integer:
            values.append(rng.integers(0, 3, k).astype(float).tolist())
            costs.append(rng.integers(0, 3, k).astype(float).tolist())
        else:
            values.append(rng.uniform(-1.0, 2.0, k).tolist())
            costs.append(rng.uniform(0.0, 3.0, k).tolist())
    return values, costs, integer


def draw_budget(rng: np.random.Generator, rows: list[list[float]], integer: bool) -> float:
    """A budget between the smallest and the largest achievable total of ``rows``."""
    lo = sum(min(r) for r in rows)
    hi = sum(max(r) for r in rows)
    if integer:
        return float(rng.integers(int(lo), int(hi) + 1))
    return float(rng.uniform(lo, hi))


def totals(values, costs, idx) -> tuple[float, float]:
    """Σ values and Σ costs of one choice, summed in group order."""
    v = sum(values[g][j] for g, j in enumerate(idx))
    c = sum(costs[g][j] for g, j in enumerate(idx))
    return v, c


def brute_min_sum(values, costs, budget):
    """(value, cost, indices) of the best feasible choice: lowest value, cost, then indices."""
    best = None
    for idx in itertools.product(*(range(len(r)) for r in values)):
        v, c = totals(values, costs, idx)
        if within(c, budget) and (best is None or (v, c, idx) < best):
            best = (v, c, idx)
    return best


def brute_min_cost(values, costs, value_budget):
    """(cost, value, indices) of the cheapest choice with Σ values within the value budget."""
    best = None
    for idx in itertools.product(*(range(len(r)) for r in values)):
        v, c = totals(values, costs, idx)
        if within(v, value_budget) and (best is None or (c, v, idx) < best):
            best = (c, v, idx)
    return best


def check_choice(choice: Choice, values, costs) -> None:
    """Indices are in range and reproduce the reported totals."""
    assert isinstance(choice, Choice)
    assert len(choice.indices) == len(values)
    assert all(0 <= j < len(values[g]) for g, j in enumerate(choice.indices))
    v, c = totals(values, costs, choice.indices)
    assert choice.value == pytest.approx(v, rel=1e-12, abs=1e-12)
    assert choice.cost == pytest.approx(c, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_min_sum_matches_brute_force(seed: int) -> None:
    values, costs, integer = random_instance(seed)
    budget = draw_budget(np.random.default_rng(1000 + seed), costs, integer)
    got = solve_min_sum(values, costs, budget)
    best_v, best_c, best_idx = brute_min_sum(values, costs, budget)
    check_choice(got, values, costs)
    assert within(got.cost, budget)
    assert got.value == pytest.approx(best_v, rel=1e-12, abs=1e-12)
    if integer:  # exact ties: documented tie-breaking (lower cost, then smallest indices)
        assert (got.value, got.cost, tuple(got.indices)) == (best_v, best_c, best_idx)


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_min_cost_matches_brute_force(seed: int) -> None:
    values, costs, integer = random_instance(10_000 + seed)
    values = [[abs(x) for x in row] for row in values]  # the constrained side is non-negative
    value_budget = draw_budget(np.random.default_rng(2000 + seed), values, integer)
    got = solve_min_cost(values, costs, value_budget)
    best_c, best_v, best_idx = brute_min_cost(values, costs, value_budget)
    check_choice(got, values, costs)
    assert within(got.value, value_budget)
    assert got.cost == pytest.approx(best_c, rel=1e-12, abs=1e-12)
    if integer:
        assert (got.cost, got.value, tuple(got.indices)) == (best_c, best_v, best_idx)


def test_min_cost_keeps_field_meaning() -> None:
    values = [[3.0, 1.0], [2.0, 0.5]]  # sensitivity
    costs = [[1.0, 10.0], [2.0, 20.0]]  # spikes
    got = solve_min_cost(values, costs, 4.0)
    # Cheapest with Σ values <= 4: (3 + 0.5, 1 + 20) = 21 vs (1 + 2, 10 + 2) = 12.
    assert got == Choice(indices=[1, 0], value=3.0, cost=12.0)


def test_infeasible_budget_names_min_cost() -> None:
    values = [[1.0, 0.0], [2.0, 0.0], [5.0, 1.0]]
    costs = [[1.5, 4.0], [2.25, 3.0], [0.75, 9.0]]
    min_cost = 1.5 + 2.25 + 0.75
    with pytest.raises(ConfigError) as info:
        solve_min_sum(values, costs, min_cost - 0.01, key="search.rho")
    assert info.value.key == "search.rho"
    assert f"{min_cost:.6g}" in info.value.detail
    assert f"{min_cost - 0.01:.6g}" in info.value.detail
    assert "budget" in info.value.detail
    # Just enough budget: the all-cheapest choice.
    assert solve_min_sum(values, costs, min_cost, key="search.rho").indices == [0, 0, 0]


def test_min_cost_infeasible_names_min_value() -> None:
    values = [[1.0, 2.0], [3.0, 0.5]]
    costs = [[0.0, 0.0], [0.0, 0.0]]
    with pytest.raises(ConfigError) as info:
        solve_min_cost(values, costs, 1.0, key="ssc.rho")
    assert info.value.key == "ssc.rho"
    assert f"{1.5:.6g}" in info.value.detail


def test_budget_equal_to_sum_in_other_order_is_feasible() -> None:
    costs = [[0.1, 0.0], [0.2, 0.0], [0.3, 0.0]]
    values = [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    budget = 0.3 + 0.2 + 0.1
    assert budget < 0.1 + 0.2 + 0.3  # the group-order sum really is one bit above
    got = solve_min_sum(values, costs, budget)
    assert got.indices == [0, 0, 0]
    assert got.value == 0.0
    # Same for the swapped form.
    got = solve_min_cost(costs, values, budget)
    assert got.indices == [0, 0, 0]
    # Single-option groups: the only choice, whose total is above budget by rounding only.
    assert solve_min_sum([[0.0], [0.0], [0.0]], [[0.1], [0.2], [0.3]], budget).indices == [0, 0, 0]


def test_tolerance_is_tight() -> None:
    """A total clearly above the budget (beyond the 1e-9 relative slack) is not feasible."""
    with pytest.raises(ConfigError):
        solve_min_sum([[0.0]], [[1.0 + 1e-6]], 1.0)
    got = solve_min_sum([[0.0, 1.0]], [[1.0 + 1e-6, 1.0]], 1.0)
    assert got.indices == [1]


def greedy(values: np.ndarray, costs: np.ndarray, budget: float) -> float:
    """Start from the cheapest options; take the best value-per-cost upgrade that fits."""
    idx = costs.argmin(1)
    rows = np.arange(len(idx))
    while True:
        cur_v, cur_c = values[rows, idx], costs[rows, idx]
        spare = budget - cur_c.sum()
        dv = cur_v[:, None] - values  # value gained
        dc = costs - cur_c[:, None]  # cost added
        ok = (dv > 0) & (dc <= spare)
        if not ok.any():
            return float(values[rows, idx].sum())
        ratio = np.where(ok, dv / np.maximum(dc, 1e-12), -np.inf)
        g, j = np.unravel_index(ratio.argmax(), ratio.shape)
        idx[g] = j


def integer_dp(values: np.ndarray, costs: np.ndarray, budget: int) -> float:
    """Classic DP over integer budgets: best[b] = lowest value with total cost <= b."""
    best = np.zeros(budget + 1)
    for v, c in zip(values, costs, strict=True):
        new = np.full(budget + 1, np.inf)
        for vj, cj in zip(v, c, strict=True):
            cj = int(cj)
            if cj <= budget:
                new[cj:] = np.minimum(new[cj:], best[: budget + 1 - cj] + vj)
        best = new
    return float(best[budget])


@pytest.mark.parametrize("anti", [False, True])
def test_large_instance_better_than_greedy(anti: bool) -> None:
    """The search's largest instance (30 sites x 19 candidates); its wall time is measured by
    benchmarks/frontier_speed.py, not asserted here."""
    rng = np.random.default_rng(7 + anti)
    costs = rng.uniform(0.0, 1.0, (30, 19))
    if anti:  # realistic: more spikes, less sensitivity
        values = 1.0 - costs + 0.3 * rng.uniform(0.0, 1.0, (30, 19))
    else:
        values = rng.uniform(0.0, 1.0, (30, 19))
    budget = costs.min(1).sum() + 0.6 * (costs.max(1).sum() - costs.min(1).sum())
    got = solve_min_sum(values.tolist(), costs.tolist(), budget)
    check_choice(got, values.tolist(), costs.tolist())
    assert within(got.cost, budget)
    assert got.value <= greedy(values, costs, budget) + 1e-9


def test_large_integer_instance_matches_integer_dp() -> None:
    rng = np.random.default_rng(11)
    costs = rng.integers(0, 40, (30, 19)).astype(float)
    values = 40.0 - costs + rng.integers(0, 15, (30, 19))
    budget = int(costs.min(1).sum() + 0.5 * (costs.max(1).sum() - costs.min(1).sum()))
    got = solve_min_sum(values.tolist(), costs.tolist(), float(budget))
    assert got.value == integer_dp(values, costs, budget)
    assert got.cost <= budget


@pytest.mark.parametrize(
    ("values", "costs", "budget"),
    [
        ([[1.0, 2.0]], [[1.0, -0.5]], 5.0),  # negative cost
        ([[1.0], []], [[1.0], []], 5.0),  # empty group
        ([[1.0, 2.0]], [[1.0]], 5.0),  # ragged: group lengths differ
        ([[1.0], [2.0]], [[1.0]], 5.0),  # ragged: group counts differ
        ([[1.0, [2.0]]], [[1.0, 1.0]], 5.0),  # nested, not flat
        ([[float("nan")]], [[1.0]], 5.0),  # NaN value
        ([[1.0]], [[float("nan")]], 5.0),  # NaN cost
        ([[1.0]], [[1.0]], float("nan")),  # NaN budget
        ([], [], 5.0),  # no groups
    ],
)
def test_bad_input_raises(values, costs, budget) -> None:
    with pytest.raises(ConfigError) as info:
        solve_min_sum(values, costs, budget, key="k")
    assert info.value.key == "k"


def test_min_cost_rejects_negative_value() -> None:
    with pytest.raises(ConfigError, match="negative value"):
        solve_min_cost([[1.0, -1.0]], [[1.0, 2.0]], 5.0)


def test_exact_ties_pick_smallest_indices() -> None:
    """[0, 1] and [1, 0] both reach (cost 1, value 0); the lexicographically smaller one wins."""
    values = [[1.0, 0.0], [0.0, -1.0]]
    costs = [[0.0, 1.0], [0.0, 1.0]]
    assert solve_min_sum(values, costs, 1.0) == Choice(indices=[0, 1], value=0.0, cost=1.0)
    # Here the cheaper prefix [1] is lexicographically larger than [0]: [0, 0] must still win.
    values = [[0.0, 1.0], [0.0, -1.0]]
    costs = [[1.0, 0.0], [0.0, 1.0]]
    assert solve_min_sum(values, costs, 1.0) == Choice(indices=[0, 0], value=0.0, cost=1.0)
    # Equal value at different costs: the cheaper one wins.
    assert solve_min_sum([[0.0, 0.0]], [[2.0, 1.0]], 5.0).indices == [1]
