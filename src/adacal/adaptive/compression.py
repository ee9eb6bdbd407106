"""Sensitivity Spike Compression (SSC, Adaptive Calibration).

On the calibrated network, for each site l and threshold ratio r in ``ratios``
(only site l changed, θ_l ← r·θ_l) the calibration batch gives the sensitivity
S_l(r) (symmetric KL between SNN and ANN softmax) and the spikes E_l(r) of site l.
The frontier solver picks

    r* = argmin_r Σ_l E_l(r_l)   subject to   Σ_l S_l(r_l) ≤ ρ · Σ_l S_l(1),

θ_l ← r*_l·θ_l at site l (site order, the authors' code applied the ratios to the
sites in reverse), and the calibration steps (bias correction) run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adacal.adaptive.frontier import solve_min_cost
from adacal.adaptive.runner import measure_variants
from adacal.calibration.data import CalibrationData
from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork
from adacal.snn.neurons import COSTS

log = logging.getLogger("adacal")


def _default_ratios() -> list[float]:
    return [1.0 + 0.5 * i for i in range(19)]  # 1.0, 1.5, ..., 10.0


@dataclass
class SpikeCompression:
    """SSC settings (``compression=ssc``): candidate ``ratios``, budget ratio ``rho`` on the
    summed sensitivity, ``batch_size`` calibration images measured in sub-batches of
    ``sub_batch``; ``reuse_prefix`` runs only the suffix after the changed site;
    ``compare_uncompressed`` makes the pipeline also evaluate the network before SSC;
    ``cost`` is what E counts: ``spikes`` (the paper's) or ``sops`` (spikes × fan-out)."""

    ratios: Sequence[float] = field(default_factory=_default_ratios)
    rho: float = 1.0
    batch_size: int = 128
    sub_batch: int = 32
    reuse_prefix: bool = True
    compare_uncompressed: bool = False
    cost: str = "spikes"
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

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> dict[str, Any]:
        """Choose and apply a threshold ratio per site; returns the search record."""
        start = time.perf_counter()
        base = [site.theta.clone() for site in net.sites]
        variants = [
            [None if r == 1.0 else {"theta": theta * r} for r in self.ratios] for theta in base
        ]
        m = measure_variants(
            net,
            data.images[: int(self.batch_size)],
            data.T,
            variants,
            sub_batch=int(self.sub_batch),
            reuse=bool(self.reuse_prefix),
            progress=data.progress,
            cost=str(self.cost),
            description="spike compression",
        )
        budget = float(self.rho) * len(net.sites) * m.base_sensitivity
        choice = solve_min_cost(m.sensitivity, m.spikes, budget, key="compression.rho")
        ratios = [self.ratios[j] for j in choice.indices]
        for site, theta, r in zip(net.sites, base, ratios, strict=True):
            site.theta = theta * r
        seconds = time.perf_counter() - start
        log.info("SSC ratio per site: %s (search %.1fs)", ratios, seconds)
        return {
            "ratio": ratios,
            "candidates": list(self.ratios),
            "sensitivity": m.sensitivity,
            "spikes": m.spikes,
            "budget": budget,
            "chosen_sensitivity": choice.value,
            "cost": self.cost,
            "chosen_spikes": choice.cost,
            "base_sensitivity": m.base_sensitivity,
            "base_spikes": sum(m.base_spikes),
            "site_steps": m.site_steps,
            "images": m.images,
            "seconds": seconds,
        }
