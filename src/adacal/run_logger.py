"""The run's Lightning logger from start to end: built from ``cfg.logger`` before any work,
fed the metrics at the end, finished (marked failed on error) whatever happens.

For W&B (:mod:`adacal.reporting.wandb_log`): an online run's login is checked first, the run
starts with the full resolved config, and it ends with exit code 0, or non-zero (W&B shows a
failed run) with the one-line error in its summary. Only rank 0 talks to W&B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from adacal.reporting import wandb_log


def is_wandb(logger: Any) -> bool:
    """True for Lightning's ``WandbLogger``."""
    return type(logger).__name__ == "WandbLogger"


def start(cfg: DictConfig, config: dict[str, Any]) -> Any:
    """The configured logger (None for ``logger=none``). A W&B run is started now, with the
    resolved ``config`` (its online login checked first: ``ConfigError`` on ``logger.mode``)."""
    if not cfg.logger.get("_target_"):
        return None
    wandb = str(cfg.logger._target_).endswith("WandbLogger")
    if wandb:
        wandb_log.require_login(cfg.logger.get("mode"))
    logger = instantiate(cfg.logger)
    if wandb and rank_zero_only.rank == 0:
        wandb_log.start(logger, config, cfg.logger.get("mode"))
    return logger


def log_results(
    cfg: DictConfig,
    logger: Any,
    metrics: dict[str, float],
    names: Any,
    out_dir: Path,
    command: str,
) -> None:
    """The run's metrics to ``logger`` (nothing when None); for W&B also the curves against T
    and (``logger.log_model``) the trained ANN as an artifact."""
    if logger is None:
        return
    logger.log_metrics(metrics)
    if not is_wandb(logger) or rank_zero_only.rank != 0:
        return
    wandb_log.log_run(logger.experiment, metrics, names)  # curves against T
    if cfg.logger.get("log_model") and (out_dir / "ann.pt").is_file():
        wandb_log.log_checkpoint(
            logger.experiment,
            out_dir / "ann.pt",
            wandb_log.artifact_name("ann", cfg.dataset.name, cfg.architecture.name),
            {
                "experiment": cfg.experiment_name,
                "dataset": cfg.dataset.name,
                "architecture": cfg.architecture.name,
                "seed": cfg.seed,
                "command": command,
            },
        )


def finish(logger: Any, error: BaseException | None = None) -> None:
    """End a W&B run: exit code 0, or for ``error`` its exit status (1; 128 + signal for an
    interrupt) with ``status: failed`` and the error in the summary. Other loggers: nothing."""
    if logger is None or not is_wandb(logger) or rank_zero_only.rank != 0:
        return
    code = None if error is None else getattr(error, "exit_status", 1)
    wandb_log.finish(logger.experiment, error, code)
