"""Early exit: each sample stops simulating once its rate-coded output is confident.

After t steps the rate-coded output of a sample is the mean of its t per-step outputs,
ō_t [K]. Its confidence c_t = confidence(ō_t) is, for ``"entropy"``,
c_t = 1 − H(softmax(ō_t)) / log K ∈ [0, 1], or for ``"maxprob"`` max_k softmax(ō_t)_k;
dense outputs [B, K, H, W] average the per-pixel confidence. A sample exits after step t
when c_t > η_t (at t = T every remaining sample exits), and the exited samples are dropped
from the running simulation (:meth:`SpikingNetwork.keep`), so they cost no further compute.
How η is chosen is Input-aware Adaptive Timesteps (:mod:`adacal.adaptive.iat`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from adacal.errors import ConfigError
from adacal.snn.convert import SpikingNetwork

METRICS = ("entropy", "maxprob")


def check_metric(metric: str) -> str:
    """``metric`` if it is a known confidence metric, else :class:`ConfigError`."""
    if metric not in METRICS:
        raise ConfigError(
            "inference.confidence",
            f"unknown confidence metric {metric!r}; use one of {', '.join(METRICS)}",
        )
    return metric


def confidence(logits: Tensor, metric: str) -> Tensor:
    """Confidence of each sample's (mean) output: logits [B, K] -> [B].

    ``"entropy"``: c = 1 − H(p) / log K with p = softmax(logits), H(p) = −Σ_k p_k log p_k
    (0 for uniform p, 1 for one-hot p). ``"maxprob"``: c = max_k p_k.
    Dense logits [B, K, H, W]: the mean over pixels of the per-pixel confidence.
    """
    check_metric(metric)
    if logits.dim() > 2:  # [B, K, *spatial]: per pixel, then averaged per image
        per_pixel = confidence(logits.movedim(1, -1).reshape(-1, logits.shape[1]), metric)
        return per_pixel.reshape(logits.shape[0], -1).mean(1)
    log_p = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    if metric == "maxprob":
        return log_p.max(-1).values.exp()
    K = logits.shape[-1]
    if K < 2:
        return torch.ones_like(log_p[..., 0])
    entropy = -(log_p.exp() * log_p).sum(-1)
    return (1 - entropy / math.log(K)).clamp(0.0, 1.0)


@dataclass
class ExitResult:
    """The outcome of :func:`simulate_early_exit` on a batch of B samples, L sites.

    ``logits`` [B, K]: mean output at each sample's exit; ``exit_step`` [B] in 1..T;
    ``site_spikes`` [L]: spikes per site, summed over samples and simulated steps;
    ``site_sops`` [L] likewise for synaptic events (None without fan-out maps);
    ``active`` [T]: samples simulated at each step (Σ active = Σ exit_step);
    ``site_messages`` [L] likewise for messages (a non-zero burst is one event per synapse;
    None without fan-out maps).
    """

    logits: Tensor
    exit_step: Tensor
    site_spikes: Tensor
    site_sops: Tensor | None
    active: Tensor
    site_messages: Tensor | None = None


@torch.no_grad()
def simulate_early_exit(
    net: SpikingNetwork, x: Tensor, T: int, eta: Tensor, metric: str = "entropy"
) -> ExitResult:
    """Simulate x [B, C, H, W] one step at a time; sample i exits after the first step t
    with c_t(i) > η_t (η [T]), or at t = T, and is then removed from the simulation."""
    check_metric(metric)
    eta = torch.as_tensor(eta, dtype=torch.float32, device=x.device).reshape(-1)
    if T < 1 or eta.numel() != T:
        raise ValueError(f"need T >= 1 and one exit threshold per step, got T={T}, {eta.numel()}")
    B = x.shape[0]
    alive = torch.arange(B, device=x.device)  # original index of each active sample
    logits: Tensor | None = None
    exit_step = torch.zeros(B, dtype=torch.long, device=x.device)
    active = torch.zeros(T, dtype=torch.long, device=x.device)
    total: Tensor | None = None  # Σ outputs so far of the active samples [B', K] (float64)
    with net.running("spike", batch_size=B):
        for t in range(1, T + 1):
            active[t - 1] = alive.numel()
            y = net(x)
            total = y.double() if total is None else total + y.double()
            mean = (total / t).to(y.dtype)
            if logits is None:
                logits = torch.empty(B, *y.shape[1:], dtype=y.dtype, device=x.device)
            if t < T:
                done = confidence(mean, metric) > eta[t - 1]
            else:
                done = torch.ones_like(alive, dtype=torch.bool)
            logits[alive[done]] = mean[done]
            exit_step[alive[done]] = t
            if bool(done.all()):
                break
            if bool(done.any()):
                stay = (~done).nonzero().squeeze(1)
                net.keep(stay)
                alive, x, total = alive[stay], x[stay], total[stay]
    assert logits is not None
    spikes = torch.stack([_total(s.spike_counts, x.device) for s in net.sites])
    has_sops = bool(net.sites) and all(s.fanout is not None for s in net.sites)
    sops = messages = None
    if has_sops:
        sops = torch.stack([_total(s.sop_counts, x.device) for s in net.sites])
        messages = torch.stack([_total(s.message_counts, x.device) for s in net.sites])
    return ExitResult(logits, exit_step, spikes, sops, active, messages)


def _total(counts: list[Tensor], device: torch.device) -> Tensor:
    """Sum of a site's per-step count tensors (their batch sizes shrink as samples exit)."""
    return sum((c.double().sum() for c in counts), torch.zeros((), dtype=torch.float64)).to(device)


__all__ = ["METRICS", "ExitResult", "check_metric", "confidence", "simulate_early_exit"]
