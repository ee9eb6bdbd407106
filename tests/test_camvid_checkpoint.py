"""The committed CamVid DeepLabV3+ (ResNet-18, fp16 state dict) on 8 real CamVid test images
reproduces what we measured: ANN mIoU and SNN mIoU at T = 8 (IF, light calibration).

Reads ``../shared/data/camvid.tar.gz`` (extracted once into the git-ignored ``data/``, as the
README says); skipped only when that archive is absent.
"""

from __future__ import annotations

import pytest

from _archives import extracted_archive, realdata_marks
from adacal.pipeline import run
from adacal.reporting import read_metrics

pytestmark = realdata_marks("camvid.tar.gz")

# Measured on the CPU with exactly these overrides (8 test images of the fixed test_limit
# permutation, 8 calibration images, light calibration, MSE thresholds, T = 8): the same values
# to 4 digits on 1 and 2 threads (T = 16 on 16 images, the earlier check, cost 2x the time and
# measured SNN mIoU 0.342 on 2 threads but 0.348-0.356 on 1).
EXPECTED = {"ann/test/miou": 0.4099, "snn/test/miou_T8": 0.3116}


@pytest.fixture(scope="module")
def camvid_root(repo_root):
    return extracted_archive(repo_root, "camvid.tar.gz", "camvid", ("trainannot", "testannot"))


def test_committed_camvid_model_matches_measured_miou(camvid_root, compose_config, tmp_path):
    cfg = compose_config(
        [
            "experiment=camvid_deeplabv3plus_resnet18",
            f"dataset.root={camvid_root}",
            "calibration=light",
            "snn.T=[8]",
            "snn.anytime=[8]",
            "dataset.test_limit=8",
            "calibration.num_samples=8",
            "logger=none",
            "progress=false",
            "trainer.enable_progress_bar=false",
        ],
        output_dir=tmp_path,
    )
    metrics = run(cfg)
    assert read_metrics(tmp_path)["status"] == "ok"
    for key, expected in EXPECTED.items():
        # 8 images x 27,648 pixels. Convolutions on another CPU (other SIMD kernels) may round
        # differently and move the calibrated biases; allow 2 pt
        assert metrics[key] == pytest.approx(expected, abs=0.02), key
