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

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from adacal.calibration.data import CalibrationData
from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork
from adacal.snn.graph import Region, regions_in_order
from adacal.snn.simulate import site_rates

log = logging.getLogger("adacal")

OPTIMIZERS = ("adam", "sgd")


def region_nodes(net: SpikingNetwork, index: int) -> Region:
    """The nodes of the full graph that compute site ``index``'s input from its boundary (the
    nearest upstream sites and the graph's input), both in graph order."""
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
    return sorted(region, key=order.__getitem__), sorted(boundary, key=order.__getitem__)


def site_region(net: SpikingNetwork, index: int) -> tuple[fx.GraphModule, list[fx.Node]]:
    """The subgraph computing site ``index``'s input from its boundary (upstream sites, inputs).

    Returns:
        (region module taking the boundary values in order, boundary nodes of the full graph).
    """
    site_node = net.site_graph_nodes()[index]
    nodes, bounds = region_nodes(net, index)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {b: graph.placeholder(f"in_{i}") for i, b in enumerate(bounds)}
    for node in nodes:
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
    """Layer-wise weight calibration as in SNN Calibration's released code: Adam, a cosine
    schedule to 0, 5000 iterations, batch 32, 1024 samples, lr 1e-5 (the value its ImageNet
    scripts pass; the function's own default is 4e-5). ``optimizer="sgd"`` (with ``momentum``)
    is offered for comparison: the loss is a mean over positions, so SGD's step shrinks with
    the feature-map size while Adam's does not.

    With ``reuse_prefix`` (default) the network is simulated once, site after site
    (:func:`adacal.snn.graph.regions_in_order`): each region is tuned from the SNN rates of its
    already-calibrated upstream sites, kept on the fx frontier, and recomputed with its new
    weights before the next site runs; the cost is linear in depth. Without, the rates of each
    region's boundary are simulated again from the input (:func:`site_rates`; quadratic in
    depth; the reference, same weights up to float summation order).

    After a call, ``report`` holds each site's loss on all samples before and after (the
    weights with the lowest loss are kept, so after ≤ before): ``{"loss_before": [...],
    "loss_after": [...]}`` in site order (NaN for a site without weights in its region).
    """

    samples: int | None = 1024
    iterations: int = 5000
    lr: float = 1e-5
    batch_size: int = 32
    optimizer: str = "adam"
    momentum: float = 0.9
    checks: int = 10
    reuse_prefix: bool = True
    name: str = "weights"

    def __post_init__(self) -> None:
        key = "calibration.steps.<WeightCalibration>"
        for field_name in ("lr", "batch_size", "checks"):
            if not getattr(self, field_name) > 0:
                raise ConfigError(
                    f"{key}.{field_name}", f"must be positive, got {getattr(self, field_name)}"
                )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"{key}.optimizer", f"'{self.optimizer}' is not one of {sorted(OPTIMIZERS)}"
            )
        if self.iterations < 0:
            raise ConfigError(f"{key}.iterations", f"must be >= 0, got {self.iterations}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"{key}.samples", f"must be >= 1 (or null: all), got {self.samples}")
        self.losses: list[float] = []  # the kept loss of each calibrated site
        self.report: dict[str, list[float]] = {}

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> None:
        images, ann = data.subset(self.samples)
        self.losses = []
        self.report = {"loss_before": [], "loss_after": []}
        gen = torch.Generator().manual_seed(0)
        if self.reuse_prefix:
            regions = [region_nodes(net, k) for k in range(len(net.sites))]
            flow = regions_in_order(net, images, data.T, regions, data.batch_size)
        else:
            flow = ((k, None) for k in range(len(net.sites)))
        for k, inputs in data.track(flow, "weight calibration", total=len(net.sites)):
            region, bounds = site_region(net, k)
            params = region_weights(region)
            if not params:
                self.report["loss_before"].append(math.nan)
                self.report["loss_after"].append(math.nan)
                continue
            if inputs is None:
                inputs = self._boundary_values(net, bounds, images, data)
            before, after = self._fit(net.sites[k], region, params, inputs, ann[k], gen)
            self.report["loss_before"].append(before)
            self.report["loss_after"].append(after)
            log.info("weight calibration: site %d of %d, loss %.4g -> %.4g",
                     k + 1, len(net.sites), before, after)  # fmt: skip

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
    ) -> tuple[float, float]:
        """SGD on the straight-through surrogate loss; keeps the weights with the lowest loss
        on all samples, checked ``checks`` times (the STE gradient of a floor can raise the
        true loss, so calibration never leaves a layer worse than it found it). Returns the
        loss on all samples before and after."""
        opt = (
            torch.optim.Adam(params, lr=self.lr)
            if self.optimizer == "adam"
            else torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.iterations))
        mode, site.mode = site.mode, "surrogate"
        n = target.shape[0]
        every = max(1, self.iterations // max(1, self.checks))
        best_loss, best = self._full_loss(site, region, inputs, target), _copy(params)
        start_loss = best_loss
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
        return start_loss, best_loss

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
