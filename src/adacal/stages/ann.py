"""The ANN stage: load the ANN (hash-checked) or train it, then score it as the converted
network at rest (BN folded, every site a ReLU) and count its MACs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from adacal import health, keys
from adacal.checkpoint import load_state_dict, save_state_dict
from adacal.checkpoint_io import AtomicCheckpointIO
from adacal.config import command_line
from adacal.metrics import energy
from adacal.resume import resume_plan
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.stages.evaluate import trainer

log = logging.getLogger("adacal")


def prepare_ann(
    cfg: DictConfig,
    model: torch.nn.Module,
    datamodule: Any,
    logger: Any,
    out_dir: Path,
    module: Callable[[], L.LightningModule],
) -> str | None:
    """Load the ANN checkpoint (hash-checked) or train the ANN; returns the state dict's sha256.

    Training starts as ``ann.resume`` says (:func:`adacal.resume.resume_plan`): with ``auto``
    a requeued job loads the ann.pt an earlier attempt finished, or resumes from its last.ckpt.
    ``module()`` builds the Lightning module that trains ``model`` (only when it trains).
    """
    if cfg.ann.checkpoint:
        return load_state_dict(model, cfg.ann.checkpoint, key="ann.checkpoint")
    plan = resume_plan(cfg.ann.get("resume"), out_dir)
    log.info("%s", plan.reason)
    if plan.action == "load":  # an earlier attempt of this (requeued) job finished training
        digest = load_state_dict(model, plan.path, key="ann.resume")
        if cfg.ann.export_to and rank_zero_only.rank == 0:  # it may have stopped before this
            dtype = cfg.ann.get("export_dtype", "float32")
            save_state_dict(model, cfg.ann.export_to, command_line(), dtype=dtype)
        return digest
    # save_top_k=1 without a monitor keeps the newest epoch; Lightning writes last.ckpt only
    # when some checkpoint was saved, so save_top_k=0 would never write one
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=out_dir / "lightning_checkpoints", save_last=True, every_n_epochs=1, save_top_k=1
    )
    fit = trainer(
        cfg,
        logger,
        callbacks=[checkpoints, health.FiniteLoss(cfg.ann.optim.get("lr"))],
        plugins=[AtomicCheckpointIO()],  # a full disk never leaves a truncated last.ckpt
    )
    fit.fit(module(), datamodule=datamodule, ckpt_path=plan.ckpt_path)
    model.eval()
    digest = None
    if fit.global_rank == 0:
        digest = save_state_dict(model, out_dir / "ann.pt", command_line())
        if cfg.ann.export_to:
            dtype = cfg.ann.get("export_dtype", "float32")
            save_state_dict(model, cfg.ann.export_to, command_line(), dtype=dtype)
            log.info("ANN state dict written to %s (sha256 %s)", cfg.ann.export_to, digest)
    return digest


def ann_metrics(
    model: torch.nn.Module,
    images: torch.Tensor,
    evaluate: Callable[..., dict[str, Any]],
    names: tuple[str, ...],
    trained: bool,
    lr: float | None,
) -> dict[str, float]:
    """Score the ANN on the test set and count its MACs and energy per image.

    ``images`` [n, C, H, W]: a few training images on the run's device (the first is the
    example for the MAC count; all of them check that the logits are finite).
    """
    example = images[:1]
    ann = convert(model, IFNeuron(), example)  # BN folded, every site a ReLU
    health.check_finite_logits(ann, images, trained, lr)
    res = evaluate(ann, 0)
    metrics = {keys.ann_key(name): res[f"{name}_t1"] for name in names}
    metrics[keys.ANN_MACS] = energy.ann_macs(ann, example)
    metrics[keys.ANN_ENERGY_UJ] = energy.energy_pj(metrics[keys.ANN_MACS], 0.0) / 1e6
    return metrics
