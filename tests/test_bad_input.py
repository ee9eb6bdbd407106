"""Bad configuration fails early with one message naming the key, and never records "ok"."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from adacal.checkpoint import save_state_dict
from adacal.errors import ConfigError
from adacal.models import resnet20, small_cnn
from adacal.pipeline import run
from adacal.reporting import read_metrics
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron


def assert_not_ok(out_dir: Path) -> None:
    """No metrics.json, or one whose status is not "ok"."""
    path = Path(out_dir) / "metrics.json"
    if path.exists():
        assert read_metrics(path)["status"] != "ok"


def run_fails(compose_config, overrides, out_dir, key) -> ConfigError:
    """Run the pipeline, expect ConfigError(key) and no "ok" record; return the error."""
    with pytest.raises(ConfigError) as info:
        run(compose_config(overrides, output_dir=out_dir))
    err = info.value
    assert err.key == key, str(err)
    assert str(err).startswith(f"{key}: ") and err.detail.strip()
    assert_not_ok(out_dir)
    return err


def _subprocess(repo_root, args, run_dir, timeout=600):  # a hang guard, not a speed test
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- composition -------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["neuron", "dataset", "calibration", "architecture"])
def test_unknown_group_option_names_the_group(compose_config, tmp_path, group):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([f"{group}=no_such_option"], output_dir=tmp_path)
    message = str(info.value)
    assert f"{group}/no_such_option" in message
    assert f"Available options in '{group}'" in message


def test_unknown_group_option_exits_nonzero(repo_root, tmp_path):
    proc = _subprocess(repo_root, ["neuron=no_such_option", "logger=none"], tmp_path / "run")
    assert proc.returncode != 0
    assert "neuron/no_such_option" in proc.stderr
    assert_not_ok(tmp_path / "run")


def test_bad_value_exits_with_status_2(repo_root, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    proc = _subprocess(repo_root, [*tiny_overrides, "snn.T=[0]"], run_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "snn.T" in proc.stderr
    assert "configuration error" in proc.stderr
    assert "Traceback" not in proc.stderr  # one clear line, not a stack trace
    assert_not_ok(run_dir)


# -- values checked before any work -----------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("snn.T=[0]", "snn.T"),
        ("snn.T=[4,-1]", "snn.T"),
        ("snn.T=[]", "snn.T"),
        ("snn.anytime=[0]", "snn.anytime"),
        ("calibration.num_samples=0", "calibration.num_samples"),
        ("calibration.threshold.method=median", "calibration.threshold.method"),
        ("calibration.threshold.granularity=neuron", "calibration.threshold.granularity"),
        ("stages=[train]", "stages"),
        ("ann.train=false", "ann.checkpoint"),
        ("neuron=adafire neuron.phi_min=9", "neuron.phi_min"),
        ("neuron=adafire neuron.phi_target=0", "neuron.phi_target"),
        ("neuron=adafire neuron.rho=0", "neuron.rho"),
        ("neuron=burst neuron.phi=0", "neuron.phi"),
        ("compression=ssc compression.ratios=[]", "compression.ratios"),
        ("compression=ssc compression.rho=-1", "compression.rho"),
        ("inference=iat inference.confidence=margin", "inference.confidence"),
        ("inference=iat inference.fit_batches=0", "inference.fit_batches"),
        (
            "inference=iat inference.frontier.b=[0.2] inference.compare_full=false",
            "inference.frontier",
        ),
        ("inference=iat inference.frontier.b=[2]", "inference.frontier.b"),
        ("snn.compile=sometimes", "snn.compile"),
        # calibration steps: more images than the calibration set, bad weight calibration
        ("calibration=advanced calibration.steps.1.samples=64", "calibration.steps.1.samples"),
        ("calibration=advanced calibration.steps.0.samples=0", "calibration.steps.0.samples"),
        (
            "calibration=advanced calibration.steps.1.samples=null calibration.steps.0.lr=0",
            "calibration.steps.<WeightCalibration>.lr",
        ),
        (
            "calibration=advanced calibration.steps.1.samples=null "
            "calibration.steps.0.iterations=-1",
            "calibration.steps.<WeightCalibration>.iterations",
        ),
        (
            "calibration=advanced calibration.steps.1.samples=null "
            "calibration.steps.0.batch_size=0",
            "calibration.steps.<WeightCalibration>.batch_size",
        ),
    ],
)
def test_invalid_value_names_key(compose_config, tiny_overrides, tmp_path, override, key):
    run_fails(compose_config, [*tiny_overrides, *override.split()], tmp_path, key)
    assert not (tmp_path / "ann.pt").exists()  # refused before any training
    # the failure record is written so a sweep shows which job failed and why
    record = read_metrics(tmp_path)
    assert record["status"] == "failed" and key in record["error"]


def test_percentile_out_of_range(compose_config, tiny_overrides, tmp_path):
    err = run_fails(
        compose_config,
        [
            *tiny_overrides,
            "calibration.threshold.method=percentile",
            "calibration.threshold.percentile=150",
        ],
        tmp_path,
        "calibration.threshold.percentile",
    )
    assert "150" in err.detail


# -- checkpoints ----------------------------------------------------------------------------


def test_missing_checkpoint(compose_config, tiny_overrides, tmp_path):
    err = run_fails(
        compose_config,
        [*tiny_overrides, "ann.checkpoint=/nonexistent.pt"],
        tmp_path,
        "ann.checkpoint",
    )
    assert "/nonexistent.pt" in err.detail and "does not exist" in err.detail


@pytest.mark.parametrize("corrupt", ["sidecar", "file", "no_sidecar"])
def test_checkpoint_hash_mismatch(compose_config, tiny_overrides, tmp_path, corrupt):
    ckpt = tmp_path / "ckpt" / "ann.pt"
    save_state_dict(small_cnn(10, in_channels=1, width=8), ckpt, "test")
    sidecar = ckpt.with_name("ann.pt.sha256")
    if corrupt == "sidecar":
        sidecar.write_text("0" * 64 + "  ann.pt\n")
    elif corrupt == "file":
        with open(ckpt, "ab") as f:
            f.write(b"\0")
    else:
        sidecar.unlink()
    err = run_fails(
        compose_config,
        [*tiny_overrides, f"ann.checkpoint={ckpt}"],
        tmp_path / "out",
        "ann.checkpoint",
    )
    assert (
        ("does not match" in err.detail) if corrupt != "no_sidecar" else ("missing" in err.detail)
    )


@pytest.mark.parametrize("other", ["architecture", "num_classes"])
def test_checkpoint_of_another_model(compose_config, tiny_overrides, tmp_path, other):
    if other == "architecture":
        state, hint = resnet20(10, in_channels=1), "unexpected tensors"
    else:
        state, hint = small_cnn(5, in_channels=1, width=8), "shape mismatch"
    ckpt = tmp_path / "ckpt" / "ann.pt"
    save_state_dict(state, ckpt, "test")
    err = run_fails(
        compose_config,
        [*tiny_overrides, f"ann.checkpoint={ckpt}"],
        tmp_path / "out",
        "ann.checkpoint",
    )
    assert "does not fit" in err.detail and hint in err.detail
    assert "architecture=" in err.detail


# -- data -----------------------------------------------------------------------------------

CIFAR = ["experiment=cifar10_resnet20", "ann.checkpoint=null", "logger=none", "progress=false"]


def test_dataset_root_does_not_exist(compose_config, tmp_path):
    err = run_fails(compose_config, [*CIFAR, "dataset.root=/nonexistent"], tmp_path, "dataset.root")
    assert "/nonexistent does not exist" in err.detail and "dataset.root=" in err.detail


def test_dataset_root_wrong_layout(compose_config, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = run_fails(
        compose_config, [*CIFAR, f"dataset.root={empty}"], tmp_path / "out", "dataset.root"
    )
    assert "wrong layout" in err.detail and "train/<class>" in err.detail


def test_dataset_root_nested_layout_is_pointed_out(compose_config, tmp_path):
    """A root one level too high: the message names the folder to pass."""
    inner = tmp_path / "data" / "cifar10"
    for split in ("train", "test"):
        (inner / split / "cat").mkdir(parents=True)
    err = run_fails(
        compose_config,
        [*CIFAR, f"dataset.root={tmp_path / 'data'}"],
        tmp_path / "out",
        "dataset.root",
    )
    assert f"dataset.root={inner}" in err.detail


def test_download_without_network(compose_config, tmp_path, monkeypatch):
    """No network (simulated, so the test never downloads): the message says to pass a root."""
    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    download_dir = tmp_path / "download"
    err = run_fails(
        compose_config,
        [
            *CIFAR,
            "dataset=cifar10",
            "dataset.root=null",
            "dataset.download=true",
            f"dataset.download_dir={download_dir}",
        ],
        tmp_path / "out",
        "dataset.root",
    )
    assert calls, "torchvision never tried to download"
    assert "download failed" in err.detail and "dataset.root=" in err.detail


def test_root_not_set_without_download(compose_config, tmp_path):
    err = run_fails(
        compose_config, [*CIFAR, "dataset=cifar10", "dataset.root=null"], tmp_path, "dataset.root"
    )
    assert "dataset.download=true" in err.detail and "dataset.root=" in err.detail


# -- architecture ---------------------------------------------------------------------------


@pytest.fixture
def test_models(monkeypatch):
    """``tests/_models.py`` importable as ``_models`` whatever pytest's import mode."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_convert_refuses_maxpool_between_spiking_layers(test_models):
    from _models import maxpool_net

    with pytest.raises(ConfigError) as info:
        convert(maxpool_net(10, 1).eval(), IFNeuron(), torch.zeros(1, 1, 32, 32))
    assert info.value.key == "architecture"
    assert "max pooling" in info.value.detail


def test_pipeline_refuses_maxpool_architecture(
    compose_config, tiny_overrides, tmp_path, test_models
):
    err = run_fails(
        compose_config,
        [*tiny_overrides, "architecture._target_=_models.maxpool_net"],
        tmp_path,
        "architecture",
    )
    assert "max pooling" in err.detail


def test_unreachable_spike_budget_fails_the_run(compose_config, tiny_overrides, tmp_path):
    """A φ-search budget no φ choice meets: one error naming neuron.rho, a "failed" record."""
    overrides = [*tiny_overrides, "neuron=adafire", "neuron.rho=0.01", "neuron.batch_size=8"]
    err = run_fails(compose_config, overrides, tmp_path, "neuron.rho")
    assert "smallest achievable" in err.detail
    assert read_metrics(tmp_path)["status"] == "failed"


def test_bad_segmentation_value_exits_with_status_2(repo_root, tmp_path):
    """Through run.py: a crop that is not a multiple of the encoder's stride stops the job with
    one line naming dataset.crop_size, status 2, and a failed record (no results table)."""
    run_dir = tmp_path / "run"
    overrides = ["experiment=shapes_deeplabv3plus_resnet18", "dataset.crop_size=[36,36]",
                 "logger=none"]  # fmt: skip
    proc = _subprocess(repo_root, overrides, run_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "dataset.crop_size" in proc.stderr and "output stride 8" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_not_ok(run_dir)
    assert not (run_dir / "results.md").exists()
