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

OFFSETS = ("initial", "shift")


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
        """Spikes a neuron may emit in one step (φ); 1 for IF."""
        return 1

    def step(self, v: Tensor, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the dynamics: see :func:`if_step`."""
        return if_step(v, x, theta)

    def step_(self, v: Tensor, x: Tensor, theta: Tensor, out: Tensor) -> None:
        """The same step in place (``v`` updated, spikes written to ``out``): :func:`if_step_`."""
        if_step_(v, x, theta, out)
