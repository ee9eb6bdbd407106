"""Conversion error of a converted SNN against its ANN, per neuron site and at the output.

Used by ``notebooks/conversion_error.ipynb``. Notation: site l of the converted network
(:class:`adacal.snn.convert.SpikingNetwork`) replaces one ReLU call; in the ANN its output is
a_l = relu(z_l) [N, C, ...]; in the SNN it emits s_l(t) = n_l(t)·θ_l at step t (n_l(t) spikes,
up to φ per step), and its rate-coded output after T steps is

    r_l = (1/T) Σ_{t=1..T} s_l(t)                                        [N, C, ...]

Both live in activation units, so the per-site conversion error compares them directly:

    rel-L2_l(T) = ‖r_l − a_l‖₂ / ‖a_l‖₂     MSE_l(T) = ‖r_l − a_l‖₂² / numel(a_l)

with the norms over all neurons and all N images. The output error uses the mean of the
analog last layer's per-step outputs ȳ = (1/T) Σ_t y(t) [N, K] against the ANN's logits.
a_l is the ANN's own activation (computed from the image through the ANN), so rel-L2_l is
the error accumulated up to and including site l, not the error site l adds on its own.

For an input current z that is constant over time (a site fed by the analog first layer),
the rate is known in closed form (:func:`constant_input_rate`):

    r = (θ/T)·clip(floor((T·z + v0)/θ), 0, φ·T),   v0 = θ/2 (the initial half threshold)

so |r − relu(z)| ≤ θ/(2T) for 0 ≤ z ≤ φ·θ: burst firing (φ > 1) with θ fitted for φ covers
[0, φ·θ] with φ·T levels instead of T, which is the error it removes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from adacal.adaptive.convert import calibrated_network
from adacal.calibration.recipe import ThresholdSpec
from adacal.snn.convert import SpikingNetwork
from adacal.snn.neurons import BurstNeuron, IFNeuron, surrogate_floor
from adacal.snn.simulate import preactivations, rates_and_output


def relative_l2(approx: Tensor, reference: Tensor) -> float:
    """‖approx − reference‖₂ / ‖reference‖₂ over all elements (same shapes, any [N, ...]).

    Returns ``inf`` when the reference is all zeros and the approximation is not (0 when
    both are zero).
    """
    return ErrorTotals().add(approx, reference).relative_l2


def mean_squared_error(approx: Tensor, reference: Tensor) -> float:
    """‖approx − reference‖₂² / numel over all elements (same shapes, any [N, ...])."""
    return ErrorTotals().add(approx, reference).mse


@dataclass
class ErrorTotals:
    """Running sums for the errors of one site over batches of images.

    ``sse`` = Σ (r − a)², ``ssr`` = Σ a², ``count`` = number of elements, accumulated in
    float64; the relative L2 and MSE of the concatenated batches follow exactly.
    """

    sse: float = 0.0
    ssr: float = 0.0
    count: int = 0

    def add(self, approx: Tensor, reference: Tensor) -> ErrorTotals:
        """Add one batch: approx and reference of the same shape [B, ...]; returns self."""
        if approx.shape != reference.shape:
            raise ValueError(f"shapes differ: {tuple(approx.shape)} vs {tuple(reference.shape)}")
        a, r = approx.detach().double(), reference.detach().double()
        self.sse += float((a - r).pow(2).sum())
        self.ssr += float(r.pow(2).sum())
        self.count += r.numel()
        return self

    @property
    def relative_l2(self) -> float:
        """sqrt(Σ (r − a)² / Σ a²)."""
        if self.ssr == 0.0:
            return 0.0 if self.sse == 0.0 else math.inf
        return math.sqrt(self.sse / self.ssr)

    @property
    def mse(self) -> float:
        """Σ (r − a)² / count."""
        return self.sse / self.count if self.count else math.nan


def constant_input_rate(
    z: Tensor, theta: Tensor | float, T: int, phi: int = 1, v0: Tensor | float | None = None
) -> Tensor:
    """Closed-form T-step rate of an IF (φ = 1) or burst neuron fed a constant current z.

    r = (θ/T)·clip(floor((T·z + v0)/θ), 0, φ·T), v0 = θ/2 by default (``neuron.offset``
    ``initial`` or ``shift``). Exact for reset by subtraction: the neuron never falls more
    than one threshold behind its input, so it emits floor((T·z + v0)/θ) spikes in total
    unless that exceeds φ spikes per step.

    Args:
        z: input current [N, ...].
        theta: threshold, a float or broadcastable to z (> 0).
        T: number of timesteps.
        phi: most spikes per step.
        v0: initial potential; default θ/2.
    Returns:
        the rate r, same shape as z, in activation units.
    """
    theta_t = torch.as_tensor(theta, dtype=z.dtype, device=z.device)
    v0_t = theta_t / 2 if v0 is None else torch.as_tensor(v0, dtype=z.dtype, device=z.device)
    return surrogate_floor(z, theta_t, T, v0_t, T * phi).detach()


def neuron_spec(phi: int, offset: str = "initial") -> IFNeuron:
    """The IF neuron for φ = 1, else a burst neuron with φ at every site."""
    return IFNeuron(offset=offset) if int(phi) == 1 else BurstNeuron(offset=offset, phi=int(phi))


def fitted_network(
    model: torch.nn.Module,
    neuron: IFNeuron,
    calibration_images: Tensor,
    T: int,
    spec: ThresholdSpec,
    steps: Sequence = (),
    batch_size: int = 128,
    chunk: int | None = 8,
) -> SpikingNetwork:
    """Convert ``model`` with ``neuron`` and run the repository's calibration recipe for T.

    :func:`adacal.calibration.recipe.calibrate`: thresholds fitted for each site's φ on the
    ANN activations of ``calibration_images`` [N, C, H, W], the neuron's φ choice (none for
    IF and burst), then the calibration ``steps`` (none: thresholds only).
    """
    net, _, _ = calibrated_network(
        model, neuron, calibration_images, T, spec, steps, chunk=chunk, batch_size=batch_size
    )
    return net


@dataclass
class ConversionErrors:
    """Errors of one SNN at one T: one :class:`ErrorTotals` per site (site order) and one
    for the output; ``agreement`` = share of images whose SNN top class is the ANN's."""

    T: int
    sites: list[ErrorTotals] = field(default_factory=list)
    output: ErrorTotals = field(default_factory=ErrorTotals)
    agreement: float = math.nan


def ann_activations(net: SpikingNetwork, images: Tensor) -> tuple[list[Tensor], Tensor]:
    """a_l = relu(z_l) [B, C, ...] for every site l and the logits [B, K] of the ANN (the
    converted network at rest, BN folded) on ``images`` [B, C, H, W]."""
    z, logits = preactivations(net, images)
    return [torch.relu(z_l) for z_l in z], logits


def conversion_errors(
    net: SpikingNetwork, images: Tensor, T: int, batch_size: int = 128, chunk: int | None = 8
) -> ConversionErrors:
    """Per-site and output errors of ``net`` (thresholds already fitted for T) on ``images``
    [N, C, H, W], in batches of ``batch_size``: see the module docstring for the equations."""
    result = ConversionErrors(T=T, sites=[ErrorTotals() for _ in net.sites])
    agree = 0
    for batch in images.split(batch_size):
        ann_sites, ann_out = ann_activations(net, batch)
        snn_sites, snn_out = rates_and_output(net, batch, T, chunk)
        for totals, r, a in zip(result.sites, snn_sites, ann_sites, strict=True):
            totals.add(r, a)
        result.output.add(snn_out, ann_out)
        if ann_out.dim() >= 2:
            agree += int((snn_out.argmax(1) == ann_out.argmax(1)).sum())
    per_image = math.prod(ann_out.shape[2:]) if ann_out.dim() > 2 else 1
    result.agreement = agree / (images.shape[0] * per_image)
    return result


def error_rows(errors: ConversionErrors, net: SpikingNetwork, method: str) -> list[dict]:
    """Flat rows (one per site, then one for the output) for a table: method, T, site index,
    site label, neurons per image, φ, θ (mean over channels), rel-L2 and MSE."""
    rows = []
    for site, totals in zip(net.sites, errors.sites, strict=True):
        rows.append(
            {
                "method": method,
                "T": errors.T,
                "site": site.index,
                "label": site.label,
                "neurons": site.neurons_per_sample,
                "phi": site.phi,
                "theta": float(site.theta.float().mean()),
                "rel_l2": totals.relative_l2,
                "mse": totals.mse,
            }
        )
    rows.append(
        {
            "method": method,
            "T": errors.T,
            "site": len(net.sites),
            "label": "output",
            "neurons": None,
            "phi": None,
            "theta": None,
            "rel_l2": errors.output.relative_l2,
            "mse": errors.output.mse,
        }
    )
    return rows


__all__ = [
    "ConversionErrors",
    "ErrorTotals",
    "ann_activations",
    "constant_input_rate",
    "conversion_errors",
    "error_rows",
    "fitted_network",
    "mean_squared_error",
    "neuron_spec",
    "relative_l2",
    "rates_and_output",
]
