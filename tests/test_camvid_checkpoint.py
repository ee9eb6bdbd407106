"""The committed CamVid DeepLabV3+ (ResNet-18, fp16 state dict) on 16 real CamVid test images
reproduces what we measured: ANN mIoU and SNN mIoU at T = 16 (IF, light calibration).

Reads ``../shared/data/camvid.tar.gz`` (extracted once into the git-ignored ``data/``, as the
README says); skipped only when that archive is absent.
"""

from __future__ import annotations

import pytest

from _archives import extracted_archive, realdata_marks
from adacal.pipeline import run
from adacal.reporting import read_metrics

pytestmark = realdata_marks("camvid.tar.gz")

# Measured on the CPU (2 threads) with exactly these overrides (16 test images of the fixed
# test_limit permutation, 16 calibration images, light calibration, MSE thresholds, T = 16).
EXPECTED = {"ann/test/miou": 0.4002, "snn/test/miou_T16": 0.3421}


@pytest.fixture(scope="module")
def camvid_root(repo_root):
    return extracted_archive(repo_root, "camvid.tar.gz", "camvid", ("trainannot", "testannot"))


def test_committed_camvid_model_matches_measured_miou(camvid_root, compose_config, tmp_path):
    cfg = compose_config(
        [
            "experiment=camvid_deeplabv3plus_resnet18",
            f"dataset.root={camvid_root}",
            "calibration=light",
            "snn.T=[16]",
            "snn.anytime=[16]",
            "dataset.test_limit=16",
            "calibration.num_samples=16",
            "logger=none",
            "progress=false",
            "trainer.enable_progress_bar=false",
        ],
        output_dir=tmp_path,
    )
    metrics = run(cfg)
    assert read_metrics(tmp_path)["status"] == "ok"
    for key, expected in EXPECTED.items():
        # 16 images x 27,648 pixels. Convolutions on another thread count round differently:
        # SNN mIoU 0.3421 on 2 threads, 0.3483 on 1 (ANN the same); allow 2 pt
        assert metrics[key] == pytest.approx(expected, abs=0.02), key
