"""Shared test setup: offline, quiet, CPU only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["WANDB_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (holds ``run.py``, ``conf/``, ``src/``)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def digits():
    """Digits (32x32, normalised) as tensors: x_train, y_train, x_test, y_test."""
    import torch

    from adacal.data.digits import DigitsDataModule

    dm = DigitsDataModule()
    dm.setup()

    def stack(ds):
        items = [ds[i] for i in range(len(ds))]
        return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])

    x_train, y_train = stack(dm.train_eval_set)
    x_test, y_test = stack(dm.test_set)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def digits_ann(digits):
    """A small CNN trained on digits with a plain loop (seeded; ~98% test accuracy), eval mode."""
    import torch
    import torch.nn.functional as F

    from adacal.models import small_cnn

    torch.manual_seed(0)
    model = small_cnn(10, in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = digits["x_train"], digits["y_train"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
