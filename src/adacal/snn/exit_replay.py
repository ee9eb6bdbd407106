"""Replayed early exits: what an exit policy would have done, read off one full T-step pass.

A sample's simulation does not depend on the other samples of its batch (the converted
network has no batch statistics), so the exit step of any exit policy η [T] can be read from
the per-step outputs y_t [T, B, K, ...] of a full T-step simulation. The running means use
the arithmetic of :func:`adacal.snn.early_exit.simulate_early_exit` (a float64 sum, divided
by t, cast back):

    ō_t = fl(Σ_{s≤t} y_s / t),      e = min({t < T : c(ō_t) > η_t} ∪ {T}),

and the sample's output is ō_e, its cost the counts of its first e steps. One full pass
therefore scores any number of exit policies (an IAT frontier) for the price of their
confidences. The replay equals a real early-exit run up to the floating-point differences
a convolution may show between batch sizes (measured: none on the thin ResNet-20 test set,
experiments/results/cifar10_resnet20_frontier_iat).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adacal.snn.early_exit import check_metric, confidence


@dataclass(frozen=True)
class ExitPoint:
    """One replayed exit policy: its ``name`` (a metric-key segment such as ``entropy_b0.2``),
    the confidence measure, a, b and the fitted thresholds η [T]."""

    name: str
    confidence: str
    a: float
    b: float
    eta: Tensor


def running_means(per_step: Tensor) -> Tensor:
    """ō_t for t = 1..T: per-step outputs [T, B, ...] -> [T, B, ...] (same dtype), computed
    as :func:`~adacal.snn.early_exit.simulate_early_exit` does (float64 sum / t, cast)."""
    T = per_step.shape[0]
    t = torch.arange(1, T + 1, device=per_step.device, dtype=torch.float64)
    total = per_step.double().cumsum(0)
    return (total / t.reshape(-1, *([1] * (per_step.dim() - 1)))).to(per_step.dtype)


def exit_index(means: Tensor, eta: Tensor, metric: str) -> Tensor:
    """0-based exit step e − 1 of every sample [B] (long): the first t < T with
    c(ō_t) > η_t, else T. ``means`` [T, B, ...] from :func:`running_means`, η [T]."""
    check_metric(metric)
    T, B = means.shape[0], means.shape[1]
    eta = torch.as_tensor(eta, dtype=torch.float32, device=means.device).reshape(-1)
    if eta.numel() != T:
        raise ValueError(f"need one exit threshold per step, got T={T}, {eta.numel()}")
    done = torch.ones(T, B, dtype=torch.bool, device=means.device)
    for t in range(T - 1):
        done[t] = confidence(means[t], metric) > eta[t]
    return done.to(torch.uint8).argmax(0)  # the first True (row T−1 is all True)


def at_exit(values: Tensor, index: Tensor) -> Tensor:
    """values [T, B, ...] at each sample's exit step ``index`` [B] -> [B, ...]."""
    return values[index, torch.arange(values.shape[1], device=values.device)]


def counts_to_exit(counts: Tensor, index: Tensor) -> Tensor:
    """Per-site totals over each sample's first e steps: counts [L, T, B] -> [L] (float64),
    Σ_b Σ_{t ≤ index_b} counts[l, t, b]."""
    cumulative = counts.double().cumsum(1)  # [L, T, B]
    gathered = cumulative.gather(1, index.reshape(1, 1, -1).expand(counts.shape[0], 1, -1))
    return gathered.sum((1, 2))


__all__ = ["ExitPoint", "at_exit", "counts_to_exit", "exit_index", "running_means"]
