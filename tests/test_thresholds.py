"""Threshold fitting against its definitions."""

from __future__ import annotations

import pytest
import torch

from adacal.calibration.thresholds import (
    fit_threshold,
    max_threshold,
    mse_threshold,
    percentile_threshold,
    surrogate_error,
)
from adacal.errors import ConfigError


def _z(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(64, 3, 6, 6, generator=gen) * torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)


def test_max_and_percentile_are_exact():
    z = _z()
    assert torch.equal(max_threshold(z), z.max().reshape(1))
    assert torch.equal(max_threshold(z, "channel"), z.transpose(0, 1).reshape(3, -1).amax(1))
    flat = torch.relu(z).flatten().sort().values
    assert percentile_threshold(z, 100.0).item() == flat[-1].item()
    k = int(torch.tensor(0.9 * flat.numel()).ceil().item())
    assert percentile_threshold(z, 90.0).item() == flat[k - 1].item()


@pytest.mark.parametrize("percentile", [0.0, -1.0, 100.5, 150.0])
def test_percentile_outside_range_is_refused(percentile):
    with pytest.raises(ConfigError) as info:
        fit_threshold(_z(), "percentile", T=8, percentile=percentile)
    assert info.value.key == "calibration.threshold.percentile"


def test_unknown_method_and_granularity_are_refused():
    with pytest.raises(ConfigError, match="calibration.threshold.method"):
        fit_threshold(_z(), "median", T=8)
    with pytest.raises(ConfigError, match="calibration.threshold.granularity"):
        fit_threshold(_z(), "max", T=8, granularity="pixel")


@pytest.mark.parametrize("granularity", ["layer", "channel"])
@pytest.mark.parametrize("T", [2, 8, 32])
def test_mse_is_the_best_candidate_and_beats_max(granularity, T):
    z = _z(1)
    rows = z.reshape(1, -1) if granularity == "layer" else z.transpose(0, 1).reshape(3, -1)
    theta = mse_threshold(z, T, granularity=granularity)
    top = max_threshold(z, granularity)
    err = surrogate_error(rows, theta, T, T)
    assert (err <= surrogate_error(rows, top, T, T) + 1e-6).all()
    grid = [surrogate_error(rows, top * (1 - 0.01 * i), T, T) for i in range(95)]
    assert torch.allclose(err, torch.stack(grid).amin(0))  # the minimum over the 95 candidates
    on_grid = ((1 - theta / top) / 0.01).round()
    assert torch.allclose(theta, top * (1 - 0.01 * on_grid), atol=1e-6)
