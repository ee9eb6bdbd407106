"""Threshold fitting on the ANN's pre-activations (max, percentile, MSE grid search).

All fits see the pre-activation z of one site over the calibration images,
[N, C, ...]; the target is the ANN activation relu(z). ``granularity`` is
``"layer"`` (one θ, returned as [1]) or ``"channel"`` (θ per channel, [C]).

A burst site (up to φ spikes per step) covers [0, φ·θ] with φ·T levels, so each
method fits the ceiling φ·θ the way it fits θ of an IF site (φ = 1) and returns
θ = ceiling/φ: max gives φ·θ = max z, the MSE grid runs over φ·θ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adacal.errors import ConfigError
from adacal.snn.neurons import surrogate_floor

METHODS = ("max", "percentile", "mse")
GRANULARITIES = ("layer", "channel")
MIN_THRESHOLD = 1e-4
MSE_MAX_ELEMENTS = 1 << 20  # the grid search sees at most this many values (seeded subsample)


def _rows(z: Tensor, granularity: str) -> Tensor:
    """[N, C, ...] -> [R, M] rows that share one threshold (R = 1 or C)."""
    if granularity == "layer":
        return z.reshape(1, -1)
    return z.transpose(0, 1).reshape(z.shape[1], -1)


def max_threshold(z: Tensor, granularity: str = "layer", phi: int = 1) -> Tensor:
    """θ = max z / φ (per layer [1] or per channel [C])."""
    return (_rows(z, granularity).amax(1) / phi).clamp_min(MIN_THRESHOLD)


def percentile_threshold(
    z: Tensor, percentile: float, granularity: str = "layer", phi: int = 1
) -> Tensor:
    """θ = the given percentile (0, 100] of relu(z), exact (k-th smallest value), over φ."""
    if not 0 < percentile <= 100:
        raise ConfigError(
            "calibration.threshold.percentile",
            f"{percentile} is outside (0, 100]; use e.g. 99.99",
        )
    rows = _rows(torch.relu(z), granularity)
    k = max(1, math.ceil(percentile / 100 * rows.shape[1]))
    return (rows.kthvalue(k, dim=1).values / phi).clamp_min(MIN_THRESHOLD)


def surrogate_error(rows: Tensor, theta: Tensor, T: int, levels: int) -> Tensor:
    """Σ (relu(z) − a(z; θ))² per row of z [R, M], a = clip-floor surrogate with v0 = θ/2: [R]."""
    th = theta.reshape(-1, 1)
    a = surrogate_floor(rows, th, T, th / 2, levels)
    return (a - torch.relu(rows)).pow(2).sum(1)


def _subsample(rows: Tensor, max_elements: int) -> Tensor:
    """At most ``max_elements`` values of [R, M] rows: a fixed random subset of columns."""
    if rows.numel() <= max_elements:
        return rows
    keep = max(1, max_elements // rows.shape[0])
    gen = torch.Generator().manual_seed(0)
    cols = torch.randperm(rows.shape[1], generator=gen)[:keep].to(rows.device)
    return rows[:, cols]


def mse_threshold(
    z: Tensor,
    T: int,
    levels: int | None = None,
    granularity: str = "layer",
    candidates: int = 95,
    max_elements: int = MSE_MAX_ELEMENTS,
    phi: int = 1,
) -> Tensor:
    """Grid search θ_i = max·(1 − 0.01 i)/φ, i = 0..candidates−1, minimising the surrogate MSE.

    The maximum is taken over all values; the error over at most ``max_elements``
    of them (a fixed random subset), which keeps the search fast on large layers.

    Args:
        z: pre-activations [N, C, ...].
        T: timesteps the surrogate is fitted for.
        levels: spikes a neuron may emit over T steps; defaults to T·φ.
        phi: most spikes per step (the grid runs over the ceiling φ·θ).
    Returns:
        θ of shape [1] (layer) or [C] (channel).
    """
    levels = T * phi if levels is None else levels
    top = max_threshold(z, granularity, phi)
    rows = _subsample(_rows(z, granularity), max_elements)
    if rows.shape[0] == 1:  # values ≤ 0 have error 0 for every θ: score only the positive ones
        rows = rows[rows > 0].reshape(1, -1)
    target = torch.relu(rows)
    best_err = torch.full_like(top, float("inf"))
    best = top.clone()
    for i in range(candidates):
        theta = (top * (1 - 0.01 * i)).clamp_min(MIN_THRESHOLD)
        th = theta.reshape(-1, 1)
        # surrogate_floor with v0 = θ/2, without the straight-through bookkeeping
        a = torch.floor(rows * (T / th) + 0.5).clamp_(0, levels).mul_(th / T)
        err = a.sub_(target).pow_(2).sum(1)
        better = err < best_err
        best = torch.where(better, theta, best)
        best_err = torch.where(better, err, best_err)
    return best


def fit_threshold(
    z: Tensor,
    method: str,
    T: int,
    levels: int | None = None,
    granularity: str = "layer",
    percentile: float = 99.99,
    candidates: int = 95,
    phi: int = 1,
) -> Tensor:
    """Dispatch on ``method`` (``max``, ``percentile``, ``mse``) for a site with burst size φ."""
    if granularity not in GRANULARITIES:
        raise ConfigError(
            "calibration.threshold.granularity", f"'{granularity}' is not one of {GRANULARITIES}"
        )
    if method == "max":
        return max_threshold(z, granularity, phi)
    if method == "percentile":
        return percentile_threshold(z, percentile, granularity, phi)
    if method == "mse":
        return mse_threshold(z, T, levels, granularity, candidates, phi=phi)
    raise ConfigError("calibration.threshold.method", f"'{method}' is not one of {METHODS}")
