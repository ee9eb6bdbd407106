"""Spiking neuron dynamics: pure step functions and the stateless neuron specs.

A *neuron spec* says how a site integrates and fires; the state (membrane
potential) lives in :class:`adacal.snn.site.Site`. A new neuron model is one
class here (or anywhere) plus one YAML in ``conf/neuron/``.

Conventions (DESIGN.md §1): reset by subtraction; direct encoding; the
half-threshold offset is applied either as an initial potential v(0) = θ/2
(``offset="initial"``) or as an input shift θ/(2T) every step
(``offset="shift"``, the paper's form). Both give the same total over T steps;
only ``"initial"`` makes every prefix t < T an exact t-step run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adacal.errors import ConfigError
from adacal.validate import integer

OFFSETS = ("initial", "shift")
COSTS = ("spikes", "sops")  # what the searches count: spikes, or the synaptic events they drive


def if_step(v: Tensor, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """One step of the integrate-and-fire neuron, reset by subtraction.

    v' = v + x;  s = θ·1[v' ≥ θ];  v'' = v' − s.

    Args:
        v: membrane potential, any shape [B, ...].
        x: input current, same shape as ``v``.
        theta: threshold, broadcastable to ``v``.
    Returns:
        (output ``s`` of shape ``v.shape`` with values in {0, θ}, new potential).
    """
    v = v + x
    out = (v >= theta).to(v.dtype) * theta
    return out, v - out


def if_step_(v: Tensor, x: Tensor, theta: Tensor, out: Tensor) -> None:
    """In-place :func:`if_step` for the simulation loop: v ← v + x; out ← θ·1[v ≥ θ]; v ← v − out.

    Same arithmetic, in the same order, as :func:`if_step` (a test checks they agree
    bitwise); no temporaries but the comparison mask.
    """
    v.add_(x)
    torch.mul(torch.ge(v, theta), theta, out=out)
    v.sub_(out)


def burst_step(v: Tensor, x: Tensor, theta: Tensor, phi: int) -> tuple[Tensor, Tensor]:
    """One step of the burst (AdaFire) neuron: up to φ spikes per step, reset by subtraction.

    v' = v + x;  n = clip(floor(v'/θ), 0, φ);  s = n·θ;  v'' = v' − s.

    With IEEE division, fl(v'/θ) ≥ 1 exactly when v' ≥ θ (for v' < θ the quotient is
    below 1 − 2⁻²⁴ and cannot round up to 1), so φ = 1 is bitwise :func:`if_step`.

    Args:
        v, x: potential and input, any shape [B, ...]; theta broadcastable (> 0).
        phi: most spikes per step (φ ≥ 1).
    Returns:
        (output ``n·θ`` of shape ``v.shape``, new potential).
    """
    v = v + x
    out = torch.floor(v / theta).clamp_(0, phi) * theta
    return out, v - out


def burst_step_(v: Tensor, x: Tensor, theta: Tensor, out: Tensor, phi: int) -> None:
    """In-place :func:`burst_step` (v updated, n·θ written to ``out``); bitwise equal to it."""
    v.add_(x)
    torch.div(v, theta, out=out)
    out.floor_().clamp_(0, phi).mul_(theta)
    v.sub_(out)


def surrogate_floor(z: Tensor, theta: Tensor, T: int, v0: Tensor, levels: int) -> Tensor:
    """Rate of a neuron over T steps for a constant input z (the clip-floor surrogate).

    a = (θ/T)·clip(floor((T·z + v0)/θ), 0, levels).  With v0 = θ/2 and
    levels = T this is the clip-round of z: (θ/T)·clip(floor(T·z/θ + 1/2), 0, T).
    The floor is straight-through (its gradient is the identity), so weight
    calibration can back-propagate through it.

    Args:
        z: pre-activation [N, C, ...].
        theta: threshold broadcastable to z (> 0).
        T: number of timesteps.
        v0: total offset (initial potential + T·per-step shift), broadcastable to z.
        levels: maximal number of spikes over T steps (T·φ).
    """
    x = (T * z + v0) / theta
    n = x + (torch.floor(x) - x).detach()
    return n.clamp(0, levels) * theta / T


@dataclass(frozen=True)
class IFNeuron:
    """Integrate-and-fire neuron (one spike at most per step), reset by subtraction.

    Attributes:
        offset: ``"initial"`` (v(0) = θ/2) or ``"shift"`` (θ/(2T) added every step).
    """

    offset: str = "initial"
    name: str = "if"

    def __post_init__(self) -> None:
        if self.offset not in OFFSETS:
            raise ConfigError("neuron.offset", f"'{self.offset}' is not one of {OFFSETS}")

    def max_spikes(self) -> int:
        """Spikes a neuron may emit in one step (φ) when placed; 1 for IF."""
        return 1

    def step(self, v: Tensor, x: Tensor, theta: Tensor, phi: int = 1) -> tuple[Tensor, Tensor]:
        """One step of the dynamics at a site with burst size φ: :func:`if_step` for φ = 1,
        else :func:`burst_step`."""
        return if_step(v, x, theta) if phi == 1 else burst_step(v, x, theta, phi)

    def step_(self, v: Tensor, x: Tensor, theta: Tensor, out: Tensor, phi: int = 1) -> None:
        """The same step in place (``v`` updated, output written to ``out``)."""
        if phi == 1:
            if_step_(v, x, theta, out)
        else:
            burst_step_(v, x, theta, out, phi)


@dataclass(frozen=True)
class BurstNeuron(IFNeuron):
    """Burst neuron with one fixed φ at every site: up to φ spikes per step (:func:`burst_step`).

    φ = 1 is the IF neuron. Thresholds are fitted for φ (the surrogate has φ·T
    levels over [0, φ·θ]).
    """

    phi: int = 4
    name: str = "burst"

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.phi) < 1:
            raise ConfigError("neuron.phi", f"must be an integer >= 1, got {self.phi}")

    def max_spikes(self) -> int:
        return int(self.phi)


@dataclass(frozen=True)
class AdaFireNeuron(IFNeuron):
    """AdaFire: burst neurons whose φ is chosen per site by the firing-pattern search.

    Every site starts at ``phi_init``; the search measures, for each site l and
    φ in [phi_min, phi_init] with only site l changed, the sensitivity S_l(φ)
    (symmetric KL between SNN and ANN softmax) and spikes E_l(φ) on ``batch_size``
    calibration images, then picks φ_l minimising Σ S_l subject to
    Σ E_l ≤ rho·Σ E_l(phi_target). E counts spikes (``cost="spikes"``, the paper's) or
    synaptic events (``cost="sops"``). ``rounds`` (≥ 1; 1: one search) re-measures the tables
    around the chosen φ and solves again, at most that many times in all (the budget stays
    the first round's). These fields configure the search; the search itself
    is :class:`adacal.adaptive.search.FiringPatternSearch`, which the composition root builds
    from them and hands to the calibration recipe (a neuron knows nothing of searches).
    """

    phi_init: int = 8
    phi_target: int = 4
    phi_min: int = 1
    rho: float = 1.0
    batch_size: int = 128
    sub_batch: int = 32
    reuse_prefix: bool = True
    cost: str = "spikes"
    rounds: int = 1
    name: str = "adafire"

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.phi_min) < 1:
            raise ConfigError("neuron.phi_min", f"must be >= 1, got {self.phi_min}")
        if int(self.phi_min) > int(self.phi_init):
            raise ConfigError(
                "neuron.phi_min",
                f"phi_min={self.phi_min} is above phi_init={self.phi_init}; "
                "the search range is [phi_min, phi_init]",
            )
        if not int(self.phi_min) <= int(self.phi_target) <= int(self.phi_init):
            raise ConfigError(
                "neuron.phi_target",
                f"phi_target={self.phi_target} must lie in [phi_min, phi_init] = "
                f"[{self.phi_min}, {self.phi_init}]",
            )
        if not float(self.rho) > 0:
            raise ConfigError("neuron.rho", f"the budget ratio must be > 0, got {self.rho}")
        if self.cost not in COSTS:
            raise ConfigError("neuron.cost", f"'{self.cost}' is not one of {COSTS}")
        if int(self.batch_size) < 1 or int(self.sub_batch) < 1:
            raise ConfigError(
                "neuron.batch_size",
                f"batch_size and sub_batch must be >= 1, got {self.batch_size}, {self.sub_batch}",
            )
        integer("neuron.rounds", self.rounds, 1)

    def max_spikes(self) -> int:
        return int(self.phi_init)
