"""SNN Calibration's weight calibration (advanced pipeline), generic over the graph.

For site l, the *region* is the part of the graph that computes the site's
input from the nearest sites upstream (or the image): a conv and its residual
add, a concatenation, ... The region is cut out of the fx graph as its own
module whose inputs are those boundary values. Its weights are tuned with SGD
so that the site's clip-floor surrogate, fed with the boundary sites' *SNN
rates*, matches the ANN activation (straight-through floor):

    min_W  || a_l(region_W(r_boundary)) − relu(z_l^ANN) ||²
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from adacal.calibration.data import CalibrationData, site_rates
from adacal.snn.convert import SpikingNetwork


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
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.iterations))
        mode, site.mode = site.mode, "surrogate"
        n = target.shape[0]
        try:
            for _ in range(self.iterations):
                idx = torch.randperm(n, generator=gen)[: self.batch_size]
                with torch.enable_grad():
                    out = site(region(*[x[idx] for x in inputs]))
                    loss = (out - target[idx]).pow(2).sum() / len(idx)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                if not math.isfinite(loss.item()):
                    raise FloatingPointError("weight calibration diverged; lower calibration lr")
                opt.step()
                sched.step()
        finally:
            site.mode = mode
            for p in params:
                p.grad = None
