"""Checks on values, data size and memory that refuse a run before any work starts.

:func:`check_values` needs only the config (types and ranges of every numeric key the run
reads); :func:`check_data` needs the data set's size and :func:`check_memory` the converted
network's site sizes, both known before training. Each raises
:class:`~adacal.errors.ConfigError` naming the key and what to pass instead (``run.py``: one
line, exit status 2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from adacal import keys
from adacal.errors import ConfigError

_ABSENT = object()
SEED_MAX = 2**32 - 1  # Lightning's seed_everything range (outside it, it picks a random seed)

# (key, smallest value, null allowed): integers the run reads; a key the config lacks is skipped
INTEGER_KEYS: tuple[tuple[str, int, bool], ...] = (
    ("seed", 0, False),
    ("snn.chunk", 1, True),
    ("snn.batch_size", 1, False),
    ("calibration.num_samples", 1, False),
    ("calibration.seed", 0, False),
    ("calibration.batch_size", 1, False),
    ("calibration.threshold.candidates", 1, False),
    ("search.images", 1, False),
    ("search.sub_batch", 1, False),
    ("dataset.batch_size", 1, False),
    ("dataset.eval_batch_size", 1, True),
    ("dataset.num_workers", 0, False),
    ("dataset.train_limit", 1, True),
    ("dataset.test_limit", 1, True),
    ("neuron.phi", 1, False),
    ("neuron.phi_init", 1, False),
    ("neuron.phi_target", 1, False),
    ("neuron.phi_min", 1, False),
    ("neuron.batch_size", 1, False),
    ("neuron.sub_batch", 1, False),
    ("compression.batch_size", 1, False),
    ("compression.sub_batch", 1, False),
    ("inference.fit_batches", 1, False),
    ("inference.batch_size", 1, False),
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_ABSENT)


def integer(key: str, value: Any, minimum: int, nullable: bool = False) -> int | None:
    """``value`` when it is an integer ≥ ``minimum`` (or None when ``nullable``), else
    :class:`ConfigError` naming ``key``. ``2.5``, ``2.0``, ``"abc"`` and ``true`` are refused."""
    if value is None and nullable:
        return None
    what = f"an integer >= {minimum}" + (" or null" if nullable else "")
    if not _is_int(value):
        raise ConfigError(key, f"{value!r} is not an integer; pass {key}=<{what}>")
    if value < minimum:
        raise ConfigError(key, f"must be {what}, got {value}")
    return int(value)


def integer_list(key: str, value: Any, example: str) -> list[int]:
    """A positive integer or a list of them, each once (:class:`ConfigError` otherwise)."""
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not values:
        raise ConfigError(key, f"the list is empty; pass e.g. {key}={example}")
    for v in values:
        if not _is_int(v):
            raise ConfigError(
                key, f"{v!r} in {values} is not an integer; pass e.g. {key}={example}"
            )
        if v <= 0:
            raise ConfigError(key, f"timesteps must be positive integers, got {values}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        unique = list(dict.fromkeys(values))
        raise ConfigError(
            key,
            f"{repeated[0]} appears more than once in {values}; each value runs once: "
            f"pass {key}=[{','.join(map(str, unique))}]",
        )
    return [int(v) for v in values]


def burst(value: Any, key: str = "energy.burst") -> str:
    """``value`` when it is an energy convention (:data:`adacal.keys.BURSTS`: ``spikes``, a
    burst of k spikes costs k ACs per synapse; ``messages``, a non-zero burst costs one), else
    :class:`ConfigError` naming ``key``."""
    if not isinstance(value, str) or value not in keys.BURSTS:
        raise ConfigError(
            key,
            f"{value!r} is not an energy convention; pass {key}=spikes (a burst of k spikes "
            f"costs k ACs per synapse, the default) or {key}=messages (a non-zero burst costs one)",
        )
    return value


def check_values(cfg: DictConfig) -> None:
    """Types and ranges of the numeric keys (:data:`INTEGER_KEYS`, ``snn.T``, ``snn.anytime``,
    ``trainer.max_epochs`` / ``max_steps`` when the ANN is trained), ``energy.burst`` and
    ``snn.compile``."""
    for key, minimum, nullable in INTEGER_KEYS:
        value = _select(cfg, key)
        if value is not _ABSENT:
            integer(key, value, minimum, nullable)
    if (value := _select(cfg, "energy.burst")) is not _ABSENT:
        burst(value)
    if int(cfg.seed) > SEED_MAX:
        raise ConfigError("seed", f"must be at most {SEED_MAX}, got {cfg.seed}")
    if "snn" in list(cfg.stages):
        compile_mode(cfg.snn.compile)
        integer_list("snn.T", cfg.snn.T, "[2,4,8]")
        anytime = list(cfg.snn.anytime)
        for t in anytime:
            if not _is_int(t) or t <= 0:
                raise ConfigError("snn.anytime", f"steps must be positive integers, got {anytime}")
    if "snn" in list(cfg.stages):
        check_step_samples(cfg)
    if not cfg.ann.checkpoint and cfg.ann.train:
        check_training_length(cfg)


COMPILE_MODES = ("auto", "true", "false")  # snn.compile: the neuron loop (adacal.snn.fused)


def compile_mode(value: object, key: str = "snn.compile") -> str:
    """``snn.compile`` as one of :data:`COMPILE_MODES` (booleans accepted); anything else
    raises :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in COMPILE_MODES:
        return value.strip().lower()
    raise ConfigError(
        key,
        f"{value!r} is not one of {COMPILE_MODES}; pass {key}=auto (fused neuron loop where "
        f"torch.compile works, else the eager loop), {key}=true (require it) or {key}=false",
    )


def check_step_samples(cfg: DictConfig) -> None:
    """Each calibration step's ``samples`` (null: every calibration image) is an integer in
    1..``calibration.num_samples``: a step cannot use images the calibration set lacks."""
    total = int(cfg.calibration.num_samples)
    for i, step in enumerate(cfg.calibration.get("steps") or []):
        value = step.get("samples")
        key = f"calibration.steps.{i}.samples"
        if value is None:
            continue
        integer(key, value, 1)
        if int(value) > total:
            raise ConfigError(
                key,
                f"{value} is more than the {total} calibration images "
                f"(calibration.num_samples); pass {key}<={total} or null (all of them)",
            )


def check_training_length(cfg: DictConfig) -> None:
    """``trainer.max_epochs`` ≥ 1, or ``-1`` / null with ``trainer.max_steps`` ≥ 1 (Lightning
    reads -1 as "no limit"); ``max_steps`` is -1 (no limit) or ≥ 1."""
    epochs = _select(cfg, "trainer.max_epochs")
    steps = _select(cfg, "trainer.max_steps")
    steps = -1 if steps is _ABSENT or steps is None else steps
    if not _is_int(steps) or (steps != -1 and steps < 1):
        raise ConfigError(
            "trainer.max_steps", f"must be -1 (no limit) or an integer >= 1, got {steps!r}"
        )
    if epochs is _ABSENT:
        return
    if (epochs is None or epochs == -1) and steps >= 1:
        return
    if not _is_int(epochs) or epochs < 1:
        raise ConfigError(
            "trainer.max_epochs",
            f"must be an integer >= 1 when the ANN is trained, got {epochs!r} "
            "(0 leaves it untrained, -1 trains forever); pass e.g. trainer.max_epochs=8, "
            "or ann.checkpoint=<state dict> to skip training",
        )


def check_data(cfg: DictConfig, train_size: int) -> None:
    """``calibration.num_samples`` fits the (limited) training set: checked before training."""
    if "snn" in list(cfg.stages) and int(cfg.calibration.num_samples) > train_size:
        limit = _select(cfg, "dataset.train_limit")
        hint = f" (dataset.train_limit={limit})" if limit not in (None, _ABSENT) else ""
        raise ConfigError(
            "calibration.num_samples",
            f"needs 1..{train_size} images (training set size{hint}), got "
            f"{cfg.calibration.num_samples}; pass calibration.num_samples<={train_size}",
        )


def available_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: the GPU's free memory, or the host's MemAvailable (Linux);
    None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def calibration_bytes(num_samples: int, T: int, site_sizes: Sequence[int]) -> int:
    """Memory the calibration steps hold at once: every calibration image's activations at
    the widest site for all T steps (``snn.graph.rates_in_order`` keeps
    N·T·frontier floats), float32."""
    return int(num_samples) * int(T) * max(site_sizes, default=0) * 4


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def prefix_samples(cfg: DictConfig) -> int:
    """Calibration images a step that simulates all T steps at once keeps in memory (the
    ``reuse_prefix`` steps: bias and potential calibration); 0 when no step does."""
    total = int(cfg.calibration.num_samples)
    counts = [
        min(total, int(step.get("samples") or total))
        for step in cfg.calibration.get("steps") or []
        if step.get("reuse_prefix")
    ]
    return max(counts, default=0)


def check_memory(
    cfg: DictConfig, site_sizes: Sequence[int], device: torch.device, free: int | None = None
) -> None:
    """Refuse a T whose calibration steps would not fit in memory (:func:`calibration_bytes`
    against :func:`available_memory`, or ``free`` bytes), naming ``snn.T``. Only steps that
    keep every image's T steps (``reuse_prefix``) grow with T; without them (``calibration=none``)
    nothing is refused."""
    n = prefix_samples(cfg) if "snn" in list(cfg.stages) else 0
    if not n or not site_sizes:
        return
    free = available_memory(device) if free is None else free
    if free is None:
        return
    T = max(integer_list("snn.T", cfg.snn.T, "[2,4,8]"))
    need = calibration_bytes(n, T, site_sizes)
    if need > free:
        raise ConfigError(
            "snn.T",
            f"T={T} needs about {_size(need)} to calibrate ({n} calibration images x T x "
            f"{max(site_sizes):,} activations of the widest site x 4 B), more than the "
            f"{_size(free)} free on {device.type}; lower snn.T or calibration.num_samples",
        )
