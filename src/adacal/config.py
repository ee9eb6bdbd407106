"""Checks on the composed config that fail before any work starts; the run's command line."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from adacal.errors import ConfigError
from adacal.resume import AUTO, resume_plan
from adacal.validate import check_values

STAGES = ("ann", "snn")


def timesteps(cfg: DictConfig) -> list[int]:
    """``snn.T`` as a list of target timesteps (an int or a list in the config; :func:`validate`
    has checked that they are distinct positive integers)."""
    value = cfg.snn.T
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    return [int(v) for v in values]


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` (naming the key) for values that cannot work.

    Types and ranges of every numeric key first (:func:`adacal.validate.check_values`), then
    the choices and their combinations.
    """
    stages = list(cfg.stages)
    if not stages or any(s not in STAGES for s in stages):
        raise ConfigError("stages", f"{stages} must be a non-empty subset of {list(STAGES)}")
    check_values(cfg)
    if "snn" in stages:
        th = cfg.calibration.threshold
        if th.method == "percentile" and not 0 < float(th.percentile) <= 100:
            raise ConfigError(
                "calibration.threshold.percentile",
                f"{th.percentile} is outside (0, 100]; use e.g. 99.99",
            )
        if th.method not in ("max", "percentile", "mse"):
            raise ConfigError(
                "calibration.threshold.method", f"'{th.method}' is not one of max, percentile, mse"
            )
        if th.granularity not in ("layer", "channel"):
            raise ConfigError(
                "calibration.threshold.granularity",
                f"'{th.granularity}' is not one of layer, channel",
            )
    if not cfg.ann.checkpoint and not cfg.ann.train:
        raise ConfigError(
            "ann.checkpoint",
            "no checkpoint given and ann.train=false: "
            "pass ann.checkpoint=<state dict> or ann.train=true",
        )
    resume = cfg.ann.get("resume")
    if not cfg.ann.checkpoint and resume not in (None, "", AUTO):
        resume_plan(resume, Path.cwd())  # a missing ann.resume file fails here, before any work


def command_line() -> str:
    """The command that started this process (checkpoints' ``.cmd`` sidecar, metrics.json)."""
    return " ".join(["python", *sys.argv])
