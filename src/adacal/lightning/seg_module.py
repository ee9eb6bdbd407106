"""Train and evaluate a plain ReLU segmentation network (converted afterwards).

The DeepLab recipe as defaults: per-pixel cross-entropy ignoring ``ignore_index``, SGD
(lr 0.007, momentum 0.9, weight decay 1e-4) with the poly schedule
lr_i = lr · (1 − i / I)^0.9 over all I optimiser steps (or cosine per step, or none).
Logged: ``train/loss``, ``val/miou``, ``val/pixel_acc``, ``test/miou``, ``test/pixel_acc``
(fractions in [0, 1]; mIoU from torchmetrics, void pixels ignored).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from adacal.errors import ConfigError

SCHEDULERS = ("poly", "cosine", "none")


class ANNSegmenter(L.LightningModule):
    """LightningModule around ``model: [B, C, H, W] -> [B, K, H, W]`` logits.

    ``epochs`` is only the fallback schedule length when the trainer has no finite
    ``max_epochs``. ``nesterov`` and ``label_smoothing`` as in the classifier.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        ignore_index: int = 255,
        lr: float = 0.007,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        nesterov: bool = False,
        label_smoothing: float = 0.0,
        scheduler: str = "poly",
        power: float = 0.9,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ConfigError(
                "ann.optim.scheduler", f"'{scheduler}' is not one of {', '.join(SCHEDULERS)}"
            )
        if lr <= 0:
            raise ConfigError("ann.optim.lr", f"learning rate must be > 0, got {lr}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.num_classes = int(num_classes)
        metric = {"num_classes": self.num_classes, "ignore_index": int(ignore_index)}
        self.val_miou = MulticlassJaccardIndex(average="macro", **metric)
        self.val_acc = MulticlassAccuracy(average="micro", **metric)
        self.test_miou = MulticlassJaccardIndex(average="macro", **metric)
        self.test_acc = MulticlassAccuracy(average="micro", **metric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [B, C, H, W] → logits [B, K, H, W]."""
        return self.model(x)

    def _loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(
            logits,
            y,
            ignore_index=self.hparams.ignore_index,
            label_smoothing=self.hparams.label_smoothing,
        )
        return loss, logits.argmax(1), y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _, y = self._loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 sync_dist=True, batch_size=y.shape[0])  # fmt: skip
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        loss, preds, y = self._loss(batch)
        miou, acc = getattr(self, f"{stage}_miou"), getattr(self, f"{stage}_acc")
        miou.update(preds, y)
        acc.update(preds, y)
        n = y.shape[0]
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=n)
        self.log(f"{stage}/miou", miou, on_epoch=True, prog_bar=True, batch_size=n)
        self.log(f"{stage}/pixel_acc", acc, on_epoch=True, batch_size=n)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _total_steps(self) -> int:
        trainer = self._trainer
        steps = getattr(trainer, "estimated_stepping_batches", None) if trainer else None
        if steps is not None and math.isfinite(steps) and steps > 0:
            return int(steps)
        return int(self.hparams.epochs)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum,
            weight_decay=hp.weight_decay, nesterov=hp.nesterov,
        )  # fmt: skip
        if hp.scheduler == "none":
            return optimizer
        total = max(1, self._total_steps())
        if hp.scheduler == "poly":
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda i: max(0.0, 1.0 - i / total) ** hp.power
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
