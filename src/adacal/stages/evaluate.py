"""One test-set pass: the ANN (T = 0) or the SNN at T steps, through Lightning."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from adacal.lightning import SNNEvaluator


def trainer(cfg: DictConfig, logger: Any = None, **overrides: Any) -> L.Trainer:
    """The configured Lightning trainer (``cfg.trainer``) with ``overrides``."""
    return instantiate(cfg.trainer, logger=logger if logger is not None else False, **overrides)


def evaluate(
    cfg: DictConfig,
    net: Any,
    datamodule: Any,
    T: int,
    exit_thresholds: Any = None,
    scorer: Any = None,
    replay: Any = (),
) -> dict[str, Any]:
    """Test-set pass through :class:`SNNEvaluator` (T = 0: the ANN; IAT with exit thresholds
    η [T]; with ``replay`` exit policies also scored from the full pass); returns the evaluator's
    results (scores at every anytime step, spikes, SOPs)."""
    extra: dict[str, Any] = {
        "scorer": scorer if scorer is not None else instantiate(cfg.task.scorer)
    }
    if exit_thresholds is not None:
        extra.update(
            exit_thresholds=exit_thresholds,
            confidence=cfg.inference.confidence,
            exit_chunk=int(cfg.inference.get("chunk", 1)),
        )
    evaluator = SNNEvaluator(
        net,
        datamodule.test_set,
        T,
        anytime=cfg.snn.anytime,
        chunk=cfg.snn.chunk,
        batch_size=cfg.snn.batch_size,
        num_workers=cfg.dataset.num_workers,
        replay=replay,
        **extra,
    )
    # float32 whatever the training precision: the simulation's thresholds and spike counts
    # are not defined under autocast
    run = trainer(cfg, None, use_distributed_sampler=False, max_epochs=1, precision="32-true")
    run.test(evaluator, verbose=False)
    return evaluator.results
