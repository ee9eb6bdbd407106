"""An event-camera emulator (ESIM / v2e style) driven by a smooth closed-loop image motion.

Per pixel, with log intensity ``L = log(I + eps)`` (``I`` in [0, 1]) and a reference ``L_ref``
initialised to the first frame's ``L``, between two frames ``k`` and ``k + 1``:

    n_on  = max(0, floor((L_{k+1} − L_ref) / C_on))      ON events  (polarity 1)
    n_off = max(0, floor((L_ref − L_{k+1}) / C_off))     OFF events (polarity 0)
    L_ref ← L_ref + n_on·C_on − n_off·C_off

The i-th ON event of the step crosses the level ``L_ref + i·C_on`` (OFF: ``L_ref − i·C_off``);
its timestamp is interpolated linearly between the frames (ESIM, Rebecq et al. 2018; v2e,
Hu et al. 2021): ``t = t_k + (level − L_k) / (L_{k+1} − L_k) · (t_{k+1} − t_k)``, floored to
an integer µs and kept inside ``[t_k, t_{k+1})``. Per-pixel threshold mismatch
``C·(1 + σ·N(0, 1))`` (clipped at 0.01·C) is a fixed, seeded property of the sensor, as in v2e.
No shot noise, leak events or refractory period are modelled.

The motion: the image, as on the monitor of the CIFAR10-DVS recording (Li et al. 2017), moves
along a closed curve of ``radius`` pixels, resampled bilinearly (border pixels repeated).
Events are tonic's structured numpy records (:data:`EVENT_DTYPE`, fields x, y, t, p).
Everything is vectorised over pixels and images; only the frame steps are a loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# tonic.io.events_struct (tonic 1.7): the dtype tonic's transforms accept
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights: RGB -> grey intensity


@dataclass(frozen=True)
class EmulatorConfig:
    """The emulator's parameters (documented in ``conf/dataset/cifar10_events.yaml``)."""

    threshold: float = 0.2  # contrast threshold C (log units), ON and OFF
    mismatch: float = 0.03  # σ of the per-pixel threshold mismatch (relative); 0 = none
    eps: float = 0.05  # L = log(I + eps), I in [0, 1]
    radius: float = 1.0  # radius of the circular image motion (pixels)
    steps: int = 32  # frame intervals over the recording (frames = steps + 1)
    loops: int = 1  # times the image goes round the circle
    duration_us: int = 100_000  # recording length in µs
    seed: int = 0  # seeds the threshold mismatch map

    def times(self) -> Tensor:
        """Frame timestamps ``[steps + 1]`` (int64 µs), evenly spaced over ``duration_us``."""
        return torch.div(
            torch.arange(self.steps + 1) * self.duration_us, self.steps, rounding_mode="floor"
        )


class EventBatch(NamedTuple):
    """Events of several images as flat int64 arrays ``[E]``: image index ``b``, ``x``, ``y``,
    ``t`` (µs) and polarity ``p`` (1 = ON)."""

    b: Tensor
    x: Tensor
    y: Tensor
    t: Tensor
    p: Tensor


def grey(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 ``[B, 3, H, W]`` (or ``[B, 1, H, W]``) -> intensity ``[B, H, W]`` in [0, 1]."""
    x = images.to(dtype) / 255.0
    if x.shape[1] == 3:
        x = torch.einsum("bchw,c->bhw", x, torch.tensor(LUMA, dtype=x.dtype))
    else:
        x = x[:, 0]
    return x


def circle_path(steps: int, radius: float, loops: int = 1) -> Tensor:
    """Offsets ``[steps + 1, 2]`` (dx, dy in pixels) on a circle through the origin:
    ``δ(s) = r·(cos 2πs − 1, sin 2πs)``, s = loops·k/steps; closed (``δ(0) = δ(end)``)."""
    s = torch.arange(steps + 1, dtype=torch.float64) * (loops / steps)
    angle = 2 * math.pi * s
    return radius * torch.stack([torch.cos(angle) - 1.0, torch.sin(angle)], dim=1)


def translate(images: Tensor, offsets: Tensor) -> Tensor:
    """Bilinear sub-pixel shifts: ``images`` ``[B, H, W]``, ``offsets`` ``[F, 2]`` (dx, dy) ->
    ``[F, B, H, W]`` with ``out[f, b, y, x] = images[b, y − dy_f, x − dx_f]``, interpolated
    bilinearly, border pixels repeated (what ``grid_sample(padding_mode="border")`` gives, by
    four shifted slices of a replicate-padded copy: ~10x faster for many small images)."""
    b, h, w = images.shape
    pad = int(math.ceil(float(offsets.abs().max()))) + 1
    padded = F.pad(images[:, None], (pad, pad, pad, pad), mode="replicate")[:, 0]
    out = torch.empty((len(offsets), b, h, w), dtype=images.dtype)
    for f, (dx, dy) in enumerate(offsets.tolist()):
        sx, sy = -dx, -dy  # source coordinate = target + (sx, sy)
        ix, iy = math.floor(sx), math.floor(sy)
        ax, ay = sx - ix, sy - iy
        y0, x0 = pad + iy, pad + ix
        top = padded[:, y0 : y0 + h + 1, x0 : x0 + w + 1]  # [B, H + 1, W + 1]
        rows = (1 - ay) * top[:, :h] + ay * top[:, 1:]
        out[f] = (1 - ax) * rows[:, :, :w] + ax * rows[:, :, 1:]
    return out


def threshold_maps(shape: tuple[int, int], cfg: EmulatorConfig) -> tuple[Tensor, Tensor]:
    """Per-pixel ``(C_on, C_off)`` float32 ``[H, W]``: ``C·(1 + σ·N(0, 1))``, clipped at 0.01·C,
    drawn from ``torch.Generator().manual_seed(cfg.seed)`` (the same sensor for every image)."""
    gen = torch.Generator().manual_seed(int(cfg.seed))
    noise = torch.randn((2, *shape), generator=gen, dtype=torch.float64)
    c = (cfg.threshold * (1.0 + cfg.mismatch * noise)).clamp(min=0.01 * cfg.threshold)
    return c[0].float(), c[1].float()


def _crossings(
    flat: Tensor, n: Tensor, ref: Tensor, sign: float, c: Tensor, l0: Tensor, l1: Tensor
) -> tuple[Tensor, Tensor]:
    """Pixel index (into the flattened ``[B·H·W]``) and time fraction in (0, 1] of every
    crossing of one polarity in one step: the i-th crosses ``ref + sign·i·c``."""
    idx = torch.repeat_interleave(flat, n[flat])
    starts = torch.cumsum(n[flat], 0) - n[flat]
    i = torch.arange(len(idx)) - torch.repeat_interleave(starts, n[flat]) + 1  # 1..n per pixel
    level = ref[idx] + sign * i.to(ref.dtype) * c[idx]
    frac = (level - l0[idx]) / (l1[idx] - l0[idx])
    return idx, frac.clamp(0.0, 1.0)


def step_counts(
    l1: Tensor, ref: Tensor, c_on: Tensor, c_off: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One frame step, elementwise: ``(n_on, n_off, new L_ref)`` (the module's equations)."""
    n_on = torch.floor((l1 - ref) / c_on).clamp_(min=0)
    n_off = torch.floor((ref - l1) / c_off).clamp_(min=0)
    return n_on, n_off, ref + n_on * c_on - n_off * c_off


def _thresholds(c: Tensor | float, like: Tensor) -> Tensor:
    """A scalar or ``[H, W]`` threshold broadcast to ``like``'s ``[B, H, W]``, flattened."""
    return torch.as_tensor(c, dtype=like.dtype).expand(like.shape).reshape(-1)


def emulate(
    log_frames: Tensor, times: Tensor, c_on: Tensor | float, c_off: Tensor | float
) -> EventBatch:
    """Events of ``log_frames`` ``[F, B, H, W]`` at ``times`` int64 ``[F]`` (µs), with
    thresholds ``c_on``/``c_off`` (``[H, W]`` or scalars). Returns the events of all images,
    grouped by frame step (sort each image's by ``t`` for tonic: :func:`to_structured`)."""
    f, b, h, w = log_frames.shape
    c_on, c_off = _thresholds(c_on, log_frames[0]), _thresholds(c_off, log_frames[0])
    ref = log_frames[0].reshape(-1).clone()
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    for k in range(f - 1):
        l0, l1 = log_frames[k].reshape(-1), log_frames[k + 1].reshape(-1)
        n_on, n_off, new_ref = step_counts(l1, ref, c_on, c_off)
        dt = int(times[k + 1] - times[k])
        for pol, n, c, sign in ((1, n_on, c_on, 1.0), (0, n_off, c_off, -1.0)):
            n = n.long()
            flat = torch.nonzero(n).squeeze(1)
            if len(flat) == 0:
                continue
            idx, frac = _crossings(flat, n, ref, sign, c, l0, l1)
            t = int(times[k]) + torch.floor(frac * dt).long().clamp(max=max(dt - 1, 0))
            parts.append((idx, t, torch.full_like(idx, pol)))
        ref = new_ref
    if not parts:
        empty = torch.empty(0, dtype=torch.long)
        return EventBatch(empty, empty, empty, empty, empty)
    idx = torch.cat([p[0] for p in parts])
    t = torch.cat([p[1] for p in parts])
    pol = torch.cat([p[2] for p in parts])
    return EventBatch(idx // (h * w), idx % w, (idx // w) % h, t, pol)


def emulate_frame_counts(
    log_frames: Tensor, c_on: Tensor | float, c_off: Tensor | float, n_bins: int
) -> Tensor:
    """Frames int32 ``[B, n_bins, 2, H, W]`` straight from the step counts, without timestamps:
    exact when every bin holds whole steps, i.e. ``steps % n_bins == 0`` and the frame times
    evenly divide the recording (steps ``k`` with ``⌊n_bins·k/steps⌋ = j`` fill bin ``j``).
    Equal to :func:`~adacal.data.events.representation.frame_counts` of :func:`emulate`'s
    events over ``[0, duration]`` (``tests/test_events.py``); ~8x faster."""
    f, b, h, w = log_frames.shape
    steps = f - 1
    if steps % n_bins:
        raise ValueError(f"{steps} steps do not split into {n_bins} bins")
    c_on, c_off = _thresholds(c_on, log_frames[0]), _thresholds(c_off, log_frames[0])
    ref = log_frames[0].reshape(-1).clone()
    counts = torch.zeros((n_bins, 2, b * h * w), dtype=log_frames.dtype)
    for k in range(steps):
        n_on, n_off, ref = step_counts(log_frames[k + 1].reshape(-1), ref, c_on, c_off)
        j = n_bins * k // steps
        counts[j, 1] += n_on
        counts[j, 0] += n_off
    return counts.view(n_bins, 2, b, h, w).permute(2, 0, 1, 3, 4).round().to(torch.int32)


def log_frames(images: Tensor, cfg: EmulatorConfig) -> Tensor:
    """uint8 ``[B, C, H, W]`` -> ``L = log(I + eps)`` of the moving image, ``[F, B, H, W]``."""
    moving = translate(grey(images), circle_path(cfg.steps, cfg.radius, cfg.loops))
    return torch.log(moving + cfg.eps)


def emulate_images(images: Tensor, cfg: EmulatorConfig) -> EventBatch:
    """The events of a batch of uint8 images ``[B, C, H, W]`` (see the module docstring)."""
    c_on, c_off = threshold_maps(tuple(images.shape[-2:]), cfg)
    return emulate(log_frames(images, cfg), cfg.times(), c_on, c_off)


def to_structured(events: EventBatch, image: int = 0) -> np.ndarray:
    """One image's events as tonic's structured array (:data:`EVENT_DTYPE`), sorted by ``t``
    (stable: events of one step keep their order)."""
    keep = events.b == image
    order = torch.argsort(events.t[keep], stable=True)
    out = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    for name in ("x", "y", "t", "p"):
        out[name] = getattr(events, name)[keep][order].numpy()
    return out
