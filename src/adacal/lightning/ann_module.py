"""Train and evaluate a plain ReLU ANN (the model that is converted afterwards).

Recipe as in SNN Calibration: cross-entropy, SGD with momentum, cosine annealing of the
learning rate per epoch over ``trainer.max_epochs`` (to 0). Logged metrics:
``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``
(accuracies are fractions in [0, 1], micro-averaged top-1 from torchmetrics).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from adacal.errors import ConfigError

SCHEDULERS = ("cosine", "none")


def infer_num_classes(model: nn.Module) -> int:
    """Number of outputs of the last ``nn.Linear`` in ``model`` (the classifier)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            "architecture",
            "cannot infer the number of classes: the model has "
            "no nn.Linear classifier; pass num_classes",
        )
    return linears[-1].out_features


class ANNClassifier(L.LightningModule):
    """LightningModule around an image classifier ``model: [B, C, H, W] -> [B, K]`` logits.

    ``epochs`` is only the fallback length of the cosine schedule when the trainer has no
    finite ``max_epochs``; normally the schedule spans ``trainer.max_epochs``.
    ``num_classes`` defaults to the output size of the model's last ``nn.Linear``.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        epochs: int = 300,
        nesterov: bool = False,
        label_smoothing: float = 0.0,
        scheduler: str = "cosine",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ConfigError(
                "ann.scheduler",
                f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}",
            )
        if lr <= 0:
            raise ConfigError("ann.lr", f"learning rate must be > 0, got {lr}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        k = infer_num_classes(model) if num_classes is None else int(num_classes)
        self.num_classes = k
        self.train_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=k, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [B, C, H, W] → logits [B, K]."""
        return self.model(x)

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        return loss, logits.argmax(dim=1), y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._step(batch)
        self.train_acc(preds, y)
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=y.shape[0],
        )
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=y.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.val_acc(preds, y)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=y.shape[0])
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=y.shape[0])

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_acc(preds, y)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=y.shape[0])
        self.log("test/acc", self.test_acc, on_epoch=True, batch_size=y.shape[0])

    def schedule_epochs(self) -> int:
        """Length of the cosine schedule: ``trainer.max_epochs`` when finite, else ``epochs``."""
        max_epochs = getattr(self._trainer, "max_epochs", None) if self._trainer else None
        if max_epochs is not None and max_epochs > 0:
            return int(max_epochs)
        return int(self.hparams.epochs)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
            nesterov=hp.nesterov,
        )
        if hp.scheduler == "none":
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.schedule_epochs(), eta_min=0.0
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1},
        }
