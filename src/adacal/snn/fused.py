"""The fused neuron loop: one compiled kernel per chunk of Tc timesteps of a site.

A site in ``spike`` mode (:meth:`adacal.snn.site.Site.spike`) advances its neurons over a
chunk of Tc steps. For the IF and burst neurons (every class whose ``step`` is
:meth:`adacal.snn.neurons.IFNeuron.step`) this module runs the whole chunk as one function,

    x_t = z_t + b (+ θ/(2T) with ``offset="shift"``)
    v ← v + x_t;  n_t = 1[v ≥ θ] (φ = 1) or clip(floor(v/θ), 0, φ);  s_t = n_t·θ;  v ← v − s_t

for t = 1 … Tc, compiled by ``torch.compile`` (inductor: one C++/OpenMP loop on the CPU, one
Triton kernel on CUDA) that reads z and v once and writes s and v once: no per-step
temporaries. The arithmetic is that of :func:`adacal.snn.neurons.if_step` and
:func:`adacal.snn.neurons.burst_step`, op for op, so the spikes are bitwise those of the
eager loop (``tests/test_fused.py``).

Shapes: z [Tc, B, C, S] (S = H·W, or 1 for a [B, C] site), v [B, C, S] (the activations'
dtype), θ, b and the shift [C, 1] (a per-site scalar is expanded to C channels, so the scalar
and the per-channel cases share a kernel). The kernel is compiled with symbolic sizes: B, C,
S and φ do not cause recompiles (duck sizing is off, so B = C by chance adds no guard); Tc
(the loop is unrolled), φ = 1 against φ > 1, the offset, the dtype and the device do, and so
do sizes 0 and 1 (PyTorch specialises them). A run compiles a handful of kernels (e.g. Tc =
chunk and the last, shorter chunk, for IF and for burst sites); each first call of a new
(Tc, φ = 1 or not, offset, S = 1, B = 1, dtype, device) is timed and logged, and the seconds
add up in :func:`compile_seconds`.

``snn.compile`` (:func:`compile_mode`): ``auto`` (the default) uses the fused kernel where
``torch.compile`` works and the work repays a compilation, and falls back, exactly and with one
log line, to the eager loop where it does not work (no C++ compiler, an unsupported device, a
failing backend); ``true`` always uses it (errors propagate); ``false`` always runs the eager
loop. Both loops give the same bits, so mixing them is harmless. "Repays" is the ski-rental
rule: a kernel key runs eagerly ("rents") until its eager chunks have cost
:data:`RENT_SECONDS` in this process, about what compiling it costs, and is compiled ("bought")
then; so a short run (the digits default job, a unit test) never pays for a compilation and a
long one (a CIFAR test set at T = 32) pays at most about twice the better of the two choices.
Chunks under :data:`MIN_ELEMENTS` elements always run eagerly.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import torch
import torch.fx.experimental._config as shape_config
from torch import Tensor

from adacal import validate
from adacal.snn.neurons import IFNeuron, burst_step, if_step

log = logging.getLogger("adacal")

MODES = validate.COMPILE_MODES
KEY = "snn.compile"
MIN_ELEMENTS = 2**18  # auto: smaller chunks (Tc·B·C·S) run the eager loop, no compilation
RENT_SECONDS = 20.0  # auto: eager seconds a kernel key runs before it is compiled (ski rental)

_state: dict[str, object] = {"available": True, "seconds": 0.0, "kernels": 0}
_seen: set[tuple[object, ...]] = set()
_rent: dict[tuple[object, ...], float] = {}


def compile_mode(value: object, key: str = KEY) -> str:
    """``snn.compile`` as one of ``auto``, ``true``, ``false`` (booleans accepted); anything
    else raises :class:`~adacal.errors.ConfigError` naming ``key``
    (:func:`adacal.validate.compile_mode`)."""
    return validate.compile_mode(value, key)


def supports(neuron: IFNeuron) -> bool:
    """The fused kernel implements this neuron's dynamics (its ``step`` is the IF/burst one)."""
    return getattr(type(neuron), "step", None) is IFNeuron.step


def available() -> bool:
    """False once a compilation failed under ``auto`` (the process then runs the eager loop)."""
    return bool(_state["available"])


def compile_seconds() -> float:
    """Seconds spent in first calls of new kernels (compilation) in this process so far."""
    return float(_state["seconds"])  # type: ignore[arg-type]


def kernels_compiled() -> int:
    """How many kernels (distinct compile keys) this process has compiled."""
    return int(_state["kernels"])  # type: ignore[call-overload]


def chunk(
    z: Tensor, v: Tensor, theta: Tensor, bias: Tensor, shift: Tensor | None, phi: int
) -> tuple[Tensor, Tensor]:
    """Tc steps of the IF (φ = 1) or burst (φ > 1) neuron, as one traceable function.

    Args:
        z: pre-activations [Tc, B, C, S]; v: potential [B, C, S] (not modified);
        theta, bias, shift: [C, 1] (shift None: no per-step offset); phi: spikes per step.
    Returns:
        (s [Tc, B, C, S] with s_t = n_t·θ, the potential after the chunk [B, C, S]).
    """
    outs = []
    for t in range(z.shape[0]):
        x = z[t] + bias
        if shift is not None:
            x = x + shift
        out, v = if_step(v, x, theta) if phi == 1 else burst_step(v, x, theta, phi)
        outs.append(out)
    return torch.stack(outs), v


@functools.cache
def _compiled() -> Callable[..., tuple[Tensor, Tensor]]:
    return torch.compile(chunk, dynamic=True)


def reset() -> None:
    """Forget the failure flag, the timings and which kernels were seen (tests); dynamo keeps
    its compiled code, so a kernel seen again is not compiled again."""
    _seen.clear()
    _rent.clear()
    _state.update(available=True, seconds=0.0, kernels=0)


def kernel_key(z: Tensor, phi: int, shift: Tensor | None) -> tuple[object, ...]:
    """What a compiled kernel is specialised on, for z [Tc, B, C, S]: Tc, φ = 1 or not, the
    offset, sizes of 1 (B, S), dtype and device."""
    key = (z.shape[0], phi == 1, shift is None, z.shape[1] == 1, z.shape[3] == 1)
    return (*key, z.dtype, z.device.type)


def pay_rent(key: tuple[object, ...], seconds: float) -> None:
    """Record ``seconds`` of eager loop spent on chunks of ``key`` (``auto``'s ski rental)."""
    _rent[key] = _rent.get(key, 0.0) + seconds


def run(
    mode: str, z: Tensor, v: Tensor, theta: Tensor, bias: Tensor, shift: Tensor | None, phi: int
) -> tuple[Tensor, Tensor] | None:
    """:func:`chunk` compiled; None when the caller must run the eager loop (``mode`` false;
    ``auto`` on a chunk under :data:`MIN_ELEMENTS`, on a key whose eager rent is under
    :data:`RENT_SECONDS` (the caller then reports it, :func:`pay_rent`), or after a failed
    compilation, logged once)."""
    if mode == "false" or (mode == "auto" and (not available() or z.numel() < MIN_ELEMENTS)):
        return None
    key = kernel_key(z, phi, shift)
    first = key not in _seen
    if mode == "auto" and first and _rent.get(key, 0.0) < RENT_SECONDS:
        return None  # still renting: the caller runs the eager loop and pays the rent
    start = time.perf_counter()
    try:
        with shape_config.patch(use_duck_shape=False):  # B = C by chance is no guard
            out = _compiled()(z, v, theta, bias, shift, phi)
    except Exception as err:  # no compiler, unsupported device or dtype, backend failure
        if mode == "true":
            raise
        _state["available"] = False
        log.warning(
            "snn.compile=auto: torch.compile failed (%s: %s); running the eager neuron loop "
            "(same numbers)",
            type(err).__name__,
            str(err).splitlines()[0] if str(err) else "",
        )
        return None
    if first:
        seconds = time.perf_counter() - start
        _seen.add(key)
        _state["seconds"] = compile_seconds() + seconds
        _state["kernels"] = kernels_compiled() + 1
        log.info(
            "compiled the fused neuron loop (Tc=%d, %s, %s, %s) in %.1f s",
            z.shape[0],
            "IF" if phi == 1 else "burst",
            z.dtype,
            z.device.type,
            seconds,
        )
    return out


__all__ = [
    "MIN_ELEMENTS",
    "MODES",
    "RENT_SECONDS",
    "available",
    "chunk",
    "compile_mode",
    "compile_seconds",
    "kernel_key",
    "kernels_compiled",
    "pay_rent",
    "reset",
    "run",
    "supports",
]
