"""Shared test setup: offline, quiet, CPU only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _cli import TINY_DATA

os.environ["WANDB_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"


def _share_cores_between_workers() -> None:
    """Under pytest-xdist (``-n auto``, the default) each worker takes its share of the cores
    for torch's intra-op threads, so that two workers on two cores do not run four threads. The
    tests never depend on the thread count (models they train run on one thread,
    ``_hermetic.one_thread``)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


_share_cores_between_workers()

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Every test starts from the same torch RNG state, whatever ran before it: a test that
    draws ``torch.randn`` without its own seed sees the same numbers in any order (pytest-randomly
    reseeds ``random`` and numpy, not torch)."""
    import torch

    torch.manual_seed(0)


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
    """A small CNN trained on digits with a plain loop, eval mode (~98 % test accuracy).

    Trained on one thread with fixed seeds (:func:`_hermetic.one_thread`), so it does not depend
    on the thread count; tests that use it assert equations and invariants of the code, or
    margins measured wide on several trained variants, never its exact accuracy.
    """
    import torch
    import torch.nn.functional as F

    from _hermetic import one_thread
    from adacal.models import small_cnn

    with one_thread(seed=0):
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


# Settings that make a whole pipeline run take seconds on a CPU (tests of the composition root).
TINY_OVERRIDES = [
    "trainer.max_epochs=1",
    *TINY_DATA,
    "snn.T=[2]",
    "logger=none",
    "health=false",  # a 1-epoch model on 300 images may score at chance: accept it here
]


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """Overrides for a seconds-long digits run (1 epoch, 300/100 images, T=2, max thresholds)."""
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def compose_config(repo_root):
    """``compose_config(overrides, output_dir=None, hydra=False)``: the composed run config.

    ``paths.root_dir`` is the repository and ``paths.output_dir`` is ``output_dir`` (both set
    explicitly, so no Hydra runtime is needed); ``hydra=True`` keeps the ``hydra`` node.
    """
    from hydra import compose, initialize_config_dir

    def _compose(overrides=(), output_dir=None, hydra=False):
        paths = [f"paths.root_dir={repo_root}"]
        if output_dir is not None:
            paths.append(f"paths.output_dir={output_dir}")
        with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
            return compose(
                config_name="config",
                overrides=[*paths, *overrides],
                return_hydra_config=hydra,
            )

    return _compose
