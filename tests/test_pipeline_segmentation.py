"""task=segmentation through the composition root: shapes (synthetic), every neuron/compression
option, the refused options, bad input, and the paper-scale VOC config as a 2-step smoke run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from _hermetic import one_thread
from adacal.checkpoint import save_state_dict
from adacal.errors import ConfigError
from adacal.pipeline import run
from adacal.reporting import read_metrics

ARCH = ["architecture.encoder_depth=3", "architecture.decoder_channels=32"]
QUIET = ["logger=none", "progress=false", "trainer.enable_progress_bar=false"]
SHAPES = ["experiment=shapes_deeplabv3plus_resnet18", *ARCH, *QUIET]


@pytest.fixture(scope="module")
def shapes_checkpoint(compose_config, tmp_path_factory):
    """The shapes experiment's network trained with a plain loop (Adam, 150 steps, ~10 s):
    ANN mIoU ≈ 0.9 on the synthetic test images."""
    from hydra.utils import instantiate

    out = tmp_path_factory.mktemp("shapes_ann")
    cfg = compose_config(SHAPES, output_dir=out)
    dm = instantiate(cfg.dataset)
    dm.setup()
    with one_thread(seed=0):  # the same network for every thread count
        model = instantiate(cfg.architecture)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        loader = torch.utils.data.DataLoader(
            dm.train_set, batch_size=16, shuffle=True, generator=gen
        )
        steps = 0
        while steps < 150:
            for x, y in loader:
                loss = F.cross_entropy(model(x), y, ignore_index=255)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                if steps == 150:
                    break
    path = out / "shapes.pt"
    save_state_dict(model.eval(), path, "tests/test_pipeline_segmentation.py")
    return path


def _run(compose_config, tmp_path, overrides):
    cfg = compose_config([*SHAPES, *overrides], output_dir=tmp_path)
    return run(cfg), cfg


def test_if_run_reports_miou_close_to_the_ann_and_energy(
    compose_config, tmp_path, shapes_checkpoint
):
    m, _ = _run(compose_config, tmp_path, [f"ann.checkpoint={shapes_checkpoint}", "snn.T=[64]",
                                           "snn.anytime=[8,64]"])  # fmt: skip
    assert m["ann/test/miou"] > 0.8  # measured 0.90
    assert m["ann/test/pixel_acc"] > m["ann/test/miou"]
    assert abs(m["snn/test/miou_T64"] - m["ann/test/miou"]) < 0.02  # measured 0.003
    assert m["snn/test/anytime_T64/miou_t8"] < m["snn/test/miou_T64"]
    ious = [m[f"snn/test/class{k}_iou_T64"] for k in range(4)]
    assert all(0 < v <= 1 for v in ious)
    assert m["snn/test/miou_T64"] == pytest.approx(sum(ious) / 4)
    assert m["snn/test/sops_T64"] > 0 and m["snn/test/energy_uj_T64"] > 0
    assert m["snn/test/saving_vs_baseline_T64"] == 0.0  # the IF run is its own baseline
    text = (tmp_path / "results.md").read_text()
    assert "mIoU" in text and "top-1" not in text


def test_adafire_and_ssc_search_with_per_pixel_kl(compose_config, tmp_path, shapes_checkpoint):
    m, _ = _run(compose_config, tmp_path, [
        f"ann.checkpoint={shapes_checkpoint}", "snn.T=[4]", "snn.anytime=[4]",
        "neuron=adafire", "compression=ssc", "compression.compare_uncompressed=true",
        "search.images=4", "search.sub_batch=2", "compression.ratios=[1.0,1.5,2.0,3.0,4.0]",
    ])  # fmt: skip
    record = json.loads((tmp_path / "adaptive_T4.json").read_text())
    sites = len(record["adafire"]["phi"])
    assert sites == len(record["ssc"]["ratio"]) > 10
    assert all(1 <= p <= 8 for p in record["adafire"]["phi"])
    # SSC raises thresholds only where the budget allows: fewer synaptic events than before it
    assert m["snn/test/sops_T4"] < m["snn/uncompressed/sops_T4"]
    assert m["snn/test/miou_T4"] > 0.5 and m["snn/uncompressed/miou_T4"] > 0.5
    base = m["snn/baseline/miou_T4"]  # the IF baseline ran beside: AdaFire beats it at T = 4
    assert m["snn/uncompressed/miou_T4"] > base


def test_iat_exits_early_per_image(compose_config, tmp_path, shapes_checkpoint):
    """IAT on dense outputs: an image exits when the mean per-pixel confidence passes η_t."""
    m, _ = _run(compose_config, tmp_path, [
        f"ann.checkpoint={shapes_checkpoint}", "snn.T=[16]", "snn.anytime=[16]",
        "inference=iat", "inference.fit_batches=2", "inference.batch_size=16", "inference.a=0.5",
        "inference.b=0.2",
        "snn.compare_baseline=false",
    ])  # fmt: skip
    exits = [m[f"snn/test/exit_t{t}_T16"] for t in range(1, 17)]
    assert sum(exits) == pytest.approx(1.0)
    mean = sum(t * share for t, share in enumerate(exits, start=1))
    assert m["snn/test/mean_timesteps_T16"] == pytest.approx(mean) and mean < 16
    assert m["snn/test/sops_T16"] < m["snn/full/sops_T16"]  # exited images cost nothing more
    assert m["snn/test/miou_T16"] > 0.5 and m["snn/full/miou_T16"] > 0.5
    record = json.loads((tmp_path / "adaptive_T16.json").read_text())
    eta = record["iat"]["eta"]
    assert len(eta) == 16 and all(0.5 < e <= 0.7 + 1e-6 for e in eta)


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["architecture=unet_resnet18", "architecture.stem_pool=max"], "architecture",
         "max pooling"),
        (["dataset.crop_size=[36,36]"], "dataset.crop_size", "output stride"),
        (["dataset.pad=false", "dataset.crop_size=[32,32]"], "dataset.crop_size", "pad"),
        (["dataset.num_classes=5"], "ann.checkpoint", "classes"),
    ],
)  # fmt: skip
def test_bad_segmentation_input_names_the_key(
    compose_config, tmp_path, shapes_checkpoint, overrides, key, words
):
    """Each refused before any training or evaluation, with a failed record."""
    with pytest.raises(ConfigError) as err:
        _run(compose_config, tmp_path, [f"ann.checkpoint={shapes_checkpoint}", *overrides])
    assert err.value.key == key and words in str(err.value)
    assert read_metrics(tmp_path)["status"] == "failed"
    assert not (tmp_path / "results.md").exists()


def test_voc_paper_config_runs_a_two_step_smoke_run(compose_config, tmp_path):
    """The paper-scale VOC 2012 DeepLabV3-ResNet-34 config, on synthetic data: trains 2 steps
    with the segmentation module (poly schedule), converts, calibrates, evaluates mIoU."""
    cfg = compose_config([
        "experiment=voc2012_deeplabv3_resnet34", "dataset=shapes", "dataset.num_train=32",
        "dataset.num_test=8", "dataset.crop_size=[32,32]", "dataset.eval_size=null",
        "trainer=cpu", "trainer.max_steps=2", "architecture.encoder_weights=null",
        "ann.checkpoint=null", "snn.T=[2]", "snn.anytime=[2]", "calibration.num_samples=4",
        "calibration.batch_size=4", *QUIET,
    ], output_dir=tmp_path)  # fmt: skip
    assert cfg.architecture.arch == "deeplabv3" and cfg.architecture.encoder == "resnet34"
    assert cfg.ann.optim.lr == 0.007 and cfg.ann.optim.scheduler == "poly"
    m = run(cfg)
    record = read_metrics(tmp_path)
    assert record["status"] == "ok"
    assert 0 <= m["ann/test/miou"] <= 1 and 0 <= m["snn/test/miou_T2"] <= 1
    assert (tmp_path / "ann.pt").is_file() and (tmp_path / "ann.pt.sha256").is_file()
    assert (tmp_path / "lightning_checkpoints" / "last.ckpt").is_file()


def test_imagenet_encoder_weights_offline_name_the_key():
    """HF_HUB_OFFLINE=1 (conftest): the opt-in download fails with the key and what to do."""
    from adacal.models.segmentation import segmentation_model

    with pytest.raises(ConfigError) as err:
        segmentation_model("deeplabv3plus", encoder_weights="imagenet", num_classes=3)
    assert err.value.key == "architecture.encoder_weights"
    assert "encoder_weights=null" in str(err.value)
