"""Run a :class:`SpikingNetwork` over T timesteps, in chunks of timesteps.

Tensors are time-major: a chunk of Tc steps of a batch of B is ``[Tc·B, ...]``
inside the network; the analog prefix runs once per chunk at batch B.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from adacal.snn.convert import SpikingNetwork


def chunks(T: int, chunk: int | None) -> Iterator[int]:
    """Sizes of the chunks that cover T steps: chunks(10, 4) -> 4, 4, 2."""
    size = T if not chunk or chunk <= 0 else min(chunk, T)
    done = 0
    while done < T:
        yield min(size, T - done)
        done += size


@torch.no_grad()
def simulate(net: SpikingNetwork, x: Tensor, T: int, chunk: int | None = None) -> Tensor:
    """Simulate T steps of direct-encoded input x [B, C, H, W].

    Returns:
        the per-step outputs of the analog last layer, [T, B, ...]. The rate-coded
        prediction after t steps is ``out[:t].mean(0)`` (see :func:`anytime_logits`).
    The sites' spike counts (``site.spike_counts``, [Tc, B] per chunk) are filled.
    """
    net.set_mode("spike")
    net.reset(x.shape[0])
    outs = []
    for steps in chunks(T, chunk):
        net.set_steps(steps)
        y = net(x)
        outs.append(y.reshape(steps, x.shape[0], *y.shape[1:]))
    net.set_steps(1)
    return torch.cat(outs)


def anytime_logits(per_step: Tensor) -> Tensor:
    """Mean output after each number of steps: [T, B, K] -> [T, B, K].

    Row t−1 is the mean of steps 1..t (the rate-coded output after t steps).
    """
    steps = torch.arange(1, per_step.shape[0] + 1, device=per_step.device, dtype=per_step.dtype)
    return per_step.cumsum(0) / steps.reshape(-1, *([1] * (per_step.dim() - 1)))


def spike_totals(net: SpikingNetwork) -> Tensor:
    """Spikes emitted per site per step per sample after :func:`simulate`: [L, T, B]."""
    return torch.stack([torch.cat(site.spike_counts) for site in net.sites])


def sop_totals(net: SpikingNetwork) -> Tensor:
    """Synaptic events per site per step per sample after :func:`simulate`: [L, T, B].

    Needs fan-out maps on the sites (:func:`adacal.metrics.energy.attach_fanout`).
    """
    return torch.stack([torch.cat(site.sop_counts) for site in net.sites])
