"""The calibration recipe, in a fixed order (DESIGN.md §3 step 4):

1. thresholds for every site's φ;
2. the neuron chooses each site's φ (AdaFire's firing-pattern search; a fixed-φ
   neuron keeps its φ) and thresholds are refitted for it;
3. the pluggable calibration steps in the configured order (any callable
   ``step(net, data)``, one class + one YAML entry in ``conf/calibration/*.yaml``):
   bias, potential and weight calibration;
4. spike compression (SSC) when configured, then the calibration steps again.

Returns the record of the searches (chosen φ and ratios, measured tables, timings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from adacal.calibration.data import CalibrationData
from adacal.calibration.thresholds import fit_threshold
from adacal.snn.convert import SpikingNetwork

Step = Callable[[SpikingNetwork, CalibrationData], None]
Compression = Callable[[SpikingNetwork, CalibrationData], dict[str, Any]]


@dataclass
class ThresholdSpec:
    """How thresholds are fitted (``calibration.threshold`` in the config)."""

    method: str = "mse"
    granularity: str = "layer"
    percentile: float = 99.99
    candidates: int = 95


def fit_thresholds(net: SpikingNetwork, data: CalibrationData, spec: ThresholdSpec) -> None:
    """Fit every site's θ on the ANN activations, for the surrogate of the simulated neuron
    (T·φ levels)."""
    net.set_T(data.T)
    for site, act in zip(net.sites, data.ann, strict=True):
        site.theta = site_threshold(act, spec, data.T, site.phi).to(site.theta.dtype)


def site_threshold(act: Tensor, spec: ThresholdSpec, T: int, phi: int) -> Tensor:
    """θ for one site with burst size φ from its ANN activations [N, C, ...]: [1] or [C]."""
    return fit_threshold(
        act,
        spec.method,
        T,
        levels=T * phi,
        granularity=spec.granularity,
        percentile=spec.percentile,
        candidates=spec.candidates,
        phi=phi,
    )


def calibrate(
    net: SpikingNetwork,
    data: CalibrationData,
    spec: ThresholdSpec,
    steps: Sequence[Step] = (),
    neuron: Any = None,
    compression: Compression | None = None,
    before_compression: Callable[[SpikingNetwork], None] | None = None,
) -> dict[str, Any]:
    """Run the recipe on ``net`` in place (see the module docstring); returns the search record.

    Args:
        neuron: the neuron spec; its ``adapt(net, data, refit)`` chooses φ per site.
        compression: e.g. :class:`adacal.adaptive.compression.SpikeCompression`.
        before_compression: called with the calibrated network just before compression
            (e.g. to keep a copy for a with/without comparison).
    """
    record: dict[str, Any] = {}
    fit_thresholds(net, data, spec)
    if neuron is not None:

        def refit(k: int, phi: int) -> Tensor:
            return site_threshold(data.ann[k], spec, data.T, phi).to(net.sites[k].theta.dtype)

        found = neuron.adapt(net, data, refit)
        if found:
            record["adafire"] = found
    for step in steps:
        step(net, data)
    if compression is not None:
        if before_compression is not None:
            before_compression(net)
        record[getattr(compression, "name", "compression")] = compression(net, data)
        for step in steps:
            step(net, data)
    return record


@torch.no_grad()
def observed_max_thresholds(net: SpikingNetwork, x: Tensor) -> None:
    """θ = per-site max of the pre-activations on one batch x (quick fit: tests, benchmarks)."""
    net.set_mode("observe")
    net(x)
    for site in net.sites:
        site.theta = torch.cat(site.recorded).amax().clamp_min(1e-4).reshape(1)
        site.recorded = []
    net.set_mode("relu")
