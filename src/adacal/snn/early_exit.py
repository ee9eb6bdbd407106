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
    net: SpikingNetwork,
    x: Tensor,
    T: int,
    eta: Tensor,
    metric: str = "entropy",
    chunk: int = 1,
) -> ExitResult:
    """Simulate x [B, C, H, W]; sample i exits after the first step t with c_t(i) > η_t
    (η [T]), or at t = T, and is then removed from the simulation.

    ``chunk`` = c steps are simulated per forward pass ([c·B', ...] tensors, the analog
    prefix once per pass). Exits are still decided after every step, and each sample's output,
    exit step and counts are those of its first e steps, so the result does not depend on c:
    a sample that exits inside a pass has its steps after e simulated (wall time) but not
    counted. Larger c trades that wasted tail for fewer, larger passes.
    """
    check_metric(metric)
    eta = torch.as_tensor(eta, dtype=torch.float32, device=x.device).reshape(-1)
    if T < 1 or eta.numel() != T:
        raise ValueError(f"need T >= 1 and one exit threshold per step, got T={T}, {eta.numel()}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    B = x.shape[0]
    alive = torch.arange(B, device=x.device)  # original index of each simulated sample
    logits: Tensor | None = None
    exit_step = torch.zeros(B, dtype=torch.long, device=x.device)
    active = torch.zeros(T, dtype=torch.long, device=x.device)
    total: Tensor | None = None  # Σ outputs so far of the simulated samples [B', K] (float64)
    passes: list[tuple[Tensor, int]] = []  # (samples simulated, steps before) per forward pass
    done_steps = 0
    with net.running("spike", batch_size=B):
        while done_steps < T:
            steps = min(int(chunk), T - done_steps)
            net.set_steps(steps)
            passes.append((alive, done_steps))
            y = net(x)
            y = y.reshape(steps, alive.numel(), *y.shape[1:])
            open_ = torch.ones_like(alive, dtype=torch.bool)  # not exited yet
            for s in range(steps):
                t = done_steps + s + 1
                active[t - 1] = int(open_.sum())
                total = y[s].double() if total is None else total + y[s].double()
                mean = (total / t).to(y.dtype)
                if logits is None:
                    logits = torch.empty(B, *y.shape[2:], dtype=y.dtype, device=x.device)
                if t < T:
                    done = open_ & (confidence(mean, metric) > eta[t - 1])
                else:
                    done = open_
                logits[alive[done]] = mean[done]
                exit_step[alive[done]] = t
                open_ = open_ & ~done
                if not bool(open_.any()):
                    break
            done_steps += steps
            if not bool(open_.any()):
                break
            if not bool(open_.all()):
                stay = open_.nonzero().squeeze(1)
                net.keep(stay)
                alive, x, total = alive[stay], x[stay], total[stay]
    assert logits is not None
    masks = (
        [
            _counted(exit_step[who], before, c.shape[0])
            for (who, before), c in zip(passes, net.sites[0].spike_counts, strict=True)
        ]
        if net.sites
        else []
    )
    spikes = torch.stack([_total(s.spike_counts, masks, x.device) for s in net.sites])
    has_sops = bool(net.sites) and all(s.fanout is not None for s in net.sites)
    sops = messages = None
    if has_sops:
        sops = torch.stack([_total(s.sop_counts, masks, x.device) for s in net.sites])
        messages = torch.stack([_total(s.message_counts, masks, x.device) for s in net.sites])
    return ExitResult(logits, exit_step, spikes, sops, active, messages)


def _counted(exit_step: Tensor, before: int, steps: int) -> Tensor:
    """Which [steps, B'] entries of a pass count: step before + s + 1 ≤ the sample's exit."""
    t = torch.arange(before + 1, before + steps + 1, device=exit_step.device).unsqueeze(1)
    return (t <= exit_step.unsqueeze(0)).to(torch.float64)


def _total(counts: list[Tensor], masks: list[Tensor], device: torch.device) -> Tensor:
    """Sum of a site's per-pass count tensors [steps, B'] (B' shrinks as samples exit), each
    entry weighted by its 0/1 ``masks`` entry (the steps after a sample's exit count 0)."""
    parts = ((c.double() * m.to(c.device)).sum() for c, m in zip(counts, masks, strict=True))
    return sum(parts, torch.zeros((), dtype=torch.float64)).to(device)


__all__ = ["METRICS", "ExitResult", "check_metric", "confidence", "simulate_early_exit"]
