"""What every calibration step sees: the calibration images, T, and the ANN's reference activations.

Also the two measurements every step is built from: the ANN activations of all
sites (recorded once, before any step changes the network) and the SNN output
rates of chosen sites, simulated only up to the last site needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from rich.progress import track
from torch import Tensor

from adacal.snn.convert import SpikingNetwork
from adacal.snn.simulate import chunks


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the sites of interest have run."""


@torch.no_grad()
def record_preactivations(net: SpikingNetwork, images: Tensor, batch_size: int) -> list[Tensor]:
    """Pre-activations z of every site on ``images`` [N, C, H, W] (ANN mode).

    Returns:
        one tensor [N, C, ...] per site, in site order.
    """
    net.set_steps(1)
    net.set_mode("observe")
    for site in net.sites:
        site.recorded = []
    for batch in images.split(batch_size):
        net(batch)
    out = [torch.cat(site.recorded) for site in net.sites]
    for site in net.sites:
        site.recorded = []
    net.set_mode("relu")
    return out


@torch.no_grad()
def site_rates(
    net: SpikingNetwork,
    images: Tensor,
    T: int,
    sites: list[int],
    chunk: int | None = None,
    batch_size: int = 128,
) -> dict[int, Tensor]:
    """Simulate T steps and return the output rate (Σ_t s_t / T) of each site in ``sites``.

    The forward pass stops after the last requested site, so calibrating site l
    costs a simulation of the network up to l only.

    Returns:
        {site index: rate [N, C, ...]}.
    """
    results: dict[int, list[Tensor]] = {i: [] for i in sites}
    for batch in images.split(batch_size):
        sums = _OutputSums(batch.shape[0])
        handles = [net.sites[i].register_forward_hook(sums.hook(i)) for i in sites]
        handles.append(net.sites[max(sites)].register_forward_hook(_stop))
        try:
            net.set_mode("spike")
            net.reset(batch.shape[0])
            for steps in chunks(T, chunk):
                net.set_steps(steps)
                with contextlib.suppress(_StopForward):
                    net(batch)
        finally:
            for h in handles:
                h.remove()
            net.set_steps(1)
        for i in sites:
            results[i].append(sums.totals[i] / T)
    return {i: torch.cat(v) for i, v in results.items()}


def _stop(module: torch.nn.Module, inputs: object, output: Tensor) -> None:
    raise _StopForward


class _OutputSums:
    """Forward hooks that add up a site's output over the timesteps: {site: [B, C, ...]}."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.totals: dict[int, Tensor] = {}

    def hook(self, index: int):
        def add(module: torch.nn.Module, inputs: object, output: Tensor) -> None:
            steps = output.shape[0] // self.batch_size
            total = output.reshape(steps, self.batch_size, *output.shape[1:]).sum(0)
            previous = self.totals.get(index)
            self.totals[index] = total if previous is None else previous + total

        return add


@dataclass
class CalibrationData:
    """Inputs shared by the calibration steps of one conversion.

    Attributes:
        images: calibration images [N, C, H, W] (test-time transform).
        T: timesteps the SNN is calibrated for.
        chunk: timesteps simulated per forward pass.
        batch_size: images per simulated batch.
        ann: ANN activations relu(z) per site, [N, C, ...] each, recorded from the
            unmodified converted network (BN folded) before any step runs.
        progress: show a progress bar per step.
    """

    images: Tensor
    T: int
    chunk: int | None = 8
    batch_size: int = 128
    ann: list[Tensor] = field(default_factory=list)
    progress: bool = True

    @classmethod
    def from_network(cls, net: SpikingNetwork, images: Tensor, T: int, **kw) -> CalibrationData:
        data = cls(images=images, T=T, **kw)
        pre = record_preactivations(net, images, data.batch_size)
        data.ann = [torch.relu(z) for z in pre]
        return data

    def subset(self, n: int | None) -> tuple[Tensor, list[Tensor]]:
        """The first n calibration images and their ANN activations (all when n is None)."""
        n = self.images.shape[0] if n is None else min(n, self.images.shape[0])
        return self.images[:n], [a[:n] for a in self.ann]

    def track(self, items: Iterable, description: str) -> Iterator:
        """Iterate with a progress bar (rich) when ``progress`` is on."""
        seq = list(items)
        return iter(track(seq, description=description, disable=not self.progress, transient=True))
