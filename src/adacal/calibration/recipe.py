"""The calibration recipe: thresholds first, then the pluggable steps in the configured order.

A step is any callable ``step(net, data)`` (one class + one YAML entry in
``conf/calibration/*.yaml``): bias, potential or weight calibration today,
the firing-pattern search and spike compression of Adaptive Calibration next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from adacal.calibration.data import CalibrationData
from adacal.calibration.thresholds import fit_threshold
from adacal.snn.convert import SpikingNetwork

Step = Callable[[SpikingNetwork, CalibrationData], None]


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
    net: SpikingNetwork, data: CalibrationData, spec: ThresholdSpec, steps: Sequence[Step] = ()
) -> None:
    """Fit thresholds, then run the steps in order (network modified in place)."""
    fit_thresholds(net, data, spec)
    for step in steps:
        step(net, data)


@torch.no_grad()
def observed_max_thresholds(net: SpikingNetwork, x: Tensor) -> None:
    """θ = per-site max of the pre-activations on one batch x (quick fit: tests, benchmarks)."""
    net.set_mode("observe")
    net(x)
    for site in net.sites:
        site.theta = torch.cat(site.recorded).amax().clamp_min(1e-4).reshape(1)
        site.recorded = []
    net.set_mode("relu")
