"""Event representations: frames of N time bins × 2 polarities, a voxel grid, and the resize
and uint8 storage every event data set here shares.

Frames: event ``(x, y, t, p)`` adds 1 to ``frames[bin, p, y, x]`` with
``bin = min(floor(N·(t − t_start) / (t_end − t_start)), N − 1)``; ``[t_start, t_end]`` is
the recording's first to last event unless given (the emulator passes its fixed duration).
Every event lands in a bin, so the total count is preserved. tonic's ``ToFrame(n_time_bins=N)``
uses windows of ``(t_end − t_start) // N`` µs and drops the events past the last window (at
least the last event); otherwise the two agree (``tests/test_events.py``).

The network input stacks the frames as ``2·N`` channels, bin-major (channel ``2·bin + p``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def frame_counts(
    b: Tensor,
    x: Tensor,
    y: Tensor,
    t: Tensor,
    p: Tensor,
    n_images: int,
    size: tuple[int, int],
    n_bins: int,
    t_start: Tensor | int,
    t_end: Tensor | int,
) -> Tensor:
    """Event counts int32 ``[n_images, n_bins, 2, H, W]`` from flat event arrays ``[E]``
    (image index ``b``; ``size = (W, H)``; ``t_start``/``t_end``: scalars or per image ``[B]``).
    Events outside the ``W × H`` sensor are dropped."""
    w, h = size
    t_start = torch.as_tensor(t_start, dtype=torch.long).expand(n_images)
    t_end = torch.as_tensor(t_end, dtype=torch.long).expand(n_images)
    span = (t_end - t_start).clamp(min=1)[b]
    rel = t.long() - t_start[b]
    bins = torch.div(n_bins * rel, span, rounding_mode="floor").clamp(0, n_bins - 1)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = (((b * n_bins + bins) * 2 + p.long()) * h + y) * w + x
    counts = torch.bincount(flat[inside].long(), minlength=n_images * n_bins * 2 * h * w)
    return counts.to(torch.int32).view(n_images, n_bins, 2, h, w)


def _fields(events: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x, y, t, p of a tonic structured array as int64 tensors (p: 1 = ON, 0 = OFF)."""
    get = lambda name: torch.from_numpy(np.asarray(events[name]).astype(np.int64))  # noqa: E731
    return get("x"), get("y"), get("t"), (get("p") > 0).long()


def to_frames(
    events: np.ndarray,
    sensor_size: Sequence[int],
    n_bins: int,
    t_start: int | None = None,
    t_end: int | None = None,
) -> np.ndarray:
    """tonic events (fields x, y, t, p) -> int32 ``[n_bins, 2, H, W]`` (tonic's T×P×H×W layout);
    ``sensor_size = (W, H, 2)`` as tonic writes it."""
    x, y, t, p = _fields(events)
    w, h = int(sensor_size[0]), int(sensor_size[1])
    if len(t) == 0:
        return np.zeros((n_bins, 2, h, w), dtype=np.int32)
    start = int(t.min()) if t_start is None else int(t_start)
    end = int(t.max()) if t_end is None else int(t_end)
    b = torch.zeros_like(x)
    return frame_counts(b, x, y, t, p, 1, (w, h), n_bins, start, end)[0].numpy()


def to_voxel_grid(events: np.ndarray, sensor_size: Sequence[int], n_bins: int) -> np.ndarray:
    """Voxel grid float64 ``[n_bins, H, W]`` (Zhu et al. 2019, as in E2VID): time normalised to
    ``τ = (N − 1)(t − t_0)/(t_last − t_0)``, each event adds its polarity (±1) to bins ⌊τ⌋ and
    ⌊τ⌋ + 1 with weights ``1 − (τ − ⌊τ⌋)`` and ``τ − ⌊τ⌋``; the grid sums to #ON − #OFF.
    (tonic 1.7's ``ToVoxelGrid`` normalises to [0, N] and drops the last event; with a boolean
    ``p`` its OFF events also count +1.)"""
    x, y, t, p = _fields(events)
    w, h = int(sensor_size[0]), int(sensor_size[1])
    grid = torch.zeros(n_bins * h * w, dtype=torch.float64)
    if len(t) == 0:
        return grid.view(n_bins, h, w).numpy()
    span = max(int(t.max() - t.min()), 1)
    tau = (n_bins - 1) * (t - t.min()).double() / span
    left = tau.floor().long()
    frac = tau - left
    pol = 2.0 * p.double() - 1.0
    pixel = y * w + x
    grid.index_add_(0, left * h * w + pixel, pol * (1.0 - frac))
    right = left + 1 < n_bins
    grid.index_add_(0, (left[right] + 1) * h * w + pixel[right], (pol * frac)[right])
    return grid.view(n_bins, h, w).numpy()


def as_channels(frames: Tensor) -> Tensor:
    """``[N, n_bins, 2, H, W]`` -> ``[N, 2·n_bins, H, W]`` (channel ``2·bin + polarity``)."""
    n, bins, pol, h, w = frames.shape
    return frames.reshape(n, bins * pol, h, w)


def resize_counts(frames: Tensor, size: int) -> Tensor:
    """Count maps ``[N, C, H, W]`` -> float ``[N, C, size, size]``: zero-padded to a centred
    square of side ``L = max(H, W)`` (as the authors' code pads before resizing), then summed
    over ``L/size × L/size`` areas when shrinking (the total count is kept: adaptive average
    pooling × (L/size)²), or repeated (nearest) when growing (per-pixel counts are kept)."""
    n, c, h, w = frames.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    x = F.pad(frames.float(), (left, side - w - left, top, side - h - top))
    if side > size:
        return F.adaptive_avg_pool2d(x, size) * (side / size) ** 2
    if side < size:
        return F.interpolate(x, size=(size, size), mode="nearest")
    return x


def to_uint8(counts: Tensor) -> Tensor:
    """Counts -> uint8, rounded and saturated at 255 (the storage of every event data set)."""
    return counts.round().clamp_(0, 255).to(torch.uint8)
