"""ANNClassifier: learns a separable toy problem; cosine learning rate per epoch."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from adacal.errors import ConfigError
from adacal.lightning import ANNClassifier

EPOCHS = 3
LR = 0.05


def _blobs(n: int, seed: int) -> TensorDataset:
    """Two gaussian blobs as 1x8x8 images: class 0 around -1, class 1 around +1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5 + (2.0 * y - 1.0).view(-1, 1, 1, 1)
    return TensorDataset(x, y)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


class _RecordLR(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_trains_and_follows_cosine():
    L.seed_everything(0, verbose=False)
    module = ANNClassifier(_model(), lr=LR, weight_decay=0.0, epochs=100)
    assert module.num_classes == 2
    record = _RecordLR()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
    )
    train = DataLoader(_blobs(256, seed=1), batch_size=32, shuffle=True)
    val = DataLoader(_blobs(128, seed=2), batch_size=64)
    trainer.fit(module, train, val)

    metrics = trainer.callback_metrics
    assert metrics["val/acc"] > 0.9
    assert {"train/loss_epoch", "train/acc", "val/loss", "val/acc"} <= set(metrics)

    # per-epoch cosine over trainer.max_epochs (not the fallback `epochs`)
    expected = [0.5 * LR * (1 + math.cos(math.pi * e / EPOCHS)) for e in range(EPOCHS + 1)]
    final_lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert record.lrs + [final_lr] == pytest.approx(expected, abs=1e-12)

    results = trainer.test(module, val, verbose=False)
    assert results[0]["test/acc"] > 0.9


def test_bad_scheduler_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        ANNClassifier(_model(), scheduler="step")
    assert err.value.key == "ann.scheduler"
