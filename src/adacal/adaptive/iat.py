"""Input-aware Adaptive Timesteps (IAT): each sample stops simulating once it is confident.

After t steps the rate-coded output of a sample is the mean of its t per-step outputs,
ō_t [K]. Its confidence c_t = confidence(ō_t) is, for ``"entropy"``,
c_t = 1 − H(softmax(ō_t)) / log K ∈ [0, 1], or for ``"maxprob"`` max_k softmax(ō_t)_k.
A sample exits after step t when c_t > η_t (at t = T every remaining sample exits), and
the exited samples are dropped from the running simulation (:meth:`SpikingNetwork.keep`),
so they cost no further compute.

The exit thresholds are fitted on training images (Wang et al., AAAI 2025):

    η_t = a + b · exp(min_s Ē_s − Ē_t),    t = 1..T,

where Ē_t is the mean uncertainty 1 − c_t of the samples classified correctly after t
steps (the normalised entropy for ``"entropy"``). So η_t ∈ (a, a + b]; the step with the
lowest mean uncertainty gets a + b. The paper uses a = 0.6, b = 0.4 on CIFAR.

Dense outputs (segmentation, logits [B, K, H, W]; our extension, the paper classifies only):
an image's confidence is the mean of its pixels' confidences, c_t = mean_p c_t(p), and an
image counts as correct in proportion to its pixel accuracy acc_t (labelled pixels only):
Ē_t = Σ_i acc_t(i)·(1 − c_t(i)) / Σ_i acc_t(i). For [B, K] outputs acc ∈ {0, 1}, so this is
exactly the definition above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork
from adacal.snn.early_exit import (
    METRICS,
    ExitResult,
    check_metric,
    confidence,
    simulate_early_exit,
)
from adacal.snn.exit_replay import ExitPoint
from adacal.snn.simulate import anytime_logits, simulate


def correctness(logits: Tensor, y: Tensor, ignore_index: int = 255) -> Tensor:
    """Share of each sample's labels predicted right: [S, B, K] with y [B] -> {0, 1} [S, B];
    [S, B, K, H, W] with y [B, H, W] -> pixel accuracy [S, B] (``ignore_index`` not counted;
    an image without labelled pixels counts 0)."""
    right = (logits.argmax(2) == y.unsqueeze(0)).to(torch.float64)
    if right.dim() == 2:
        return right
    valid = (y != ignore_index).unsqueeze(0).expand_as(right).to(torch.float64)
    dims = tuple(range(2, right.dim()))
    return (right * valid).sum(dims) / valid.sum(dims).clamp_min(1)


def exit_thresholds_from_entropy(mean_entropy: Tensor, a: float, b: float) -> Tensor:
    """η_t = a + b · exp(min_s Ē_s − Ē_t): mean uncertainty Ē [T] -> exit thresholds η [T]."""
    return a + b * torch.exp(mean_entropy.min() - mean_entropy)


@torch.no_grad()
def mean_uncertainty(
    net: SpikingNetwork,
    images: Tensor,
    labels: Tensor,
    T: int,
    metrics: tuple[str, ...] = ("entropy",),
    batch_size: int = 256,
    chunk: int | None = 8,
) -> dict[str, Tensor]:
    """Ē_t [T] for each confidence measure in ``metrics``, from one T-step simulation of the
    (training) images [N, C, H, W] with labels [N]: the mean uncertainty 1 − c_t over the
    samples whose prediction after t steps is correct (all samples at a t where none is).
    Dense outputs: labels [N, H, W], samples weighted by their pixel accuracy."""
    for metric in metrics:
        check_metric(metric)
    if T < 1 or len(images) == 0:
        raise ValueError(f"need T >= 1 and at least one image, got T={T}, {len(images)} images")
    device = _device(net)
    # per metric: Σ unc·right, Σ right, Σ unc over the samples, at each t
    sums = {m: torch.zeros(3, T, dtype=torch.float64) for m in metrics}
    for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        out = anytime_logits(simulate(net, x.to(device), T, chunk))  # [T, B, K, ...]
        right = correctness(out, y.to(device))
        for metric in metrics:
            unc = 1 - confidence(out.flatten(0, 1), metric).reshape(T, -1)
            r = right.to(unc.dtype)
            sums[metric] += torch.stack([(unc * r).sum(1), r.sum(1), unc.sum(1)]).double().cpu()
    out_means = {}
    for metric, s in sums.items():
        mean_all = s[2] / len(images)
        out_means[metric] = torch.where(s[1] > 0, s[0] / s[1].clamp_min(1e-12), mean_all)
    return out_means


def fit_exit_thresholds(
    net: SpikingNetwork,
    images: Tensor,
    labels: Tensor,
    T: int,
    a: float,
    b: float,
    metric: str = "entropy",
    batch_size: int = 256,
    chunk: int | None = 8,
) -> Tensor:
    """Fit the exit thresholds η [T] on (training) images [N, C, H, W] with labels [N]:
    η_t = a + b · exp(min_s Ē_s − Ē_t) with Ē from :func:`mean_uncertainty`."""
    mean = mean_uncertainty(net, images, labels, T, (metric,), batch_size, chunk)[metric]
    return exit_thresholds_from_entropy(mean, a, b).float()


def _device(net: SpikingNetwork) -> torch.device:
    for tensor in (*net.parameters(), *net.buffers()):
        return tensor.device
    return torch.device("cpu")


@dataclass
class IATPolicy:
    """``inference=iat``: exit thresholds η_t = a + b · exp(min_s Ē_s − Ē_t), fitted on
    ``fit_batches`` batches of ``batch_size`` training images (see the module docstring).

    ``frontier`` (``{b: [...], confidence: [...]}``, a = 1 − b for each point) names further
    exit policies that are fitted on the same images (one simulation for all) and replayed
    from the full T-step pass of ``compare_full`` (:mod:`adacal.snn.exit_replay`), so one run
    measures the whole accuracy–latency frontier. ``chunk``: steps simulated per forward pass of
    the early-exit evaluation (exits are decided and counted per step whatever it is:
    :func:`~adacal.snn.early_exit.simulate_early_exit`; only the wall time changes).
    """

    name: str = "iat"
    confidence: str = "entropy"
    a: float = 0.6
    b: float = 0.4
    fit_batches: int = 4
    batch_size: int = 256
    compare_full: bool = True
    chunk: int = 1
    frontier: Mapping[str, Any] = field(
        default_factory=lambda: {"b": [], "confidence": ["entropy", "maxprob"]}
    )

    def __post_init__(self) -> None:
        check_metric(self.confidence)
        if not 0 <= self.a < 1:
            raise ConfigError(
                "inference.a",
                f"must be in [0, 1) (η_t > a, and a confidence above 1 is impossible, so a >= 1 "
                f"would never exit early), got {self.a}",
            )
        if not 0 <= self.b < math.inf:
            raise ConfigError("inference.b", f"must be finite and >= 0, got {self.b}")
        for key in ("fit_batches", "batch_size", "chunk"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"inference.{key}", f"must be an integer >= 1, got {value!r}")
        self.points()  # validates inference.frontier
        if self.points() and not self.compare_full:
            raise ConfigError(
                "inference.frontier",
                "is replayed from the full T-step pass; set inference.compare_full=true "
                "or inference.frontier.b=[]",
            )

    def points(self) -> list[tuple[str, str, float, float]]:
        """The frontier's exit policies as (name, confidence, a, b), a = 1 − b."""
        front = dict(self.frontier or {})
        unknown = set(front) - {"b", "confidence"}
        if unknown:
            raise ConfigError(
                "inference.frontier", f"unknown keys {sorted(unknown)}; use b and confidence"
            )
        bs = _floats(front.get("b") or [], "inference.frontier.b")
        metrics = front.get("confidence") or [self.confidence]
        if isinstance(metrics, str) or not isinstance(metrics, Sequence):
            raise ConfigError("inference.frontier.confidence", f"must be a list, got {metrics!r}")
        out = []
        for metric in metrics:
            check_metric(str(metric))
            for b in bs:
                if not 0 < b <= 1:
                    raise ConfigError(
                        "inference.frontier.b", f"each b must be in (0, 1] (a = 1 − b), got {b}"
                    )
                out.append((f"{metric}_b{b:g}", str(metric), 1 - b, b))
        return out

    def fit(self, net: SpikingNetwork, images: Tensor, labels: Tensor, T: int) -> Tensor:
        """Exit thresholds η [T] from the first fit_batches · batch_size images [N, C, H, W]."""
        return self.fit_all(net, images, labels, T)[0]

    def fit_all(
        self, net: SpikingNetwork, images: Tensor, labels: Tensor, T: int
    ) -> tuple[Tensor, list[ExitPoint]]:
        """η [T] of this policy and the frontier's :class:`ExitPoint` s, from one simulation of
        the first fit_batches · batch_size images."""
        n = self.fit_batches * self.batch_size
        points = self.points()
        metrics = tuple(dict.fromkeys([self.confidence, *(p[1] for p in points)]))
        mean = mean_uncertainty(net, images[:n], labels[:n], T, metrics, self.batch_size)
        eta = exit_thresholds_from_entropy(mean[self.confidence], self.a, self.b).float()
        front = [
            ExitPoint(name, metric, a, b, exit_thresholds_from_entropy(mean[metric], a, b).float())
            for name, metric, a, b in points
        ]
        return eta, front


def _floats(values: Any, key: str) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(key, f"must be a list of numbers, got {values!r}")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a list of numbers, got {list(values)!r}") from None


__all__ = [
    "METRICS",
    "ExitResult",
    "IATPolicy",
    "check_metric",
    "confidence",
    "correctness",
    "exit_thresholds_from_entropy",
    "fit_exit_thresholds",
    "mean_uncertainty",
    "simulate_early_exit",
]
