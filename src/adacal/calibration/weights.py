"""SNN Calibration's weight calibration (advanced pipeline), generic over the graph.

For site l, the *region* is the part of the graph that computes the site's
input from the nearest sites upstream (or the image): a conv and its residual
add, a concatenation, ... The region is cut out of the fx graph as its own
module whose inputs are those boundary values. Its weights are tuned with SGD
so that the site's clip-floor surrogate, fed with the boundary sites' *SNN
rates*, matches the ANN activation (straight-through floor):

    min_W  mean_{n,h,w} Σ_c ( a_l(region_W(r_boundary)) − relu(z_l^ANN) )²
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from adacal.calibration.data import CalibrationData
from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork
from adacal.snn.simulate import site_rates


def site_region(net: SpikingNetwork, index: int) -> tuple[fx.GraphModule, list[fx.Node]]:
    """The subgraph computing site ``index``'s input from its boundary (upstream sites, inputs).

    Returns:
        (region module taking the boundary values in order, boundary nodes of the full graph).
    """
    site_node = net.site_graph_nodes()[index]
    site_nodes = set(net.site_graph_nodes())
    region: set[fx.Node] = set()
    boundary: set[fx.Node] = set()
    stack = [site_node.args[0]]
    while stack:
        node = stack.pop()
        if node in region or node in boundary:
            continue
        if node in site_nodes or node.op == "placeholder":
            boundary.add(node)
            continue
        region.add(node)
        stack.extend(node.all_input_nodes)
    order = {n: i for i, n in enumerate(net.net.graph.nodes)}
    bounds = sorted(boundary, key=order.__getitem__)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {b: graph.placeholder(f"in_{i}") for i, b in enumerate(bounds)}
    for node in sorted(region, key=order.__getitem__):
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[site_node.args[0]])
    return fx.GraphModule(net.net, graph), bounds


def region_weights(region: fx.GraphModule) -> list[nn.Parameter]:
    """Weights (not biases) of the conv/linear layers inside a region."""
    params = []
    for node in region.graph.nodes:
        if node.op == "call_module":
            module = region.get_submodule(str(node.target))
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and isinstance(
                module, (nn.Conv2d, nn.Linear, nn.Conv1d)
            ):
                params.append(weight)
    return list({id(p): p for p in params}.values())


@dataclass
class WeightCalibration:
    """Layer-wise weight calibration; the SNN Calibration paper uses lr 4e-5, 5000 iterations,
    batch 32 and 1024 samples with SGD (momentum 0.9) and a cosine schedule."""

    samples: int | None = 1024
    iterations: int = 5000
    lr: float = 4e-5
    batch_size: int = 32
    momentum: float = 0.9
    checks: int = 10

    def __post_init__(self) -> None:
        for name in ("lr", "batch_size", "checks"):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"calibration.steps.<WeightCalibration>.{name}",
                    f"must be positive, got {getattr(self, name)}",
                )
        if self.iterations < 0:
            raise ConfigError(
                "calibration.steps.<WeightCalibration>.iterations",
                f"must be >= 0, got {self.iterations}",
            )
        self.losses: list[float] = []  # the kept loss of each calibrated site

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> None:
        images, ann = data.subset(self.samples)
        net.set_steps(1)
        gen = torch.Generator().manual_seed(0)
        for k in data.track(range(len(net.sites)), "weight calibration"):
            region, bounds = site_region(net, k)
            params = region_weights(region)
            if not params:
                continue
            inputs = self._boundary_values(net, bounds, images, data)
            self._fit(net.sites[k], region, params, inputs, ann[k], gen)

    def _boundary_values(
        self, net: SpikingNetwork, bounds: list[fx.Node], images: Tensor, data: CalibrationData
    ) -> list[Tensor]:
        site_index = {str(n.target): i for i, n in enumerate(net.site_graph_nodes())}
        wanted = [site_index[str(b.target)] for b in bounds if b.op == "call_module"]
        rates = (
            site_rates(net, images, data.T, wanted, data.chunk, data.batch_size) if wanted else {}
        )
        return [
            images if b.op == "placeholder" else rates[site_index[str(b.target)]] for b in bounds
        ]

    def _fit(
        self,
        site: nn.Module,
        region: fx.GraphModule,
        params: list[nn.Parameter],
        inputs: list[Tensor],
        target: Tensor,
        gen: torch.Generator,
    ) -> None:
        """SGD on the straight-through surrogate loss; keeps the weights with the lowest loss
        on all samples, checked ``checks`` times (the STE gradient of a floor can raise the
        true loss, so calibration never leaves a layer worse than it found it)."""
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.iterations))
        mode, site.mode = site.mode, "surrogate"
        n = target.shape[0]
        every = max(1, self.iterations // max(1, self.checks))
        best_loss, best = self._full_loss(site, region, inputs, target), _copy(params)
        try:
            for it in range(1, self.iterations + 1):
                idx = torch.randperm(n, generator=gen)[: self.batch_size]
                with torch.enable_grad():
                    loss = _lp_loss(site(region(*[x[idx] for x in inputs])), target[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(
                        "weight calibration diverged; lower calibration.steps.<i>.lr"
                    )
                opt.step()
                sched.step()
                if it % every == 0 or it == self.iterations:
                    full = self._full_loss(site, region, inputs, target)
                    if full < best_loss:
                        best_loss, best = full, _copy(params)
        finally:
            site.mode = mode
            with torch.no_grad():
                for p, b in zip(params, best, strict=True):
                    p.copy_(b)
                    p.grad = None
        self.losses.append(best_loss)

    @torch.no_grad()
    def _full_loss(
        self, site: nn.Module, region: fx.GraphModule, inputs: list[Tensor], target: Tensor
    ) -> float:
        total = 0.0
        for start in range(0, target.shape[0], 256):
            sl = slice(start, start + 256)
            out = site(region(*[x[sl] for x in inputs]))
            total += _lp_loss(out, target[sl]).item() * out.shape[0]
        return total / target.shape[0]


def _lp_loss(out: Tensor, target: Tensor) -> Tensor:
    """SNN Calibration's loss: Σ over channels of the squared error, mean over the rest."""
    return (out - target).pow(2).sum(1).mean()


def _copy(params: list[nn.Parameter]) -> list[Tensor]:
    return [p.detach().clone() for p in params]
