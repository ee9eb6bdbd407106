"""Synaptic operations, MACs and energy of a converted network, in two burst conventions.

*Synaptic layers* are ``nn.Conv1d/2d/3d`` and ``nn.Linear`` modules and ``F.conv1d/2d/3d`` /
``F.linear`` calls. A synaptic layer is **event-driven** if its input is produced from site
outputs only through non-synaptic, connectivity-preserving ops (average / adaptive average
pooling, flatten / reshape / view / squeeze, residual add, cat, getitem, pad, interpolate /
upsample, identity, dropout, mean / sum, mul / div by a number). Each spike (a burst of k spikes
counts k) then costs one accumulate (AC) per synapse it drives. Any other synaptic layer is
**dense** (its input depends on the image without passing a site, e.g. the first conv; or on
another synaptic layer or an unlisted op): it costs its full MACs at every timestep (the paper's
convention, although the simulator computes the analog prefix once per chunk of steps).

Fan-out ``f_l[i]`` of neuron i of site l = number of synapses from i into event-driven layers,
counted as path counts with unit weights through the non-synaptic ops and stopping at the next
site or synaptic layer. With ``y_k`` the event-driven layers recomputed with unit weights (the
bias is irrelevant), average pooling as sum pooling, mean as sum, scaling by a number as identity,

    f_l = ∂(Σ_k Σ y_k) / ∂s_l          (s_l: output of site l, one image [1, C, ...])

which is exact for stride, padding (border neurons drive fewer outputs), dilation, groups
(C_out/groups channels per neuron), linear layers (out_features) and avgpool → linear heads.
Interpolation other than nearest counts its interpolation weights, not connections.

MACs of a layer per image = (output elements per sample) · (weight elements per output channel):
conv C_out·ΠH_out·(C_in/groups)·Πk, linear out·in (times the extra leading dims).

Per image, with ACs = Σ_{l,t,i} n_l[t, i]·f_l[i] (``sop_totals`` summed), T the (mean) steps:

    SOPs       = ACs + dense_MACs·T
    E_SNN      = E_MAC·dense_MACs·T + E_AC·ACs,     E_ANN = E_MAC·ANN_MACs
    saving     = 1 − E_SNN / E_ANN                  (E_MAC = 4.6 pJ, E_AC = 0.9 pJ, 45 nm)

Burst conventions (``adacal.keys.BURSTS``; every run reports both from the same simulation):

- ``spikes`` (above, the default and the stricter): a burst of k spikes costs k ACs per synapse,
  ACs = Σ n·f (``Site.sop_counts``, ``sop_totals``);
- ``messages``: a non-zero burst reaches the next layer as one multi-bit message k·θ and costs
  one AC per synapse, ACs = Σ_{l,t,i} 1[n_l[t, i] > 0]·f_l[i] (``Site.message_counts``,
  ``message_totals``), as the paper authors' released energy helper counts. For IF sites
  (φ = 1) both are the same number. The same formulas then give SOPs, E_SNN and the savings.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.func import functional_call

from adacal.snn.convert import SpikingNetwork, TimeExpand
from adacal.snn.site import Site

E_MAC_PJ = 4.6
E_AC_PJ = 0.9

_SYN_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_SYN_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d, F.linear)
_AVG_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_AVG_POOL_FN = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_ADAPTIVE_FN = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3}
_PASS_MODULES = (*_AVG_POOL, *_ADAPTIVE, nn.Flatten, nn.Unflatten, nn.Identity, nn.Upsample)
_PASS_MODULES += (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.ZeroPad2d)
_PASS_FUNCTIONS = {*_AVG_POOL_FN, *_ADAPTIVE_FN, torch.mean, torch.sum, F.pad, F.interpolate}
_PASS_FUNCTIONS |= {operator.add, operator.iadd, operator.getitem, torch.add, torch.cat}
_PASS_FUNCTIONS |= {torch.concat, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_PASS_FUNCTIONS |= {F.dropout}
_PASS_METHODS = {"add", "add_", "view", "reshape", "flatten", "squeeze", "unsqueeze"}
_PASS_METHODS |= {"contiguous", "mean", "sum"}
_SCALE_FUNCTIONS = {operator.mul, operator.truediv, torch.mul, torch.div}
_SCALE_METHODS = {"mul", "div"}
_SHAPE_ONLY = {("call_method", "size"), ("call_method", "dim"), ("call_function", getattr)}


@dataclass(frozen=True)
class LayerOps:
    """One synaptic layer call: ``kind`` "dense" | "event"; ``macs`` per image and step."""

    name: str
    kind: str
    macs: float


@dataclass(frozen=True)
class EnergyReport:
    """Per-image totals: ``sops`` = ACs + dense MACs·T, ``dense_macs`` = dense MACs·T (all
    steps), energies in pJ, ``saving_vs_ann`` = 1 − energy_pj / ann_energy_pj."""

    sops: float
    dense_macs: float
    energy_pj: float
    ann_energy_pj: float
    saving_vs_ann: float


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def _is_synaptic(gm: fx.GraphModule, node: fx.Node) -> bool:
    fn = node.op == "call_function" and node.target in _SYN_FUNCTIONS
    return fn or isinstance(_module(gm, node), _SYN_MODULES)


def _is_scale(node: fx.Node) -> bool:
    """mul/div of one tensor by Python numbers only."""
    args = list(node.args) + list(node.kwargs.values())
    nodes = [a for a in args if isinstance(a, fx.Node)]
    return len(nodes) == 1 and all(isinstance(a, (int, float, fx.Node)) for a in args)


def _passes(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True for the non-synaptic ops that preserve spike connectivity (see module docstring)."""
    if node.op == "call_module":
        return isinstance(_module(gm, node), _PASS_MODULES)
    tables = {
        "call_function": (_PASS_FUNCTIONS, _SCALE_FUNCTIONS),
        "call_method": (_PASS_METHODS, _SCALE_METHODS),
    }
    passing, scaling = tables.get(node.op, ((), ()))
    return node.target in passing or (node.target in scaling and _is_scale(node))


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    """Return "event" if the layer's input comes from sites through the ops of _passes only."""
    stack, seen, sites = [node.args[0]], set(), 0
    while stack:
        n = stack.pop()
        if not isinstance(n, fx.Node) or n in seen:
            continue
        seen.add(n)
        if isinstance(_module(gm, n), Site):
            sites += 1
        elif n.op == "get_attr" or (n.op, n.target) in _SHAPE_ONLY:
            continue
        elif _passes(gm, n):
            stack.extend(n.all_input_nodes)
        else:
            return "dense"
    return "event" if sites else "dense"


def _tuple(v: int | tuple[int, ...] | None, nd: int) -> tuple[int, ...] | None:
    return None if v is None or v == () else tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def _sum_pool(
    x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
    *_: Any, nd: int, **__: Any,
) -> Tensor:  # fmt: skip
    """Sum pooling (average pooling with divisor 1: padding adds zeros); 1-d runs as 2-d."""
    k, p = _tuple(kernel_size, nd), _tuple(padding, nd)
    s = _tuple(stride, nd) or k
    if nd == 1:
        y = F.avg_pool2d(x.unsqueeze(-2), (1, *k), (1, *s), (0, *p), bool(ceil_mode), True, 1)
        return y.squeeze(-2)
    pool = F.avg_pool2d if nd == 2 else F.avg_pool3d
    return pool(x, k, s, p, bool(ceil_mode), True, 1)


def _sum_adaptive(x: Tensor, avg: Tensor, nd: int) -> Tensor:
    """Adaptive average → sum: times the window size ⌈(o+1)L/n⌉ − ⌊oL/n⌋ along each pooled dim."""
    for d in range(-nd, 0):
        L, n = x.shape[d], avg.shape[d]
        o = torch.arange(n, device=x.device)
        size = ((o + 1) * L + n - 1) // n - (o * L) // n
        avg = avg * size.to(avg.dtype).reshape(-1, *([1] * (-d - 1)))
    return avg


class _Counter(fx.Interpreter):
    """Runs the network once as the ANN and records each synaptic layer's MACs and, for the
    event-driven ones, their unit-weight outputs (sites become autograd leaves)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.kinds = {n: _kind(gm, n) for n in gm.graph.nodes if _is_synaptic(gm, n)}
        self.layers: list[LayerOps] = []
        self.leaves: dict[int, Tensor] = {}
        self.events: list[Tensor] = []
        self.node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        return super().run_node(n)

    def _synapse(self, name: str, weight: Tensor, real: Any, unit: Any) -> Tensor:
        """Real output (no gradient) of one synaptic layer; records MACs and unit outputs."""
        with torch.no_grad():
            out = real()
        kind = self.kinds[self.node]
        self.layers.append(LayerOps(name, kind, float(out[0].numel() * weight[0].numel())))
        if kind == "event":
            self.events.append(unit().sum())
        return out

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        mod = self.fetch_attr(target)
        x = args[0]
        if isinstance(mod, Site):
            self.leaves[mod.index] = torch.relu(x).detach().requires_grad_(True)
            return self.leaves[mod.index]
        if isinstance(mod, TimeExpand):
            return x
        if isinstance(mod, _SYN_MODULES):
            ones = {"weight": torch.ones_like(mod.weight)}  # the bias has no gradient
            unit = functools.partial(functional_call, mod, ones, args, kwargs)
            return self._synapse(target, mod.weight, functools.partial(mod, *args, **kwargs), unit)
        if isinstance(mod, _AVG_POOL):
            nd = next(i + 1 for i, c in enumerate(_AVG_POOL) if isinstance(mod, c))
            return _sum_pool(x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, nd=nd)
        if isinstance(mod, _ADAPTIVE):
            nd = next(i + 1 for i, c in enumerate(_ADAPTIVE) if isinstance(mod, c))
            return _sum_adaptive(x, mod(x), nd)
        return mod(*args, **kwargs)

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        if target in _SYN_FUNCTIONS:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            ones = torch.ones_like(weight)  # the bias has no gradient
            u_args = (args[0], ones, *args[2:]) if len(args) > 1 else args
            u_kw = kwargs if len(args) > 1 else {**kwargs, "weight": ones}
            unit = functools.partial(target, *u_args, **u_kw)
            real = functools.partial(target, *args, **kwargs)
            return self._synapse(self.node.name, weight, real, unit)
        if target in _AVG_POOL_FN:
            return _sum_pool(*args, **kwargs, nd=_AVG_POOL_FN[target])
        if target in _ADAPTIVE_FN:
            return _sum_adaptive(args[0], target(*args, **kwargs), _ADAPTIVE_FN[target])
        if target is torch.mean:
            return torch.sum(*args, **kwargs)
        if target in _SCALE_FUNCTIONS and _is_scale(self.node):
            return next(a for a in args if isinstance(a, Tensor))
        return super().call_function(target, args, kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target == "mean":
            return args[0].sum(*args[1:], **kwargs)
        if target in _SCALE_METHODS and _is_scale(self.node):
            return args[0]
        return super().call_method(target, args, kwargs)


def _device(net: SpikingNetwork) -> torch.device:
    for tensor in (*net.parameters(), *net.buffers()):
        return tensor.device
    return torch.device("cpu")


def _analyse(net: SpikingNetwork, example: Tensor) -> tuple[list[LayerOps], list[Tensor]]:
    """Synaptic layers and the fan-out map [C, ...] of each site (site order) for one image.

    Runs in eval mode (dropout off, no BN statistics updated); the modules' modes are restored.
    """
    counter = _Counter(net.net)
    training = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.enable_grad():
            counter.run(example[:1].to(_device(net)))
            leaves = [counter.leaves[s.index] for s in net.sites]
            grads: list[Tensor | None] = [None] * len(leaves)
            if leaves and counter.events:
                total = torch.stack(counter.events).sum()
                grads = list(torch.autograd.grad(total, leaves, allow_unused=True))
    finally:
        for module, mode in training:
            module.training = mode
    fan = [
        torch.zeros_like(v[0]) if g is None else g[0] for v, g in zip(leaves, grads, strict=True)
    ]
    return counter.layers, [f.detach().float() for f in fan]


@dataclass(frozen=True)
class CostModel:
    """The cost structure of one converted network, analysed once and reused for every
    network converted from the same ANN (any neuron, any T, before or after calibration: the
    layers, their kinds and MACs and the fan-out maps depend on the graph and shapes, not on
    thresholds or spikes).

    ``layers``: every synaptic layer call in graph order; ``fanout``: f_l [C, ...] per site.
    """

    layers: tuple[LayerOps, ...]
    fanout: tuple[Tensor, ...]

    @classmethod
    def of(cls, net: SpikingNetwork, example: Tensor) -> CostModel:
        """Analyse ``net`` on one image of ``example`` [B, C, H, W] (one fx pass)."""
        layers, fan = _analyse(net, example)
        return cls(tuple(layers), tuple(fan))

    @property
    def ann_macs(self) -> float:
        """Σ MACs of all synaptic layers per image (one ANN forward)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def dense_macs(self) -> float:
        """Σ MACs of the dense layers per image and timestep."""
        return sum(layer.macs for layer in self.layers if layer.kind == "dense")

    def attach(self, net: SpikingNetwork) -> None:
        """Set ``site.fanout`` = f_l on every site of ``net`` (SOP counting; the searches'
        ``cost="sops"``); ``net`` must have this model's sites."""
        if len(net.sites) != len(self.fanout):
            raise ValueError(f"{len(net.sites)} sites, but the cost model has {len(self.fanout)}")
        device = _device(net)
        for site, fan in zip(net.sites, self.fanout, strict=True):
            site.fanout = fan.reshape(site.neuron_shape).to(device)

    def energy(self, acs_per_image: float, timesteps: float) -> EnergyReport:
        """:func:`snn_energy` of ``acs_per_image`` over ``timesteps`` (mean) steps."""
        return snn_energy(acs_per_image, self.dense_macs, timesteps, self.ann_macs)


def synaptic_layers(net: SpikingNetwork, example: Tensor) -> list[LayerOps]:
    """Every synaptic layer call in graph order with its kind and MACs per image (one step)."""
    return _analyse(net, example)[0]


def attach_fanout(net: SpikingNetwork, example: Tensor) -> None:
    """Set ``site.fanout`` [C, ...] (float32, on the net's device) = f_l for every site."""
    CostModel.of(net, example).attach(net)


def ann_macs(net: SpikingNetwork, example: Tensor) -> float:
    """Σ MACs of all synaptic layers per image (one ANN forward)."""
    return sum(layer.macs for layer in synaptic_layers(net, example))


def dense_macs(net: SpikingNetwork, example: Tensor) -> float:
    """Σ MACs of the dense layers per image and timestep."""
    return sum(lay.macs for lay in synaptic_layers(net, example) if lay.kind == "dense")


def energy_pj(macs: float, acs: float, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ) -> float:
    """E = e_mac·MACs + e_ac·ACs (pJ)."""
    return e_mac * macs + e_ac * acs


def saving(energy: float, reference: float) -> float:
    """Relative energy saving 1 − E/E_ref (E_ref: the baseline's or the ANN's energy);
    NaN when the reference is not positive. The one place a saving is computed."""
    return 1.0 - energy / reference if reference > 0 else math.nan


def snn_energy(
    acs_per_image: float, dense_macs_per_step: float, timesteps: float, ann_macs: float
) -> EnergyReport:
    """Energy per image of the SNN (ACs + dense MACs over ``timesteps``) against the ANN."""
    dense = dense_macs_per_step * timesteps
    snn = energy_pj(dense, acs_per_image)
    ann = energy_pj(ann_macs, 0.0)
    return EnergyReport(acs_per_image + dense, dense, snn, ann, saving(snn, ann))
