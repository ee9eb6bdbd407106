"""Run a :class:`SpikingNetwork` over T timesteps, in chunks of timesteps: the outputs, the
per-site rates and the ANN activations (one implementation each; calibration, the analysis
and the notebooks all read them from here).

Tensors are time-major: a chunk of Tc steps of a batch of B is ``[Tc·B, ...]`` inside the
network; the analog prefix runs once per chunk at batch B.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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
    outs = []
    with net.running("spike", batch_size=x.shape[0]):
        for steps in chunks(T, chunk):
            net.set_steps(steps)
            y = net(x)
            outs.append(y.reshape(steps, x.shape[0], *y.shape[1:]))
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


def message_totals(net: SpikingNetwork) -> Tensor:
    """Messages per site per step per sample after :func:`simulate`: [L, T, B].

    A message is a non-zero burst reaching one synapse: Σ_i 1[n_i > 0]·f_i per step, where
    :func:`sop_totals` counts Σ_i n_i·f_i (equal for IF sites). Needs fan-out maps.
    """
    return torch.stack([torch.cat(site.message_counts) for site in net.sites])


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the sites of interest have run."""


def _stop(module: torch.nn.Module, inputs: object, output: Tensor) -> None:
    raise _StopForward


@torch.no_grad()
def _rate_sums(
    net: SpikingNetwork, x: Tensor, T: int, sites: Sequence[int], chunk: int | None, stop: bool
) -> tuple[dict[int, Tensor], Tensor | None]:
    """Σ_t s_l(t) [B, C, ...] of each site l in ``sites`` over T steps of x [B, ...], and the
    last layer's Σ_t y(t) (None when ``stop`` ends each pass after the last site asked for)."""
    B = x.shape[0]
    sums: dict[int, Tensor] = {}

    def hook(index: int):
        def add(module: torch.nn.Module, inputs: object, out: Tensor) -> None:
            total = out.reshape(out.shape[0] // B, B, *out.shape[1:]).sum(0)
            sums[index] = total if index not in sums else sums[index] + total

        return add

    handles = [net.sites[i].register_forward_hook(hook(i)) for i in sites]
    if stop:
        handles.append(net.sites[max(sites)].register_forward_hook(_stop))
    out_sum: Tensor | None = None
    try:
        with net.running("spike", batch_size=B):
            for steps in chunks(T, chunk):
                net.set_steps(steps)
                with contextlib.suppress(_StopForward):
                    y = net(x)
                    y = y.reshape(steps, B, *y.shape[1:]).sum(0)
                    out_sum = y if out_sum is None else out_sum + y
    finally:
        for h in handles:
            h.remove()
    return sums, out_sum


def site_rates(
    net: SpikingNetwork,
    images: Tensor,
    T: int,
    sites: list[int],
    chunk: int | None = None,
    batch_size: int = 128,
) -> dict[int, Tensor]:
    """Simulate T steps and return the output rate r_l = Σ_t s_l(t) / T of each site in
    ``sites``: {l: [N, C, ...]}. Each forward pass stops after the last site asked for, so the
    rates of site l cost a simulation of the network up to l only."""
    results: dict[int, list[Tensor]] = {i: [] for i in sites}
    for batch in images.split(batch_size):
        sums, _ = _rate_sums(net, batch, T, sites, chunk, stop=True)
        for i in sites:
            results[i].append(sums[i] / T)
    return {i: torch.cat(v) for i, v in results.items()}


def rates_and_output(
    net: SpikingNetwork, images: Tensor, T: int, chunk: int | None = 8
) -> tuple[list[Tensor], Tensor]:
    """Simulate T steps of ``images`` [B, C, H, W] (one batch, direct encoding).

    Returns:
        (r_l [B, C, ...] for every site l, ȳ [B, K]): the rate-coded site outputs
        (1/T) Σ_t s_l(t) and the mean of the last layer's per-step outputs. The state is
        released afterwards.
    """
    sums, out_sum = _rate_sums(net, images, T, range(len(net.sites)), chunk, stop=False)
    net.reset(1)
    assert out_sum is not None
    return [sums[k] / T for k in range(len(net.sites))], out_sum / T


@torch.no_grad()
def preactivations(
    net: SpikingNetwork, images: Tensor, batch_size: int | None = None
) -> tuple[list[Tensor], Tensor]:
    """The ANN (the converted network in ``observe`` mode, BN folded) on ``images`` [N, ...].

    Returns:
        (z_l [N, C, ...] for every site l in site order, the output [N, K]); the ANN
        activation of site l is relu(z_l). Runs in batches of ``batch_size`` (None: one).
    """
    outs = []
    for site in net.sites:
        site.recorded = []
    try:
        with net.running("observe"):
            for batch in images.split(batch_size or images.shape[0]):
                outs.append(net(batch))
        z = [torch.cat(site.recorded) for site in net.sites]
    finally:
        for site in net.sites:
            site.recorded = []
    return z, torch.cat(outs)


__all__ = [
    "anytime_logits",
    "chunks",
    "message_totals",
    "preactivations",
    "rates_and_output",
    "simulate",
    "site_rates",
    "sop_totals",
    "spike_totals",
]
