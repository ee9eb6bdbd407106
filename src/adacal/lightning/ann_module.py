"""Train and evaluate a plain ReLU ANN (the model that is converted afterwards).

Recipe as in SNN Calibration: cross-entropy, SGD with momentum, cosine annealing of the
learning rate per epoch over ``trainer.max_epochs`` (to 0). The fast recipe
(``conf/recipe/fast.yaml``) adds, per optimiser step k of K, a linear warm-up over the first
``warmup_epochs`` followed by a cosine to 0 (``scheduler=warmup_cosine``):
lr_k = lr · k / W for k < W, else lr · ½(1 + cos(π (k − W) / (K − W))); Nesterov momentum,
label smoothing, channels-last memory format, an optional ``torch.compile`` of the forward
and an optional EMA of the weights (:class:`adacal.lightning.ema.EMA`). Logged metrics:
``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``
(accuracies are fractions in [0, 1], micro-averaged top-1 from torchmetrics) and
``train/epoch_s`` (wall seconds of each training epoch).
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from adacal.errors import ConfigError
from adacal.lightning.ema import EMA

SCHEDULERS = ("cosine", "warmup_cosine", "none")


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at optimiser step ``step`` of ``total``: linear warm-up over
    ``warmup`` steps (from 1/warmup), then a half cosine from 1 to 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    rest = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, rest) / rest))


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
        warmup_epochs: float = 0.0,
        ema_decay: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ConfigError(
                "ann.optim.scheduler",
                f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}",
            )
        if lr <= 0:
            raise ConfigError("ann.optim.lr", f"learning rate must be > 0, got {lr}")
        if warmup_epochs < 0:
            raise ConfigError("ann.optim.warmup_epochs", f"must be >= 0, got {warmup_epochs}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ConfigError("ann.optim.ema_decay", f"must be in (0, 1) or null, got {ema_decay}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # kept out of the module tree, so state dicts keep the plain model's keys
        self.__dict__["_forward"] = torch.compile(self.model) if compile else self.model
        k = infer_num_classes(model) if num_classes is None else int(num_classes)
        self.num_classes = k
        self.train_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=k, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [B, C, H, W] → logits [B, K]."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.__dict__["_forward"](x)

    def configure_callbacks(self) -> list[L.Callback]:
        """The weight EMA when ``ema_decay`` is set."""
        decay = self.hparams.ema_decay
        return [EMA(decay)] if decay is not None else []

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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the RNG states in the checkpoint: a run resumed from it (a requeued SLURM job,
        ``ann.resume``) then shuffles its next epochs as the uninterrupted run would."""
        import random

        import numpy as np

        name, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["adacal_rng_states"] = {  # plain types: loadable with weights_only=True
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("adacal_rng_states")
        if states:
            import random

            import numpy as np

            torch.set_rng_state(states["torch"])
            version, internal, gauss = states["python"]
            random.setstate((version, tuple(internal), gauss))
            name, keys, pos, has_gauss, cached = states["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        """Logs ``train/epoch_s``: wall seconds of the epoch's training steps."""
        self.log("train/epoch_s", time.perf_counter() - self._epoch_start, on_epoch=True)

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
        if hp.scheduler == "warmup_cosine":
            total = int(self.trainer.estimated_stepping_batches)
            warmup = int(round(hp.warmup_epochs * total / self.schedule_epochs()))
            lam = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda k: warmup_cosine(k, total, warmup)
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": lam, "interval": "step", "frequency": 1},
            }
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.schedule_epochs(), eta_min=0.0
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1},
        }
