"""ANN -> SNN conversion on the torch.fx graph, in a fixed order of pure steps.

``CONVERSION_STEPS`` pins the order (a test checks it):

1. ``fold_batchnorm``: every BatchNorm fed only by a conv/linear is folded into it.
2. ``place_sites``: every ReLU *call* (``nn.ReLU`` module, ``F.relu``, ``torch.relu``,
   ``Tensor.relu``) becomes its own :class:`Site`, so a ReLU module called twice
   (torchvision's BasicBlock) gives two sites.
3. ``commute_stem_maxpool``: max pooling right after a site whose input is analog
   (computed from the image alone) commutes with the ReLU, so it moves before the
   neuron exactly; max pooling anywhere else is refused (not rate-preserving).
4. ``refuse_nonlinear``: any other non-linear op downstream of a site (GroupNorm,
   LayerNorm, sigmoid, GELU, softmax, ...) is refused with the node's name: spike trains
   carry rates only through ops that are linear in time.
5. ``insert_time_expansion``: the analog prefix (nodes that depend on the image
   only) runs once per batch; a :class:`TimeExpand` repeats its output over the Tc
   timesteps of a chunk where spiking nodes consume it (direct encoding, exact).

Everything between sites (convs, linears, residual adds, average pooling,
upsampling, concatenation, flatten) is linear in time and runs on the
``[Tc·B, ...]`` batch unchanged; the last layer stays analog.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from adacal.errors import ConfigError
from adacal.snn.neurons import IFNeuron
from adacal.snn.site import MODES, Site

CONVERSION_STEPS = (
    "fold_batchnorm",
    "place_sites",
    "commute_stem_maxpool",
    "refuse_nonlinear",
    "insert_time_expansion",
)

_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
_RELU_METHODS = ("relu", "relu_")
_MAXPOOL_FUNCTIONS = (F.max_pool2d, torch.max_pool2d, F.max_pool1d, F.max_pool3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class TimeExpand(nn.Module):
    """Repeat an analog tensor over the Tc timesteps of a chunk: [B, ...] -> [Tc·B, ...].

    Time-major: rows t·B .. t·B + B − 1 hold step t.
    """

    def __init__(self) -> None:
        super().__init__()
        self.steps = 1

    def forward(self, x: Tensor) -> Tensor:
        if self.steps == 1:
            return x
        return x.unsqueeze(0).expand(self.steps, *x.shape).reshape(-1, *x.shape[1:])


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def _set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold BN into the conv/linear that feeds it (eval statistics); outputs unchanged."""
    for node in list(gm.graph.nodes):
        bn = _module(gm, node)
        if not isinstance(bn, _BN) or not isinstance(node.args[0], fx.Node):
            continue
        prev = node.args[0]
        layer = _module(gm, prev)
        if len(prev.users) != 1 or not isinstance(
            layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
        ):
            continue
        fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
        _set_module(gm, str(prev.target), fuse(layer.eval(), bn.eval()))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True for every kind of ReLU call the converter turns into a site."""
    if node.op == "call_module":
        return isinstance(_module(gm, node), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS


def is_maxpool(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(_module(gm, node), (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d))
    return node.op == "call_function" and node.target in _MAXPOOL_FUNCTIONS


def place_sites(gm: fx.GraphModule, neuron: IFNeuron) -> fx.GraphModule:
    """Replace every ReLU call by a new :class:`Site` submodule ``site_<i>`` (network order)."""
    index = 0
    for node in list(gm.graph.nodes):
        if not is_relu(gm, node):
            continue
        name = f"site_{index}"
        gm.add_submodule(name, Site(neuron, index, name=str(node.name)))
        with gm.graph.inserting_after(node):
            site = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(site)
        gm.graph.erase_node(node)
        index += 1
    gm.graph.lint()
    gm.recompile()
    return gm


def _is_site(gm: fx.GraphModule, node: fx.Node) -> bool:
    return isinstance(_module(gm, node), Site)


def dynamic_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value depends on some site's output (i.e. varies over time)."""
    dynamic: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if _is_site(gm, node) or any(a in dynamic for a in node.all_input_nodes):
            dynamic.add(node)
    return dynamic


def commute_stem_maxpool(gm: fx.GraphModule) -> fx.GraphModule:
    """Move max pooling before an analog-input site: maxpool(relu(z)) = relu(maxpool(z))."""
    for node in list(gm.graph.nodes):
        if not is_maxpool(gm, node):
            continue
        dynamic = dynamic_nodes(gm)
        src = node.args[0]
        if src not in dynamic:
            continue  # pooling of analog values: stays analog
        if not (_is_site(gm, src) and src.args[0] not in dynamic and len(src.users) == 1):
            raise ConfigError(
                "architecture",
                f"max pooling at node '{node.name}' sits between spiking layers; max pooling is "
                "not rate-preserving, so this network cannot be converted. Use average pooling "
                "in the model (only a max pool right after the analog first layer is moved "
                "before its neuron automatically).",
            )
        node.args = (src.args[0], *node.args[1:])
        node.replace_all_uses_with(src, delete_user_cb=functools.partial(operator.is_not, src))
        src.args = (node,)
        node.append(src)
    gm.graph.lint()
    gm.recompile()
    return gm


_NONLINEAR_MODULES = (
    nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LocalResponseNorm, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
    nn.LeakyReLU, nn.ELU, nn.ReLU6, nn.PReLU, nn.Softmax, nn.LogSoftmax, nn.Mish, nn.Softplus,
)  # fmt: skip
_NONLINEAR_FUNCTIONS = (
    F.group_norm, F.layer_norm, F.instance_norm, torch.sigmoid, F.sigmoid, torch.tanh,
    F.gelu, F.silu, F.hardswish, F.leaky_relu, F.elu, F.relu6, F.softmax, F.log_softmax,
    torch.softmax, F.mish, F.softplus,
)  # fmt: skip
_NONLINEAR_METHODS = ("sigmoid", "tanh", "softmax", "log_softmax")


def refuse_nonlinear(gm: fx.GraphModule) -> fx.GraphModule:
    """Raise ConfigError("architecture") for a non-linear op that consumes spikes."""
    dynamic = dynamic_nodes(gm)
    for node in gm.graph.nodes:
        if node not in dynamic or _is_site(gm, node):
            continue
        module = _module(gm, node)
        bad = (
            isinstance(module, _NONLINEAR_MODULES)
            or (node.op == "call_function" and node.target in _NONLINEAR_FUNCTIONS)
            or (node.op == "call_method" and node.target in _NONLINEAR_METHODS)
        )
        if bad:
            what = type(module).__name__ if module is not None else str(node.target)
            raise ConfigError(
                "architecture",
                f"node '{node.name}' ({what}) is non-linear and sits after a spiking layer; a "
                "converted network may only have ReLUs (the neurons) and ops linear in time "
                "between its layers. Replace it in the model (e.g. GroupNorm/LayerNorm by "
                "BatchNorm, other activations by ReLU) and retrain.",
            )
    return gm


def insert_time_expansion(gm: fx.GraphModule, example: Tensor) -> fx.GraphModule:
    """Insert a :class:`TimeExpand` on every edge from an analog tensor to a spiking node."""
    ShapeProp(gm).propagate(example)
    dynamic = dynamic_nodes(gm)
    count = 0
    for node in list(gm.graph.nodes):
        if node in dynamic or node.op == "output":
            continue
        users = [u for u in node.users if u in dynamic]
        if not users or not isinstance(
            node.meta.get("tensor_meta"), torch.fx.passes.shape_prop.TensorMetadata
        ):
            continue
        name = f"time_expand_{count}"
        gm.add_submodule(name, TimeExpand())
        with gm.graph.inserting_after(node):
            expanded = gm.graph.call_module(name, (node,))
        for user in users:
            user.replace_input_with(node, expanded)
        count += 1
    gm.graph.lint()
    gm.recompile()
    return gm


def convert(model: nn.Module, neuron: IFNeuron, example: Tensor) -> SpikingNetwork:
    """Convert a ReLU ANN into a :class:`SpikingNetwork` (a copy; ``model`` is untouched).

    Args:
        model: the trained ANN (any fx-traceable ReLU network).
        neuron: neuron spec placed at every site.
        example: one input batch [1, C, H, W] used for shape propagation.
    """
    model = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # noqa: BLE001 - re-raised with the key to fix
        raise ConfigError("architecture", f"the model cannot be traced by torch.fx: {err}") from err
    steps: dict[str, Callable[[fx.GraphModule], fx.GraphModule]] = {
        "fold_batchnorm": fold_batchnorm,
        "place_sites": lambda g: place_sites(g, neuron),
        "commute_stem_maxpool": commute_stem_maxpool,
        "refuse_nonlinear": refuse_nonlinear,
        "insert_time_expansion": lambda g: insert_time_expansion(g, example),
    }
    for name in CONVERSION_STEPS:
        gm = steps[name](gm)
    return SpikingNetwork(gm, example)


class SpikingNetwork(nn.Module):
    """The converted network: an fx GraphModule whose ReLU calls are :class:`Site` modules.

    ``forward(x)`` takes images [B, C, H, W]. In ``relu``/``observe``/``surrogate``
    modes it returns the ANN-shaped output [B, K]; in ``spike`` mode, after
    :meth:`reset` and :meth:`set_steps`, it returns the Tc per-step outputs of the
    analog last layer folded time-major, [Tc·B, K].
    """

    def __init__(self, graph_module: fx.GraphModule, example: Tensor) -> None:
        super().__init__()
        self.net = graph_module
        self.sites: list[Site] = [m for m in graph_module.modules() if isinstance(m, Site)]
        self.sites.sort(key=lambda s: s.index)
        self.expanders = [m for m in graph_module.modules() if isinstance(m, TimeExpand)]
        self._record_site_shapes(example)

    @torch.no_grad()
    def _record_site_shapes(self, example: Tensor) -> None:
        self.set_mode("observe")
        self.net(example[:1])
        for site in self.sites:
            site.neurons_per_sample = site.recorded[0][0].numel()
            site.neuron_shape = tuple(site.recorded[0].shape[1:])
            site.channels = site.recorded[0].shape[1]
            site.recorded = []
        self.set_mode("relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def set_mode(self, mode: str) -> None:
        for site in self.sites:
            site.mode = mode

    def set_T(self, T: int) -> None:
        """Set the target number of timesteps the thresholds/calibration are fitted for."""
        for site in self.sites:
            site.T = T

    def reset(self, batch_size: int) -> None:
        """Start a new simulation of ``batch_size`` samples at t = 0."""
        for site in self.sites:
            site.reset(batch_size)

    def keep(self, index: Tensor) -> None:
        """Continue the running simulation with the samples ``index`` [B'] only (early exit)."""
        for site in self.sites:
            site.keep(index)

    @contextmanager
    def running(
        self, mode: str, steps: int = 1, batch_size: int | None = None, release: bool = False
    ) -> Iterator[None]:
        """The one simulation context: every site in ``mode``, TimeExpand making ``steps``
        copies, and (with ``batch_size``) a fresh simulation of that many samples at t = 0.

        On leaving, even by an exception, the sites are back in ``relu`` mode with one step;
        the spike counts stay readable, unless ``release`` forgets the state (membrane
        potentials and counts). Every simulation in the package (chunked, node by node,
        early exit, rates) runs inside it::

            with net.running("spike", steps=T, batch_size=B):
                out = net(x)                   # [T·B, K]
        """
        if mode not in MODES:
            raise ValueError(f"unknown site mode {mode!r}; one of {MODES}")
        self.set_mode(mode)
        self.set_steps(steps)
        if batch_size is not None:
            self.reset(batch_size)
        try:
            yield
        finally:
            self.set_mode("relu")
            self.set_steps(1)
            if release:
                self.reset(1)

    def set_compiled(self, compiled: bool | str) -> None:
        """How every site runs its neuron loop (``snn.compile``, :mod:`adacal.snn.fused`):
        ``"auto"`` (fused kernel where ``torch.compile`` works, else the eager loop),
        ``"true"`` / True (fused, required), ``"false"`` / False (eager). Same numbers."""
        from adacal.snn.fused import compile_mode  # (the set_compiled area only)

        mode = compile_mode(compiled)
        for site in self.sites:
            site.compiled = mode

    def set_steps(self, steps: int) -> None:
        """Timesteps Tc of the next chunk (how many copies TimeExpand makes)."""
        for expander in self.expanders:
            expander.steps = steps

    def site_graph_nodes(self) -> list[fx.Node]:
        """The fx nodes of the sites, in site order."""
        nodes = {str(n.target): n for n in self.net.graph.nodes if n.op == "call_module"}
        return [nodes[f"site_{s.index}"] for s in self.sites]


__all__ = [
    "CONVERSION_STEPS",
    "SpikingNetwork",
    "TimeExpand",
    "commute_stem_maxpool",
    "convert",
    "fold_batchnorm",
    "insert_time_expansion",
    "place_sites",
    "refuse_nonlinear",
]
