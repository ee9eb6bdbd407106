"""The fast ANN recipe: warm-up + cosine per step, the weight EMA, channels-last, the recipe
config group, and VGG-16 training steps that lower the loss without NaN."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from adacal.errors import ConfigError
from adacal.lightning.ann_module import ANNClassifier, warmup_cosine
from adacal.lightning.ema import EMA, ema_update
from adacal.models.vgg import vgg16

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def test_warmup_cosine_factor_follows_its_equation() -> None:
    total, warm = 100, 10
    assert warmup_cosine(0, total, warm) == pytest.approx(0.1)
    assert warmup_cosine(9, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(10, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(55, total, warm) == pytest.approx(0.5)  # halfway through the cosine
    assert warmup_cosine(100, total, warm) == pytest.approx(0.0, abs=1e-12)
    k = 37
    assert warmup_cosine(k, total, warm) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * (k - warm) / (total - warm)))
    )
    assert warmup_cosine(0, total, 0) == pytest.approx(1.0)  # no warm-up: plain cosine


def test_ema_update_is_the_exponential_average_and_copies_integer_buffers() -> None:
    avg = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    ema_update(avg, {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}, 0.75)
    assert torch.allclose(avg["w"], torch.tensor([1.5, 3.0]))
    assert int(avg["n"]) == 7


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    )


def fit(module: ANNClassifier, epochs: int, callback: L.Callback, seed: int = 0) -> L.Trainer:
    """Train ``module`` on 64 seeded random 8×8 images (4 batches an epoch), quietly."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 1, 8, 8, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    return trainer


def test_warmup_cosine_schedule_steps_per_optimiser_step() -> None:
    module = ANNClassifier(tiny_model(), lr=0.1, scheduler="warmup_cosine", warmup_epochs=1)
    seen: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, *args) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    fit(module, 2, Record())
    want = [0.1 * warmup_cosine(k, 8, 4) for k in range(8)]
    assert seen == pytest.approx(want)


def test_ema_callback_leaves_the_average_in_the_model_after_training() -> None:
    module = ANNClassifier(tiny_model(), lr=0.05, ema_decay=0.5, scheduler="none")
    callbacks = module.configure_callbacks()
    assert len(callbacks) == 1 and isinstance(callbacks[0], EMA)
    ema_state: dict[str, torch.Tensor] = {}

    class Snapshot(L.Callback):  # the raw weights at the end, before EMA's on_fit_end
        def on_train_end(self, trainer, pl_module) -> None:
            ema_state.update({k: v.clone() for k, v in pl_module.model.state_dict().items()})

    trainer = fit(module, 1, Snapshot())
    ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
    assert ema.steps == 4
    final = module.model.state_dict()
    for key, value in final.items():
        assert torch.equal(value, ema.avg[key])
    # the average differs from the last raw weights (decay 0.5 over 4 moving steps)
    assert any(not torch.equal(final[k], ema_state[k]) for k in final if "weight" in k)


def test_channels_last_gives_the_same_logits_and_state_dict_keys() -> None:
    base = ANNClassifier(tiny_model())
    fast = ANNClassifier(tiny_model(), channels_last=True)
    x = torch.randn(4, 1, 8, 8)
    base.eval(), fast.eval()
    assert torch.allclose(base(x), fast(x), atol=1e-5)
    assert list(base.state_dict()) == list(fast.state_dict())


def test_bad_recipe_values_name_their_keys() -> None:
    for kwargs, key in [
        ({"scheduler": "onecycle"}, "ann.optim.scheduler"),
        ({"warmup_epochs": -1}, "ann.optim.warmup_epochs"),
        ({"ema_decay": 1.5}, "ann.optim.ema_decay"),
    ]:
        with pytest.raises(ConfigError) as err:
            ANNClassifier(tiny_model(), **kwargs)
        assert err.value.key == key


def test_recipe_fast_composes_onto_the_paper_defaults() -> None:
    with initialize_config_dir(config_dir=CONF, version_base=None):
        paper = compose("config", ["experiment=cifar10_resnet20_wide"])
        fast = compose("config", ["experiment=cifar10_resnet20_wide", "recipe=fast"])
    assert paper.ann.optim.scheduler == "cosine" and paper.trainer.max_epochs == 300
    assert fast.ann.optim.scheduler == "warmup_cosine" and fast.ann.optim.nesterov
    assert fast.trainer.precision == "bf16-mixed" and fast.dataset.batch_size == 512
    assert fast.trainer.max_epochs == 40
    # every ann.optim key is an ANNClassifier argument
    ANNClassifier(tiny_model(), **fast.ann.optim)


def test_vgg16_training_steps_lower_the_loss_without_nan() -> None:
    torch.manual_seed(0)
    model = vgg16(num_classes=10)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < losses[0]
