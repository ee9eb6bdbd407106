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
    assert err.value.key == "ann.optim.scheduler"


@pytest.mark.parametrize("scheduler", ["poly", "cosine"])
def test_segmenter_schedule_spans_every_optimiser_step(scheduler):
    """poly: lr_i = lr·(1 − i/I)^0.9 per step over I = the trainer's stepping batches."""
    import math
    from types import SimpleNamespace

    from adacal.lightning import ANNSegmenter

    module = ANNSegmenter(torch.nn.Conv2d(3, 4, 1), num_classes=4, lr=0.01, scheduler=scheduler)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    for i in range(10):
        expected = (
            0.01 * (1 - i / 10) ** 0.9
            if scheduler == "poly"
            else 0.005 * (1 + math.cos(math.pi * i / 10))
        )
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)
        opt.step()
        sched.step()


def test_segmenter_loss_ignores_void_pixels():
    from adacal.lightning import ANNSegmenter

    torch.manual_seed(0)
    module = ANNSegmenter(torch.nn.Conv2d(3, 4, 1), num_classes=4, ignore_index=255)
    x = torch.randn(2, 3, 5, 5)
    y = torch.randint(0, 4, (2, 5, 5))
    y_void = y.clone()
    y_void[:, :2] = 255
    loss_void, _, _ = module._loss((x, y_void))
    logits = module(x)
    keep = y_void != 255
    expected = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], y[keep])
    assert loss_void.item() == pytest.approx(expected.item(), rel=1e-6)
