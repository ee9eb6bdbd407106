"""AdaFire's layer-wise firing-pattern search (Adaptive Calibration, §AdaFire), and the rounds
that both searches (this one and SSC, :mod:`adacal.adaptive.compression`) iterate.

All sites start at φ_init with thresholds fitted for φ_init. For each site l and
each φ ∈ [φ_min, φ_init] (only site l changed, its threshold refitted for φ) the
calibration batch gives the sensitivity S_l(φ) (symmetric KL between SNN and ANN
softmax) and the spikes E_l(φ) of site l. The frontier solver then picks

    φ* = argmin_φ Σ_l S_l(φ_l)   subject to   Σ_l E_l(φ_l) ≤ B,   B = ρ · Σ_l E_l(φ_target),

and every site gets φ*_l with its threshold fitted for φ*_l. (Bias correction
follows in the recipe.)

Rounds (``neuron.rounds`` = N ≥ 1; N = 1 is the search above, unchanged). The one-site
tables are a first-order model of the whole network around one reference configuration c
(round 1: φ_init everywhere): spikes Σ_l E^c_l(φ_l), sensitivity
S(c) + Σ_l (S^c_l(φ_l) − S(c)). Round r + 1 measures the tables again around round r's
choice (every other site at its chosen φ) and solves again with the *same* B (computed once,
from round 1's tables; spikes are counted per site, so Σ_l E^c_l needs no offset), until the
choice is one already measured around (``stable``: unchanged; ``cycle``: an earlier
reference, so the rounds would repeat), N rounds are done (``rounds exhausted``), or a
round's model has no choice within B (``infeasible``; only after round 1, whose
infeasibility stays an error). Each round's choice is scored on the whole network on the
same images: its end-to-end symmetric KL to the ANN and its total spikes E (the base run of
the next round's tables, or one more simulation for the last choice). A choice x is within
budget when the constraint holds with x as its own reference: Σ_l E^x_l(x_l) = E(x) ≤ B. The
search keeps the round with the lowest end-to-end KL among those within budget (round 1 when
none is; the earliest on ties), so the kept round is never worse than round 1: it is round 1,
or within budget with a KL no higher than round 1's, or within budget where round 1 is not.
A stable round's choice is within budget by construction (its solver checked E(x) itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from adacal.adaptive.frontier import Choice, budget_limit, solve_min_sum
from adacal.adaptive.runner import Measurements, measure_variants
from adacal.calibration.data import CalibrationData
from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork
from adacal.snn.neurons import AdaFireNeuron, IFNeuron

log = logging.getLogger("adacal")

Refit = Callable[[int, int], Tensor]  # (site index, φ) -> θ fitted for φ
Setting = tuple[float, ...]  # one value per site: φ (AdaFire) or threshold ratio r (SSC)

STABLE, CYCLE, EXHAUSTED, INFEASIBLE = "stable", "cycle", "rounds exhausted", "infeasible"


class Search(Protocol):
    """A per-site choice made after the first threshold fit: ``search(net, data, refit)`` sets
    ``site.phi`` / ``site.theta`` and returns its record (stored under ``name``)."""

    name: str

    def __call__(self, net: SpikingNetwork, data: CalibrationData, refit: Refit) -> dict: ...


@dataclass(frozen=True)
class FiringPatternSearch:
    """AdaFire's search. Its settings (φ range, target, ρ, images, cost, rounds) are the
    validated fields of :class:`~adacal.snn.neurons.AdaFireNeuron` (``conf/neuron/adafire.yaml``),
    held as they are rather than copied: the neuron spec configures, this class searches."""

    settings: AdaFireNeuron
    name: str = "adafire"

    def __call__(self, net: SpikingNetwork, data: CalibrationData, refit: Refit) -> dict:
        return firing_pattern_search(net, data, self.settings, refit)


def search_for(neuron: IFNeuron) -> Search | None:
    """The search a neuron spec asks for: :class:`FiringPatternSearch` for AdaFire, None for a
    neuron with a fixed φ (IF, burst)."""
    return FiringPatternSearch(neuron) if isinstance(neuron, AdaFireNeuron) else None


# --- rounds, shared with SSC ------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """One round: the tables measured around ``reference``, the solver's ``choice`` on them
    (``solved``: its option indices and modelled totals Σ values, Σ costs, under ``budget``)
    and the whole network at ``choice``: end-to-end KL ``kl`` and total cost ``cost`` [per
    image]."""

    reference: Setting
    measured: Measurements
    choice: Setting
    solved: Choice
    budget: float
    kl: float
    cost: float


@dataclass(frozen=True)
class Rounds:
    """The rounds done (≥ 1), why they stopped, and the site-steps simulated: all tables
    measured (``site_steps``, a round that found no choice included) and the last choice's
    end-to-end run (``evaluation_site_steps``)."""

    done: list[Round]
    stop: str
    detail: str = ""
    site_steps: int = 0
    evaluation_site_steps: int = 0


Measure = Callable[[Setting], Measurements]  # sets the network to a setting, then measures
Solve = Callable[[Measurements], tuple[Setting, Choice, float]]  # -> choice, totals, budget


def iterate_rounds(
    reference: Setting,
    first: Measurements,
    measure: Measure,
    score: Measure,
    solve: Solve,
    rounds: int,
) -> Rounds:
    """Solve on ``first`` (the tables around ``reference``), then re-measure around each choice
    and solve again, for at most ``rounds`` rounds (the stops: see the module docstring).

    The base run of the tables around c is the whole network at c, so the next round's
    ``measure(choice)`` also scores a choice: (KL, cost) = (``base_sensitivity``,
    Σ ``base_spikes``). The last choice, unless it was already measured around, is scored by
    ``score(choice)`` (the base run alone, :func:`end_to_end`). Round 1's solver error (no
    choice within its budget) is raised; a later one stops the rounds (``infeasible``).
    """
    done: list[Round] = []
    seen = {reference: _whole(first)}  # setting -> (KL, cost) of the whole network there
    tables, scoring, stop, detail = first.site_steps, 0, EXHAUSTED, ""
    m = first
    for r in range(rounds):
        try:
            choice, solved, budget = solve(m)
        except ConfigError as err:
            if r == 0:
                raise
            stop, detail = INFEASIBLE, str(err)
            break
        if choice in seen:
            stop = STABLE if choice == reference else CYCLE
            nxt = None
        elif r + 1 == rounds:
            scored = score(choice)
            scoring += scored.site_steps
            seen[choice], nxt = _whole(scored), None
        else:
            nxt = measure(choice)
            tables += nxt.site_steps
            seen[choice] = _whole(nxt)
        done.append(Round(reference, m, choice, solved, budget, *seen[choice]))
        if nxt is None:
            break
        reference, m = choice, nxt
    return Rounds(done, stop, detail, tables, scoring)


def _whole(m: Measurements) -> tuple[float, float]:
    """(end-to-end KL, total cost) of the reference the tables ``m`` were measured around."""
    return m.base_sensitivity, float(sum(m.base_spikes))


def best_round(
    done: Sequence[Round], within: Callable[[Round], bool], worse: Callable[[Round], float]
) -> int:
    """Index of the round with the lowest ``worse`` among those ``within`` the budget (the
    earliest on ties); 0 (round 1) when none is."""
    ok = [i for i, r in enumerate(done) if within(r)]
    return min(ok, key=lambda i: (worse(done[i]), i)) if ok else 0


def model_kl(r: Round) -> float:
    """The first-order model's end-to-end KL at the round's choice:
    S(c) + Σ_l (S^c_l(x_l) − S(c)) = Σ_l S^c_l(x_l) − (L − 1)·S(c), c = its reference."""
    L = len(r.measured.sensitivity)
    return r.solved.value - (L - 1) * r.measured.base_sensitivity


def rounds_record(
    result: Rounds, returned: int, field: str, within: Callable[[Round], bool]
) -> dict[str, Any]:
    """The per-round part of a search record: under ``rounds`` one entry per round (its choice
    under ``field``, whether it differs from its reference, the end-to-end ``kl`` and
    ``spikes`` (the configured cost) at the choice, ``within_budget``, the solver's ``budget``
    and modelled totals, the reference's end-to-end KL and the tables' site-steps), the
    1-based ``returned_round``, the ``stop`` reason (and ``stop_detail``)."""
    entries = [
        {
            "round": i + 1,
            field: list(r.choice),
            "changed": r.choice != r.reference,
            "kl": r.kl,
            "spikes": r.cost,
            "within_budget": within(r),
            "budget": r.budget,
            "model_sensitivity": r.solved.value,
            "model_spikes": r.solved.cost,
            "model_kl": model_kl(r),
            "reference_kl": r.measured.base_sensitivity,
            "site_steps": r.measured.site_steps,
        }
        for i, r in enumerate(result.done)
    ]
    out: dict[str, Any] = {"rounds": entries, "returned_round": returned + 1, "stop": result.stop}
    if result.detail:
        out["stop_detail"] = result.detail
    return out


def end_to_end(
    net: SpikingNetwork, images: Tensor, T: int, sub_batch: int, cost: str
) -> Measurements:
    """The network as it is, whole, on ``images`` [N, C, H, W] for T steps: ``base_sensitivity``
    is its end-to-end symmetric KL to the ANN, Σ ``base_spikes`` its total cost per image (the
    base run of :func:`measure_variants` alone, no variants)."""
    variants: list[list[None]] = [[None] for _ in net.sites]
    return measure_variants(net, images, T, variants, sub_batch=sub_batch, reuse=False, cost=cost)


# --- AdaFire ----------------------------------------------------------------------------------


def firing_pattern_search(
    net: SpikingNetwork, data: CalibrationData, neuron: Any, refit: Refit
) -> dict[str, Any]:
    """Choose φ per site (``neuron``: an :class:`~adacal.snn.neurons.AdaFireNeuron` or anything
    with its fields), in ``neuron.rounds`` rounds at most (see the module docstring).

    Sets ``site.phi`` and ``site.theta`` on every site to the returned round's choice. Returns
    the record: that round's chosen ``phi`` per site, its measured ``sensitivity``/``spikes``
    tables (rows: sites, columns: ``candidates``), the spike ``budget`` B, the solver's totals
    ``chosen_sensitivity``/``chosen_spikes``, the ``base_sensitivity`` of its reference, the
    site-steps of all round tables (``site_steps``) and of the last choice's end-to-end run
    (``evaluation_site_steps``), timings, and the rounds (:func:`rounds_record`). With one
    round every field but the added ones is today's single search.
    """
    start = time.perf_counter()
    candidates = list(range(int(neuron.phi_min), int(neuron.phi_init) + 1))
    thresholds = [{phi: refit(k, phi) for phi in candidates} for k in range(len(net.sites))]
    fit_s = time.perf_counter() - start
    images = data.images[: int(neuron.batch_size)]
    sub, cost = int(neuron.sub_batch), str(neuron.cost)

    def place(setting: Setting) -> None:
        for site, th, phi in zip(net.sites, thresholds, setting, strict=True):
            site.phi, site.theta = int(phi), th[int(phi)]

    def measure(reference: Setting) -> Measurements:
        place(reference)
        variants = [
            [None if phi == ref else {"phi": phi, "theta": th[phi]} for phi in candidates]
            for th, ref in zip(thresholds, reference, strict=True)
        ]
        return measure_variants(
            net,
            images,
            data.T,
            variants,
            sub_batch=sub,
            reuse=bool(neuron.reuse_prefix),
            progress=data.progress,
            cost=cost,
            description="firing-pattern search",
        )

    def score(setting: Setting) -> Measurements:
        place(setting)
        return end_to_end(net, images, data.T, sub, cost)

    reference: Setting = tuple(int(neuron.phi_init) for _ in net.sites)
    first = measure(reference)
    target = candidates.index(int(neuron.phi_target))
    budget = float(neuron.rho) * sum(row[target] for row in first.spikes)

    def solve(m: Measurements) -> tuple[Setting, Choice, float]:
        choice = solve_min_sum(m.sensitivity, m.spikes, budget, key="neuron.rho")
        return tuple(candidates[j] for j in choice.indices), choice, budget

    def within(r: Round) -> bool:
        return r.cost <= budget_limit(budget)

    result = iterate_rounds(reference, first, measure, score, solve, int(neuron.rounds))
    best = best_round(result.done, within, lambda r: r.kl)
    kept = result.done[best]
    place(kept.choice)
    phis = [int(phi) for phi in kept.choice]
    seconds = time.perf_counter() - start
    log.info(
        "AdaFire φ per site: %s (round %d of %d, %s; search %.1fs)",
        phis,
        best + 1,
        len(result.done),
        result.stop,
        seconds,
    )
    return {
        "phi": phis,
        "candidates": candidates,
        "sensitivity": kept.measured.sensitivity,
        "spikes": kept.measured.spikes,
        "budget": budget,
        "chosen_sensitivity": kept.solved.value,
        "cost": cost,
        "chosen_spikes": kept.solved.cost,
        "base_sensitivity": kept.measured.base_sensitivity,
        "site_steps": result.site_steps,
        "evaluation_site_steps": result.evaluation_site_steps,
        "images": kept.measured.images,
        "threshold_fit_s": fit_s,
        "seconds": seconds,
        **rounds_record(result, best, "phi", within),
    }
