"""Measure one-site-changed variants of a spiking network, reusing the unchanged prefix.

Both searches of Adaptive Calibration (the firing-pattern search and Sensitivity
Spike Compression) score many variants of the network that differ from a base
configuration at one site l only (its φ or its threshold). Everything the SNN
computes before site l is the same for all of them, so the graph is run once
node by node; at each site the values still needed downstream (the *frontier*
of the fx graph) are kept, and every variant of that site runs only the suffix
from the site to the output. ``reuse=False`` re-simulates the whole network per
variant (same numbers, for the benchmark and the tests).

All T steps of a sub-batch run as one chunk ([T·b, ...] tensors), so the frontier
holds each site's full input history and no neuron state has to be copied.

For every variant: sensitivity S = mean over images of the symmetric KL between
the softmax of the SNN's rate-coded output (mean over T of the last layer) and
that of the ANN (per pixel and averaged for dense outputs), and the cost E of the
changed site per image: its spikes (``cost="spikes"``, the paper's; a burst of k
spikes counts k) or the synaptic events they drive (``cost="sops"``, spikes ×
fan-out; needs :func:`adacal.metrics.energy.attach_fanout`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor

from adacal.snn.convert import SpikingNetwork
from adacal.snn.graph import GraphRunner
from adacal.snn.runtime import RELEASE_BYTES, release_free_memory
from adacal.snn.site import Site

Variant = dict[str, Any] | None  # site attributes to set (e.g. {"phi": 3, "theta": θ}); None: base


def symmetric_kl(snn_logits: Tensor, ann_logits: Tensor) -> Tensor:
    """KL(p‖q) + KL(q‖p) per sample, p = softmax(snn), q = softmax(ann) over dim 1.

    Args:
        snn_logits, ann_logits: [B, K] or [B, K, H, W] (per-pixel class scores).
    Returns:
        [B]: Σ_k (p_k − q_k)(log p_k − log q_k), averaged over any spatial positions.
    """
    lp, lq = F.log_softmax(snn_logits.double(), 1), F.log_softmax(ann_logits.double(), 1)
    kl = ((lp.exp() - lq.exp()) * (lp - lq)).sum(1)
    return kl.reshape(kl.shape[0], -1).mean(1)


@dataclass
class Measurements:
    """Scores of the variants: ``sensitivity[l][j]`` and ``spikes[l][j]`` per image, plus the
    base configuration's ``base_sensitivity`` and per-site ``base_spikes`` [L]."""

    sensitivity: list[list[float]]
    spikes: list[list[float]]
    base_sensitivity: float
    base_spikes: list[float]
    site_steps: int = 0
    images: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _applied(site: Site, variant: Variant) -> Iterator[None]:
    """Set a variant's attributes on ``site`` for the duration of the block."""
    saved = {k: getattr(site, k) for k in (variant or {})}
    for k, v in (variant or {}).items():
        setattr(site, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(site, k, v)


@torch.no_grad()
def measure_variants(
    net: SpikingNetwork,
    images: Tensor,
    T: int,
    variants: Sequence[Sequence[Variant]],
    sub_batch: int = 32,
    reuse: bool = True,
    progress: bool = False,
    description: str = "search",
    cost: str = "spikes",
) -> Measurements:
    """Score every variant ``variants[l][j]`` of site l (all other sites at the base).

    Args:
        net: the converted network in its base configuration.
        images: [N, C, H, W] calibration images (scores are means over them).
        T: timesteps simulated.
        variants: per site, the attribute sets to try; ``None`` is the base itself
            (scored from the base run, not re-simulated).
        sub_batch: images per simulated sub-batch (memory ∝ T·sub_batch).
        reuse: run only the suffix from site l for its variants (the prefix once).
        cost: ``"spikes"`` or ``"sops"`` (what ``spikes``/``base_spikes`` count).
    """
    if cost == "sops" and any(site.fanout is None for site in net.sites):
        raise ValueError("cost='sops' needs fan-out maps: call attach_fanout(net, example)")

    def site_cost(site: Site) -> float:
        counts = site.sop_counts if cost == "sops" else site.spike_counts
        return float(torch.cat(counts).sum())

    runner = GraphRunner(net, steps=T)
    L = len(net.sites)
    S = [[0.0] * len(v) for v in variants]
    E = [[0.0] * len(v) for v in variants]
    base_s, base_e = 0.0, [0.0] * L
    n_total = images.shape[0]
    work = sum(1 for v in variants for x in v if x is not None) * -(-n_total // sub_batch)
    with net.running("relu"):
        ann = torch.cat([net(b) for b in images.split(sub_batch)])
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=work)
        for start in range(0, n_total, sub_batch):
            x, q = images[start : start + sub_batch], ann[start : start + sub_batch]
            b = x.shape[0]

            def simulate_from(env: dict, pos: int, x: Tensor = x, b: int = b) -> Tensor:
                net.reset(b)
                out = runner.run(env, pos, len(runner.nodes), x)
                return out.reshape(T, b, *out.shape[1:]).mean(0)

            with net.running("spike", steps=T, release=True):
                out = simulate_from({}, 0)
                base_s += float(symmetric_kl(out, q).sum())
                for k, site in enumerate(net.sites):
                    base_e[k] += site_cost(site)
                env: dict = {}
                pos = 0
                for k, site in enumerate(net.sites):
                    here = runner.site_position[k]
                    if reuse:
                        net.reset(b)  # the variants of the previous site left their state behind
                        runner.run(env, pos, here, x)
                        pos = here
                    for j, variant in enumerate(variants[k]):
                        if variant is None:
                            continue
                        with _applied(site, variant):
                            out = simulate_from(dict(env), here) if reuse else simulate_from({}, 0)
                            S[k][j] += float(symmetric_kl(out, q).sum())
                            E[k][j] += site_cost(site)
                        bar.advance(task)
            release_free_memory(min_free_bytes=RELEASE_BYTES)  # a long search stays bounded
    for k, row in enumerate(variants):
        for j, variant in enumerate(row):
            if variant is None:
                S[k][j], E[k][j] = base_s, base_e[k]
    n = float(n_total)
    return Measurements(
        sensitivity=[[s / n for s in row] for row in S],
        spikes=[[e / n for e in row] for row in E],
        base_sensitivity=base_s / n,
        base_spikes=[e / n for e in base_e],
        site_steps=runner.site_steps,
        images=n_total,
    )


__all__: list[str] = [
    "Measurements",
    "Variant",
    "measure_variants",
    "symmetric_kl",
]
