"""Node-by-node simulation of a :class:`SpikingNetwork`'s fx graph, keeping the frontier.

A sequential procedure that changes one site at a time (calibration's bias and potential
steps, the searches' one-site variants) needs, at site k, the network's values just before
k with every earlier site as it is *now*. Re-simulating from the input for every k costs
Σ_k depth_k site evaluations (quadratic in depth). Running the graph once, node by node,
and keeping only the values still needed downstream (the *frontier*) makes it linear: the
frontier after node i holds every value produced at or before i that a later node reads.

All T steps of a batch run as one chunk ([T·B, ...] tensors), so the frontier holds each
site's whole input history and no neuron state has to be copied between variants.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, fx

from adacal.snn.convert import SpikingNetwork
from adacal.snn.site import Site

# In-place ops would write into values the frontier shares between variants: run them out of place.
_OUT_OF_PLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}


class GraphRunner:
    """Executes the fx graph of a :class:`SpikingNetwork` node by node.

    ``run(env, start, stop, x)`` executes ``nodes[start:stop]`` on the frontier ``env``
    ({node: value}); ``site_position[k]`` is the node index of site k. ``site_steps`` counts
    site evaluations × the ``steps`` each one simulates (the searches' cost measure).
    """

    def __init__(self, net: SpikingNetwork, steps: int = 1) -> None:
        self.net = net
        self.gm = net.net
        self.nodes: list[fx.Node] = list(self.gm.graph.nodes)
        position = {n: i for i, n in enumerate(self.nodes)}
        self.last_use = {
            n: max((position[u] for u in n.users), default=i) for i, n in enumerate(self.nodes)
        }
        self.site_nodes = net.site_graph_nodes()
        self.site_position = [position[n] for n in self.site_nodes]
        self.modules = dict(self.gm.named_modules())
        self.site_steps = 0
        self.steps = steps
        self.protected: set[fx.Node] = set()  # values run() keeps past their last use

    def run(self, env: dict[fx.Node, Any], start: int, stop: int, x: Tensor) -> Any:
        """Execute nodes[start:stop] on ``env`` (modified in place; dead values dropped).

        Returns the graph's output when ``stop`` reaches the output node, else None.
        """
        for i in range(start, stop):
            node = self.nodes[i]
            if node.op == "output":
                return fx.node.map_arg(node.args[0], lambda n: env[n])
            env[node] = self.execute(node, env, x)
            for arg in node.all_input_nodes:
                if self.last_use[arg] <= i and arg not in self.protected:
                    env.pop(arg, None)
        return None

    def site_input(self, env: dict[fx.Node, Any], k: int) -> Tensor:
        """The pre-activation z of site k, read from a frontier that reached its node."""
        (z,) = fx.node.map_arg(self.site_nodes[k].args, lambda n: env[n])
        return z

    def execute(self, node: fx.Node, env: dict[fx.Node, Any], x: Tensor) -> Any:
        """The value of one node from its inputs in ``env`` (``x``: the graph's input)."""
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "placeholder":
            return x
        if node.op == "get_attr":
            obj: Any = self.gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return obj
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            if isinstance(module, Site):
                self.site_steps += self.steps
            return module(*args, **kwargs)
        if node.op == "call_function":
            return _OUT_OF_PLACE.get(node.target, node.target)(*args, **kwargs)
        if node.op == "call_method":
            name = str(node.target)
            if name.endswith("_") and not name.startswith("_") and hasattr(args[0], name[:-1]):
                name = name[:-1]
            return getattr(args[0], name)(*args[1:], **kwargs)
        raise RuntimeError(f"unsupported fx node {node.op}")


@torch.no_grad()
def rates_in_order(
    net: SpikingNetwork, images: Tensor, T: int, batch_size: int = 128
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(k, rate_k)`` for k = 0 .. L−1, rate_k [N, C, ...] = Σ_t s_t / T of site k, where
    every earlier site runs as it is *after* the caller's change between yields.

    The graph runs once, node by node: per batch of images the frontier (all T steps as one
    chunk) is kept, and after the yield site k runs with its corrected parameters. Same numbers
    as :func:`adacal.snn.simulate.site_rates` (up to float summation order); memory ∝
    N·T·(frontier size). Between yields the network is at rest (``relu`` mode).
    """
    runner = GraphRunner(net, steps=T)
    batches = list(images.split(batch_size))
    envs: list[dict] = [{} for _ in batches]
    pos = 0
    try:
        for k, site in enumerate(net.sites):
            here = runner.site_position[k]
            rates = []
            with net.running("spike", steps=T):
                for env, x in zip(envs, batches, strict=True):
                    net.reset(x.shape[0])
                    runner.run(env, pos, here, x)
                    out = site(runner.site_input(env, k))
                    rates.append(out.reshape(T, x.shape[0], *out.shape[1:]).mean(0))
            yield k, torch.cat(rates)  # the caller corrects site k
            with net.running("spike", steps=T):
                for env, x in zip(envs, batches, strict=True):
                    net.reset(x.shape[0])
                    runner.run(env, here, here + 1, x)
            pos = here + 1
    finally:
        net.reset(1)


Region = tuple[list[fx.Node], list[fx.Node]]  # (region nodes in graph order, boundary nodes)


def _rate(value: Tensor, T: int) -> Tensor:
    """Σ_t s_t / T of a [T·B, ...] value: [B, ...]."""
    return value.reshape(T, value.shape[0] // T, *value.shape[1:]).sum(0) / T


@torch.no_grad()
def regions_in_order(
    net: SpikingNetwork, images: Tensor, T: int, regions: Sequence[Region], batch_size: int = 128
) -> Iterator[tuple[int, list[Tensor]]]:
    """Yield ``(k, inputs_k)`` for k = 0 .. L−1: the boundary values of site k's region, each
    [N, ...]: the rate Σ_t s_t / T of a boundary site, or the images for the graph's input.

    ``regions[k]`` = (the nodes that compute site k's input from its boundary, in graph order;
    the boundary nodes), e.g. from :func:`adacal.calibration.weights.region_nodes`. Between
    yields the caller may change the weights of region k (weight calibration); the region is
    then recomputed from its kept boundary values and site k runs, so every later site sees
    every earlier region as it is after its change. One pass over the graph (linear in depth)
    instead of a simulation up to every site; memory ∝ N·T·(frontier + kept boundaries).
    Each region's nodes must feed only its own site (true of every region a site's input is
    cut from in a feed-forward or residual network).
    """
    runner = GraphRunner(net, steps=T)
    last_region: dict[fx.Node, int] = {}
    for k, (_, bounds) in enumerate(regions):
        for b in bounds:
            last_region[b] = k
    runner.protected = set(last_region)
    batches = list(images.split(batch_size))
    envs: list[dict] = [{} for _ in batches]
    pos = 0
    try:
        for k in range(len(net.sites)):
            here = runner.site_position[k]
            nodes, bounds = regions[k]
            columns: list[list[Tensor]] = [[] for _ in bounds]
            with net.running("spike", steps=T):
                for env, x in zip(envs, batches, strict=True):
                    net.reset(x.shape[0])
                    runner.run(env, pos, here, x)
                    for column, b in zip(columns, bounds, strict=True):
                        column.append(x if b.op == "placeholder" else _rate(env[b], T))
            yield k, [torch.cat(column) for column in columns]  # the caller changes region k
            done = {b for b in bounds if last_region[b] == k}
            runner.protected -= done
            with net.running("spike", steps=T):
                for env, x in zip(envs, batches, strict=True):
                    net.reset(x.shape[0])
                    for node in nodes:  # its weights may have changed
                        env[node] = runner.execute(node, env, x)
                    runner.run(env, here, here + 1, x)
                    for node in (*nodes, *done):
                        if runner.last_use[node] <= here:
                            env.pop(node, None)
            pos = here + 1
    finally:
        net.reset(1)


__all__ = ["GraphRunner", "Region", "rates_in_order", "regions_in_order"]
