"""AdaFire's layer-wise firing-pattern search (Adaptive Calibration, §AdaFire).

All sites start at φ_init with thresholds fitted for φ_init. For each site l and
each φ ∈ [φ_min, φ_init] (only site l changed, its threshold refitted for φ) the
calibration batch gives the sensitivity S_l(φ) (symmetric KL between SNN and ANN
softmax) and the spikes E_l(φ) of site l. The frontier solver then picks

    φ* = argmin_φ Σ_l S_l(φ_l)   subject to   Σ_l E_l(φ_l) ≤ ρ · Σ_l E_l(φ_target),

and every site gets φ*_l with its threshold fitted for φ*_l. (Bias correction
follows in the recipe.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from adacal.adaptive.frontier import solve_min_sum
from adacal.adaptive.runner import measure_variants
from adacal.calibration.data import CalibrationData
from adacal.snn.convert import SpikingNetwork
from adacal.snn.neurons import AdaFireNeuron, IFNeuron

log = logging.getLogger("adacal")

Refit = Callable[[int, int], Tensor]  # (site index, φ) -> θ fitted for φ


class Search(Protocol):
    """A per-site choice made after the first threshold fit: ``search(net, data, refit)`` sets
    ``site.phi`` / ``site.theta`` and returns its record (stored under ``name``)."""

    name: str

    def __call__(self, net: SpikingNetwork, data: CalibrationData, refit: Refit) -> dict: ...


@dataclass(frozen=True)
class FiringPatternSearch:
    """AdaFire's search. Its settings (φ range, target, ρ, images, cost) are the validated
    fields of :class:`~adacal.snn.neurons.AdaFireNeuron` (``conf/neuron/adafire.yaml``), held
    as they are rather than copied: the neuron spec configures, this class searches."""

    settings: AdaFireNeuron
    name: str = "adafire"

    def __call__(self, net: SpikingNetwork, data: CalibrationData, refit: Refit) -> dict:
        return firing_pattern_search(net, data, self.settings, refit)


def search_for(neuron: IFNeuron) -> Search | None:
    """The search a neuron spec asks for: :class:`FiringPatternSearch` for AdaFire, None for a
    neuron with a fixed φ (IF, burst)."""
    return FiringPatternSearch(neuron) if isinstance(neuron, AdaFireNeuron) else None


def firing_pattern_search(
    net: SpikingNetwork, data: CalibrationData, neuron: Any, refit: Refit
) -> dict[str, Any]:
    """Choose φ per site (``neuron``: a :class:`FiringPatternSearch` or anything with its
    fields, e.g. an :class:`~adacal.snn.neurons.AdaFireNeuron`).

    Sets ``site.phi`` and ``site.theta`` on every site. Returns the record: chosen
    ``phi`` per site, the measured ``sensitivity``/``spikes`` tables (rows: sites,
    columns: ``candidates``), the spike ``budget``, timings and simulated site-steps.
    """
    start = time.perf_counter()
    candidates = list(range(int(neuron.phi_min), int(neuron.phi_init) + 1))
    base = int(neuron.phi_init)
    thresholds = [{phi: refit(k, phi) for phi in candidates} for k in range(len(net.sites))]
    for site, theta in zip(net.sites, thresholds, strict=True):
        site.phi, site.theta = base, theta[base]
    fit_s = time.perf_counter() - start
    variants = [
        [None if phi == base else {"phi": phi, "theta": th[phi]} for phi in candidates]
        for th in thresholds
    ]
    images = data.images[: int(neuron.batch_size)]
    m = measure_variants(
        net,
        images,
        data.T,
        variants,
        sub_batch=int(neuron.sub_batch),
        reuse=bool(neuron.reuse_prefix),
        progress=data.progress,
        cost=str(neuron.cost),
        description="firing-pattern search",
    )
    target = candidates.index(int(neuron.phi_target))
    budget = float(neuron.rho) * sum(row[target] for row in m.spikes)
    choice = solve_min_sum(m.sensitivity, m.spikes, budget, key="neuron.rho")
    phis = [candidates[j] for j in choice.indices]
    for k, (site, phi) in enumerate(zip(net.sites, phis, strict=True)):
        site.phi, site.theta = phi, thresholds[k][phi]
    seconds = time.perf_counter() - start
    log.info("AdaFire φ per site: %s (search %.1fs)", phis, seconds)
    return {
        "phi": phis,
        "candidates": candidates,
        "sensitivity": m.sensitivity,
        "spikes": m.spikes,
        "budget": budget,
        "chosen_sensitivity": choice.value,
        "cost": str(neuron.cost),
        "chosen_spikes": choice.cost,
        "base_sensitivity": m.base_sensitivity,
        "site_steps": m.site_steps,
        "images": m.images,
        "threshold_fit_s": fit_s,
        "seconds": seconds,
    }
