"""The calibration recipe, in a fixed order (DESIGN.md §3 step 4):

0. the network records the target T (``site.T``, what the surrogate and the ``shift``
   offset read; set here and nowhere else in a run);
1. thresholds for every site's φ;
2. a search, when given, chooses each site's φ (AdaFire's firing-pattern search,
   :class:`adacal.adaptive.search.FiringPatternSearch`, built by the composition root from
   the neuron's config; a fixed-φ neuron has none) and refits its thresholds;
3. the pluggable calibration steps in the configured order (any callable
   ``step(net, data)``, one class + one YAML entry in ``conf/calibration/*.yaml``):
   bias, potential and weight calibration;
4. spike compression (SSC) when configured, then the calibration steps again; a compression
   with more budgets (``compression.frontier``) also hands back one network per budget, each
   built from a copy of the network before compression and calibrated by the same steps.

Returns the record of the searches (chosen φ and ratios, measured tables, timings).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from adacal.calibration.data import CalibrationData
from adacal.calibration.thresholds import fit_threshold
from adacal.snn.convert import SpikingNetwork
from adacal.snn.simulate import preactivations

Step = Callable[[SpikingNetwork, CalibrationData], None]
Compression = Callable[[SpikingNetwork, CalibrationData], dict[str, Any]]
Refit = Callable[[int, int], Tensor]  # (site index k, φ) -> θ_k fitted for φ
Search = Callable[[SpikingNetwork, CalibrationData, Refit], dict[str, Any]]


@dataclass
class ThresholdSpec:
    """How thresholds are fitted (``calibration.threshold`` in the config)."""

    method: str = "mse"
    granularity: str = "layer"
    percentile: float = 99.99
    candidates: int = 95


def fit_thresholds(net: SpikingNetwork, data: CalibrationData, spec: ThresholdSpec) -> None:
    """Fit every site's θ on the ANN activations for ``data.T`` steps and each site's φ (the
    surrogate of the simulated neuron, T·φ levels). Only θ changes."""
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
    search: Search | None = None,
    compression: Compression | None = None,
    before_compression: Callable[[SpikingNetwork], None] | None = None,
    on_budget: Callable[[str, SpikingNetwork], None] | None = None,
) -> dict[str, Any]:
    """Run the recipe on ``net`` in place (see the module docstring); returns the search record.

    Args:
        search: ``search(net, data, refit)`` chooses φ per site after the first threshold
            fit (``refit(k, φ)`` is θ_k fitted for φ); its record is kept under its ``name``.
        compression: e.g. :class:`adacal.adaptive.compression.SpikeCompression`.
        before_compression: called with the calibrated network just before compression
            (e.g. to keep a copy for a with/without comparison).
        on_budget: called with (name, network) for each further budget of the compression
            (its ``budget_networks``), after the calibration steps ran on that network.
    """
    record: dict[str, Any] = {}
    net.set_T(data.T)  # the target T, recorded on the network: the surrogate and `shift` read it
    fit_thresholds(net, data, spec)
    if search is not None:

        def refit(k: int, phi: int) -> Tensor:
            return site_threshold(data.ann[k], spec, data.T, phi).to(net.sites[k].theta.dtype)

        found = search(net, data, refit)
        if found:
            record[getattr(search, "name", "search")] = found
    _run_steps(net, data, steps, record)
    if compression is not None:
        if before_compression is not None:
            before_compression(net)
        budgets = getattr(compression, "budget_networks", None)
        wanted = (
            on_budget is not None and budgets is not None and getattr(compression, "frontier", ())
        )
        before = _stateless_copy(net) if wanted else None
        found = compression(net, data)
        record[getattr(compression, "name", "compression")] = found
        _run_steps(net, data, steps, record)
        if before is not None and budgets is not None and on_budget is not None:
            for name, variant in budgets(before, found):
                _run_steps(variant, data, steps, {})
                variant.reset(1)  # the steps' last simulation state: not needed to evaluate
                on_budget(name, variant)
    return record


def _stateless_copy(net: SpikingNetwork) -> SpikingNetwork:
    """A deep copy of ``net`` without its simulation state (membrane potentials and counts of
    the last simulated batch, which can be larger than the weights)."""
    twin = copy.deepcopy(net)
    twin.reset(1)
    return twin


def _run_steps(
    net: SpikingNetwork, data: CalibrationData, steps: Sequence[Step], record: dict[str, Any]
) -> None:
    """Run the calibration steps in order; a step's ``report`` (e.g. weight calibration's loss
    per site before and after) is kept in the record under its ``name`` (the last run's)."""
    for step in steps:
        step(net, data)
        report = getattr(step, "report", None)
        if report:
            record[getattr(step, "name", type(step).__name__)] = dict(report)


@torch.no_grad()
def observed_max_thresholds(net: SpikingNetwork, x: Tensor) -> None:
    """θ = per-site max of the pre-activations on one batch x (quick fit: tests, benchmarks)."""
    z, _ = preactivations(net, x)
    for site, z_l in zip(net.sites, z, strict=True):
        site.theta = z_l.amax().clamp_min(1e-4).reshape(1)
