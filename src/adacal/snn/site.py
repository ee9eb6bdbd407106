"""A neuron site: the module that replaces one ReLU call in the converted network.

A site runs in one of four modes (DESIGN.md §3):

- ``relu``: the ANN, out = max(z, 0).
- ``observe``: the ANN, and the pre-activation z is recorded (threshold fitting).
- ``surrogate``: the clip-floor rate of the neuron for a constant input
  (:func:`adacal.snn.neurons.surrogate_floor`), straight-through for gradients.
- ``spike``: the spiking neuron, simulated over the timesteps folded into the batch.

In ``spike`` mode the input is ``[Tc·B, C, ...]`` (Tc timesteps of a batch of B,
time-major) and the state (membrane potential ``v``) persists across calls until
:meth:`Site.reset` is called; so a long simulation runs in chunks of timesteps.

SNN-only corrections live on the site, not in the ANN's weights: a per-channel
``bias`` (bias calibration, added to z) and a per-neuron ``v_delta`` (potential
calibration, added to v(0)). This is exact for any producer of z (a conv, a
residual add, a concatenation), so calibration needs no per-architecture code.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from adacal.snn import fused
from adacal.snn.neurons import IFNeuron, surrogate_floor

MODES = ("relu", "observe", "surrogate", "spike")


def channel_view(t: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-channel vector [C] (or a scalar [1]) to broadcast along dim 1 of ``like``."""
    if t.numel() == 1:
        return t.reshape(())
    return t.reshape(1, -1, *([1] * (like.dim() - 2)))


class Site(nn.Module):
    """One spiking neuron site (the converted form of one ReLU call).

    Buffers: ``theta`` [1] or [C] (threshold), ``bias`` [1] or [C] (bias calibration),
    ``v_delta`` [C, ...] or [1] (potential calibration). State: ``v`` [B, C, ...].
    """

    def __init__(self, neuron: IFNeuron, index: int, name: str = "") -> None:
        super().__init__()
        self.neuron = neuron
        self.index = index
        self.label = name
        self.mode = "relu"
        self.T = 1
        self.phi = neuron.max_spikes()
        self.batch_size = 0
        self.v: Tensor | None = None
        self.recorded: list[Tensor] = []
        self.spike_counts: list[Tensor] = []
        self.sop_counts: list[Tensor] = []
        self.message_counts: list[Tensor] = []
        self.count_spikes = True
        self.compiled = "auto"  # snn.compile: fused neuron loop (adacal.snn.fused) or eager
        self.neurons_per_sample = 0
        self.register_buffer("theta", torch.ones(1))
        self.register_buffer("bias", torch.zeros(1))
        self.register_buffer("v_delta", torch.zeros(1))
        # synapses one spike of each neuron drives [C, ...] (adacal.metrics.energy); None: no SOPs
        self.register_buffer("fanout", None, persistent=False)

    def extra_repr(self) -> str:
        where = f"index={self.index}, label={self.label!r}"
        return f"{where}, mode={self.mode}, T={self.T}, phi={self.phi}"

    # --- state ---------------------------------------------------------------
    def reset(self, batch_size: int) -> None:
        """Forget the membrane potential and spike counts; the next call starts at t = 0."""
        self.batch_size = batch_size
        self.v = None
        self.spike_counts = []
        self.sop_counts = []
        self.message_counts = []

    def keep(self, index: Tensor) -> None:
        """Keep only the samples ``index`` [B'] of the running simulation (early exit)."""
        if self.v is not None:
            self.v = self.v[index]
        self.batch_size = int(index.numel())

    def v0(self, like: Tensor) -> Tensor:
        """Total offset over T steps, broadcastable to ``like`` [B, C, ...]: θ/2 + v_delta."""
        theta = channel_view(self.theta, like)
        return theta / 2 + self._delta(like)

    def _delta(self, like: Tensor) -> Tensor:
        return self.v_delta if self.v_delta.numel() > 1 else self.v_delta.reshape(())

    # --- forward -------------------------------------------------------------
    def forward(self, z: Tensor) -> Tensor:
        if self.mode == "relu":
            return torch.relu(z)
        if self.mode == "observe":
            self.recorded.append(z.detach())
            return torch.relu(z)
        if self.mode == "surrogate":
            return self.surrogate(z)
        return self.spike(z)

    def surrogate(self, z: Tensor) -> Tensor:
        """Clip-floor rate [N, C, ...] of this site for a constant input z [N, C, ...]."""
        theta = channel_view(self.theta, z)
        zb = z + channel_view(self.bias, z)
        return surrogate_floor(zb, theta, self.T, self.v0(z), self.T * self.phi)

    def spike(self, z: Tensor) -> Tensor:
        """Simulate Tc steps: z [Tc·B, C, ...] -> spike output (values n·θ) of the same shape.

        Per step t: x_t = z_t + b (+ θ/(2T) with ``offset="shift"``), then the neuron's step
        (v ← v + x_t; s_t = n_t·θ; v ← v − s_t). The state v [B, C, ...] and the output keep
        the activations' dtype. The chunk runs as one fused kernel (:mod:`adacal.snn.fused`)
        unless ``compiled`` is ``"false"``, the neuron has its own ``step``, or compilation
        is unavailable (``"auto"``); the eager loop of in-place steps gives the same bits.
        Spike counts per step and sample ([Tc, B]; a burst of k spikes counts k) are
        appended to ``spike_counts``.
        """
        B = self.batch_size or z.shape[0]
        steps = z.shape[0] // B
        z = z.reshape(steps, B, *z.shape[1:])
        theta = channel_view(self.theta, z[0]).clamp_min(1e-12).to(z.dtype)
        if self.v is None:
            start = self._delta(z[0]) + (theta / 2 if self.neuron.offset == "initial" else 0.0)
            self.v = (torch.zeros_like(z[0]) + start).to(z.dtype)
        out, key = self._fused(z, theta) if fused.supports(self.neuron) else (None, None)
        if out is None:
            start = time.perf_counter()
            out = self._eager(z, theta)
            if key is not None:  # snn.compile=auto is renting the eager loop for this kernel
                fused.pay_rent(key, time.perf_counter() - start)
        if self.count_spikes:
            self._count(out)
        return out.reshape(steps * B, *z.shape[2:])

    def _shift(self, theta: Tensor) -> Tensor | None:
        """The per-step input shift θ/(2T) (``offset="shift"``), else None."""
        return theta / (2 * self.T) if self.neuron.offset == "shift" else None

    def _eager(self, z: Tensor, theta: Tensor) -> Tensor:
        """The reference loop: z [Tc, B, C, ...] -> out [Tc, B, C, ...], in-place steps."""
        drive = z + channel_view(self.bias, z[0]).to(z.dtype)
        shift = self._shift(theta)
        if shift is not None:
            drive = drive + shift
        out = torch.empty_like(z)
        assert self.v is not None
        for t in range(z.shape[0]):
            self.neuron.step_(self.v, drive[t], theta, out[t], self.phi)
        return out

    def _fused(self, z: Tensor, theta: Tensor) -> tuple[Tensor | None, tuple | None]:
        """(the fused chunk (:func:`adacal.snn.fused.run`) or None for the eager loop, the
        kernel key when the eager loop runs in its place under ``auto``)."""
        mode = fused.compile_mode(self.compiled, "site.compiled")
        if mode == "false" or self.v is None:
            return None, None
        steps, B, C = z.shape[0], z.shape[1], z.shape[2] if z.dim() > 2 else 1
        S = z[0, 0].numel() // C
        per_channel = [t.to(z.dtype).expand(C).reshape(C, 1) for t in (self.theta, self.bias)]
        th = per_channel[0].clamp_min(1e-12)
        shift = self._shift(th)
        v = self.v.reshape(B, C, S)
        z4 = z.reshape(steps, B, C, S)
        res = fused.run(mode, z4, v, th, per_channel[1], shift, self.phi)
        if res is None:
            return None, (fused.kernel_key(z4, self.phi, shift) if mode == "auto" else None)
        out, v_new = res
        self.v = v_new.reshape(self.v.shape)
        return out.reshape(z.shape), None

    def _count(self, out: Tensor) -> None:
        """Spikes and, with ``fanout``, synaptic events and messages per step and sample.

        out [Tc, B, C, ...] holds n·θ (n the spikes of each neuron in the step). Per step t and
        sample b, with f_i the fan-out of neuron i (:mod:`adacal.metrics.energy`):

            spikes   = Σ_i n_i
            SOPs     = Σ_i n_i·f_i              (a burst of k spikes is k events per synapse)
            messages = Σ_i 1[n_i > 0]·f_i       (a non-zero burst is one event per synapse)

        Appends [Tc, B] tensors to ``spike_counts`` (and ``sop_counts``, ``message_counts``).
        One mat-vec for spikes and SOPs; for φ = 1 (n ∈ {0, 1}) messages are the SOPs (the
        same tensor), for φ > 1 one more mat-vec of the firing mask. Counts are float32 even
        for bf16 / fp16 activations (a low-precision sum would round the counts).
        """
        if out.dtype in (torch.bfloat16, torch.float16):
            out = out.float()
        steps, B, shape = out.shape[0], out.shape[1], out.shape[2:]
        ones = torch.ones(1, *shape, device=out.device, dtype=out.dtype)
        inv = (ones / channel_view(self.theta.clamp_min(1e-12), ones)).reshape(-1)
        weights = [inv]
        if self.fanout is not None:
            fan = self.fanout.to(out.dtype).expand(shape).reshape(-1)
            weights.append(inv * fan)
        flat = out.reshape(steps * B, -1)
        counts = flat @ torch.stack(weights, 1)  # [Tc·B, 1 or 2]
        self.spike_counts.append(counts[:, 0].reshape(steps, B))
        if self.fanout is not None:
            sops = counts[:, 1].reshape(steps, B)
            self.sop_counts.append(sops)
            messages = sops if self.phi == 1 else ((flat > 0).to(out.dtype) @ fan).reshape(steps, B)
            self.message_counts.append(messages)
