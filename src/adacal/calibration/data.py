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


@torch.no_grad()
def rates_in_order(
    net: SpikingNetwork, images: Tensor, T: int, batch_size: int = 128
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(k, rate_k)`` for k = 0 .. L−1, rate_k [N, C, ...] = Σ_t s_t / T of site k, where
    every earlier site runs as it is *after* the caller's change between yields.

    The sequential calibration steps (bias, potential) correct site k from rate_k. Instead of
    re-simulating the network up to site k for every k (Σ_k depth_k site evaluations,
    quadratic in depth), the graph runs once, node by node: per batch of images the values
    still needed downstream (the fx frontier, all T steps as one chunk) are kept, and after
    the yield site k runs with its corrected parameters. Same numbers as :func:`site_rates`
    (up to float summation order); memory ∝ N·T·(frontier size).
    """
    from adacal.adaptive.runner import GraphRunner  # the fx runner the searches use

    runner = GraphRunner(net)
    runner.steps = T
    batches = list(images.split(batch_size))
    envs: list[dict] = [{} for _ in batches]
    nodes = net.site_graph_nodes()
    pos = 0
    net.set_mode("spike")
    net.set_steps(T)
    try:
        for k, site in enumerate(net.sites):
            here = runner.site_position[k]
            rates = []
            for env, x in zip(envs, batches, strict=True):
                net.reset(x.shape[0])
                runner.run(env, pos, here, x)
                (z,) = torch.fx.node.map_arg(nodes[k].args, lambda n, env=env: env[n])
                out = site(z)
                rates.append(out.reshape(T, x.shape[0], *out.shape[1:]).mean(0))
            net.set_mode("relu")
            net.set_steps(1)
            yield k, torch.cat(rates)  # the caller corrects site k
            net.set_mode("spike")
            net.set_steps(T)
            for env, x in zip(envs, batches, strict=True):
                net.reset(x.shape[0])
                runner.run(env, here, here + 1, x)
            pos = here + 1
    finally:
        net.reset(1)
        net.set_steps(1)
        net.set_mode("relu")


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

    def track(self, items: Iterable, description: str, total: int | None = None) -> Iterator:
        """Iterate with a progress bar (rich) when ``progress`` is on."""
        seq = items if total is not None else list(items)  # a generator stays lazy with a total
        size = total if total is not None else len(seq)  # type: ignore[arg-type]
        return iter(
            track(seq, total=size, description=description, disable=not self.progress,
                  transient=True)
        )  # fmt: skip
