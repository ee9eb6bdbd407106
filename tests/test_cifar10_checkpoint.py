"""The committed thin ResNet-20 on 1,000 real CIFAR-10 test images reproduces what we measured.

Reads ``../shared/data/cifar10-jpeg.tar.gz`` (extracted once into the git-ignored ``data/``,
as the README says). Measured values (CPU, this configuration): see ``EXPECTED``.
"""

from __future__ import annotations

import json

import pytest

from _archives import extracted_archive, realdata_marks
from adacal.pipeline import run

# Measured on the CPU (2 threads) with exactly these overrides (1,000 test images of the fixed
# test_limit permutation, 64 calibration images, light calibration, MSE thresholds, T=32).
# Bias calibration reuses the simulated prefix and runs all 32 steps as one chunk; with
# calibration.steps.0.reuse_prefix=false (chunks of snn.chunk = 8 steps) the same check
# measures 0.864: convolutions on other batch shapes round differently and 3 of the 1,000
# images change class.
pytestmark = realdata_marks("cifar10-jpeg.tar.gz")

EXPECTED = {"ann/test/acc": 0.880, "snn/test/acc_T32": 0.867}


@pytest.fixture(scope="module")
def cifar_root(repo_root):
    return extracted_archive(repo_root, "cifar10-jpeg.tar.gz", "cifar10", ("train", "test"))


def test_committed_resnet20_matches_measured_accuracy(cifar_root, compose_config, tmp_path):
    cfg = compose_config(
        [
            "experiment=cifar10_resnet20",
            f"dataset.root={cifar_root}",
            "calibration=light",
            "calibration.threshold.granularity=layer",  # as measured (light's default: channel)
            "snn.T=[32]",
            "snn.anytime=[8,16,32]",
            "dataset.test_limit=1000",
            "calibration.num_samples=64",
            "logger=none",
            "progress=false",
            "trainer.enable_progress_bar=false",
        ],
        output_dir=tmp_path,
    )
    metrics = run(cfg)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert record["metrics"]["ann/test/acc"] == pytest.approx(metrics["ann/test/acc"])
    for key, expected in EXPECTED.items():
        # 1,000 images: one image is 0.1 pt. Convolutions on another thread count (or batch
        # shape) round differently: SNN 0.867 when EXPECTED was measured, 0.864 on 1 and on 2
        # threads on 2026-11-28; allow 1 pt
        assert metrics[key] == pytest.approx(expected, abs=0.01), key
