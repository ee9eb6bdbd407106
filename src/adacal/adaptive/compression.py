"""Sensitivity Spike Compression (SSC, Adaptive Calibration).

On the calibrated network, for each site l and threshold ratio r in ``ratios``
(only site l changed, θ_l ← r·θ_l) the calibration batch gives the sensitivity
S_l(r) (symmetric KL between SNN and ANN softmax) and the spikes E_l(r) of site l.
The frontier solver picks

    r* = argmin_r Σ_l E_l(r_l)   subject to   Σ_l S_l(r_l) ≤ ρ · Σ_l S_l(1),

θ_l ← r*_l·θ_l at site l (site order, the authors' code applied the ratios to the
sites in reverse), and the calibration steps (bias correction) run again.

Rounds (``compression.rounds`` = N ≥ 1; N = 1 is the search above, unchanged), as AdaFire's
(:mod:`adacal.adaptive.search`): round r + 1 re-measures the tables around round r's choice
c (every other site at its chosen ratio) and solves again under the *same* budget
B = ρ · Σ_l S_l(1), computed once from round 1's tables: Σ_l S^c_l(r_l) ≤ B. Each round's
choice x is scored on the whole network on the same images (end-to-end KL S(x), total spikes
E(x)); it is within budget when the constraint holds with x as its own reference,
Σ_l S^x_l(x_l) = L · S(x) ≤ B, i.e. S(x) ≤ ρ · S(1) (``kl_target``). The round with the fewest
spikes among those within budget is kept (round 1 when none is; the earliest on ties), so it
is never worse than round 1 in the same sense as AdaFire's; a stable round (its choice is its
reference) is within budget by construction. (A first-order reading of the constraint,
S(c) + Σ_l (S^c_l(r_l) − S(c)) ≤ ρ·L·S(1) − (L − 1)·S(1) in every round, was tried instead:
the summed one-site drops overstate how much undoing a site helps, and on digits it
compressed further every round while the end-to-end KL grew about ×10 per round.)

More budgets from one search (``compression.frontier`` = [ρ_1, ρ_2, ...]): neither the round-1
tables nor the network they were measured on depend on ρ, so the tables are measured once and
the rounds are solved for every ρ_i as well (later rounds, if any, re-measure per ρ_i). The
network keeps the choice for ``rho``; each other budget's choice is recorded under
``frontier`` and :meth:`SpikeCompression.budget_networks` builds its network from a copy of the
network before compression (the recipe then runs the calibration steps on it, as on the main
one), so a budget point is the network a run with ``rho = ρ_i`` would build. An infeasible
ρ_i is recorded (``infeasible``, the solver's message) instead of stopping the run.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from adacal.adaptive.frontier import Choice, budget_limit, solve_min_cost
from adacal.adaptive.runner import Measurements, measure_variants
from adacal.adaptive.search import (
    Round,
    Setting,
    best_round,
    end_to_end,
    iterate_rounds,
    rounds_record,
)
from adacal.calibration.data import CalibrationData
from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork
from adacal.snn.neurons import COSTS
from adacal.validate import integer

log = logging.getLogger("adacal")


def _default_ratios() -> list[float]:
    return [1.0 + 0.5 * i for i in range(19)]  # 1.0, 1.5, ..., 10.0


@dataclass
class SpikeCompression:
    """SSC settings (``compression=ssc``): candidate ``ratios``, budget ratio ``rho`` on the
    summed sensitivity, ``batch_size`` calibration images measured in sub-batches of
    ``sub_batch``; ``reuse_prefix`` runs only the suffix after the changed site;
    ``compare_uncompressed`` makes the pipeline also evaluate the network before SSC;
    ``cost`` is what E counts: ``spikes`` (the paper's) or ``sops`` (spikes × fan-out);
    ``rounds`` (≥ 1; 1: one search) re-measures around the chosen ratios and solves again, at
    most that many times in all, under round 1's budget (module docstring); ``frontier``: more
    budget ratios solved on the same tables, each evaluated as a network of its own."""

    ratios: Sequence[float] = field(default_factory=_default_ratios)
    rho: float = 1.0
    batch_size: int = 128
    sub_batch: int = 32
    reuse_prefix: bool = True
    compare_uncompressed: bool = False
    cost: str = "spikes"
    rounds: int = 1
    frontier: Sequence[float] = ()
    name: str = "ssc"

    def __post_init__(self) -> None:
        self.ratios = [float(r) for r in self.ratios]
        if not self.ratios:
            raise ConfigError("compression.ratios", "the ratio list is empty; e.g. [1.0,1.5,2.0]")
        if any(not r > 0 for r in self.ratios):
            raise ConfigError("compression.ratios", f"ratios must be > 0, got {self.ratios}")
        if not float(self.rho) > 0:
            raise ConfigError("compression.rho", f"the budget ratio must be > 0, got {self.rho}")
        if self.cost not in COSTS:
            raise ConfigError("compression.cost", f"'{self.cost}' is not one of {COSTS}")
        if int(self.batch_size) < 1 or int(self.sub_batch) < 1:
            raise ConfigError(
                "compression.batch_size",
                f"batch_size and sub_batch must be >= 1, got {self.batch_size}, {self.sub_batch}",
            )
        integer("compression.rounds", self.rounds, 1)
        try:
            self.frontier = [float(r) for r in (self.frontier or ())]
        except (TypeError, ValueError):
            raise ConfigError(
                "compression.frontier", f"a list of budget ratios, got {self.frontier!r}"
            ) from None
        if any(not r > 0 for r in self.frontier):
            raise ConfigError(
                "compression.frontier", f"budget ratios must be > 0, got {self.frontier}"
            )

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> dict[str, Any]:
        """Choose and apply a threshold ratio per site (the kept round's); returns the record:
        that round's ``ratio`` per site, its ``sensitivity``/``spikes`` tables (rows: sites,
        columns: ``candidates``) and solver totals, the fixed ``budget`` B and ``kl_target``
        = B/L, its reference's ``base_sensitivity``/``base_spikes``, site-steps, timings, and
        the rounds (:func:`~adacal.adaptive.search.rounds_record`). With one round
        every field but the added ones is today's single search."""
        start = time.perf_counter()
        base = [site.theta.clone() for site in net.sites]
        images = data.images[: int(self.batch_size)]
        sub, cost = int(self.sub_batch), str(self.cost)
        L = len(net.sites)

        def place(setting: Setting) -> None:
            for site, theta, r in zip(net.sites, base, setting, strict=True):
                site.theta = theta * r

        def measure(reference: Setting) -> Measurements:
            place(reference)
            variants = [
                [None if r == ref else {"theta": theta * r} for r in self.ratios]
                for theta, ref in zip(base, reference, strict=True)
            ]
            return measure_variants(
                net,
                images,
                data.T,
                variants,
                sub_batch=sub,
                reuse=bool(self.reuse_prefix),
                progress=data.progress,
                cost=cost,
                description="spike compression",
            )

        def score(setting: Setting) -> Measurements:
            place(setting)
            return end_to_end(net, images, data.T, sub, cost)

        reference: Setting = tuple(1.0 for _ in net.sites)
        first = measure(reference)

        def search(rho: float) -> tuple[Any, int, float]:
            """(the rounds, the kept round's index, the budget B) for the budget ratio ρ."""
            budget = rho * L * first.base_sensitivity  # B = ρ·Σ_l S_l(1), fixed

            def solve(m: Measurements) -> tuple[Setting, Choice, float]:
                choice = solve_min_cost(m.sensitivity, m.spikes, budget, key="compression.rho")
                return tuple(self.ratios[j] for j in choice.indices), choice, budget

            def within(r: Round) -> bool:
                return kl_within(r.kl, L, budget)

            result = iterate_rounds(reference, first, measure, score, solve, int(self.rounds))
            return result, best_round(result.done, within, lambda r: r.cost), budget

        points = []
        for rho in dict.fromkeys(r for r in self.frontier if r != float(self.rho)):
            try:
                result, best, budget = search(rho)
            except ConfigError as err:
                log.warning("SSC frontier: rho=%g is infeasible (%s)", rho, err.detail)
                points.append({"name": budget_name(rho), "rho": rho, "infeasible": err.detail})
                continue
            kept = result.done[best]
            points.append(
                {
                    "name": budget_name(rho),
                    "rho": rho,
                    "ratio": list(kept.choice),
                    "budget": budget,
                    "chosen_sensitivity": kept.solved.value,
                    "chosen_spikes": kept.solved.cost,
                    "kl": kept.kl,
                    "spikes": kept.cost,
                    "returned_round": best + 1,
                    "stop": result.stop,
                }
            )
        result, best, budget = search(float(self.rho))
        kept = result.done[best]
        place(kept.choice)
        ratios = list(kept.choice)
        seconds = time.perf_counter() - start
        log.info(
            "SSC ratio per site: %s (round %d of %d, %s; search %.1fs)",
            ratios,
            best + 1,
            len(result.done),
            result.stop,
            seconds,
        )
        out = {
            "ratio": ratios,
            "candidates": list(self.ratios),
            "sensitivity": kept.measured.sensitivity,
            "spikes": kept.measured.spikes,
            "budget": budget,
            "chosen_sensitivity": kept.solved.value,
            "cost": self.cost,
            "chosen_spikes": kept.solved.cost,
            "base_sensitivity": kept.measured.base_sensitivity,
            "base_spikes": sum(kept.measured.base_spikes),
            "site_steps": result.site_steps,
            "evaluation_site_steps": result.evaluation_site_steps,
            "images": kept.measured.images,
            "seconds": seconds,
            "kl_target": budget / L,
            **rounds_record(result, best, "ratio", lambda r: kl_within(r.kl, L, budget)),
        }
        if points:
            out["frontier"] = points
        return out

    def budget_networks(
        self, before: SpikingNetwork, record: dict[str, Any]
    ) -> Iterator[tuple[str, SpikingNetwork]]:
        """(name, network) for every feasible budget of ``record["frontier"]``: a copy of
        ``before`` (the network just before compression) with θ_l ← r_l·θ_l. The calibration
        steps are the caller's (the recipe runs them, as after the main compression)."""
        for point in record.get("frontier", []):
            if "ratio" not in point:
                continue
            net = copy.deepcopy(before)
            for site, r in zip(net.sites, point["ratio"], strict=True):
                site.theta = site.theta * r
            yield point["name"], net


def budget_name(rho: float) -> str:
    """The name of a budget point: ``rho1.25`` (ρ as Python's shortest repr)."""
    return f"rho{float(rho)!r}"


def kl_within(kl: float, sites: int, budget: float) -> bool:
    """Whether a choice with end-to-end KL ``kl`` = S(x) meets the budget B on the summed
    one-site sensitivities measured around itself: Σ_l S^x_l(x_l) = L·S(x) ≤ B (``sites`` = L;
    the solver's tolerance, :func:`~adacal.adaptive.frontier.budget_limit`)."""
    return sites * kl <= budget_limit(budget)
