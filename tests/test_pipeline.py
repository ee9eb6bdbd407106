"""End-to-end runs of the composition root on digits (tiny settings: seconds on a CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adacal.pipeline import run
from adacal.reporting import read_metrics

REQUIRED = ("ann/test/acc", "snn/test/acc_T2", "snn/test/anytime_T2/acc_t1", "snn/test/spikes_T2")


def _comparable(metrics: dict) -> dict:
    """Metrics without the wall-clock timings."""
    return {k: v for k, v in metrics.items() if not k.startswith("snn/time/")}


@pytest.fixture(scope="module")
def trained_run(compose_config, tiny_overrides, tmp_path_factory):
    """One tiny run that trains the ANN: (output dir, returned metrics)."""
    out = tmp_path_factory.mktemp("run_a")
    metrics = run(compose_config(tiny_overrides, output_dir=out))
    return out, metrics


def test_run_writes_record_and_checkpoint(trained_run):
    out, metrics = trained_run
    record = read_metrics(out)
    assert record["status"] == "ok"
    assert record["metrics"] == pytest.approx(metrics)
    for key in REQUIRED:
        assert key in metrics
    assert 0.0 <= metrics["ann/test/acc"] <= 1.0
    assert metrics["snn/test/anytime_T2/acc_t2"] == metrics["snn/test/acc_T2"]
    assert record["config"]["snn"]["T"] == [2]
    # the trained ANN with its sha256 and the command that wrote it
    digest = (out / "ann.pt.sha256").read_text().split()[0]
    assert (out / "ann.pt").is_file() and (out / "ann.pt.cmd").read_text().strip()
    assert record["ann_checkpoint_sha256"] == digest
    indices = json.loads((out / "calibration_indices.json").read_text())
    assert len(indices) == 32 and len(set(indices)) == 32
    assert "T" in (out / "results.md").read_text()


def test_same_seed_gives_same_metrics(trained_run, compose_config, tiny_overrides, tmp_path):
    out_a, _ = trained_run
    out_b = tmp_path / "run_b"
    run(compose_config(tiny_overrides, output_dir=out_b))
    a, b = read_metrics(out_a), read_metrics(out_b)
    assert b["status"] == "ok"
    assert _comparable(a["metrics"]) == _comparable(b["metrics"])
    assert (out_a / "calibration_indices.json").read_text() == (
        out_b / "calibration_indices.json"
    ).read_text()
    wa = torch.load(out_a / "ann.pt", weights_only=True)
    wb = torch.load(out_b / "ann.pt", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_weights_give_same_checkpoint_digest(compose_config, tiny_overrides, tmp_path):
    from adacal.checkpoint import save_state_dict
    from adacal.models import small_cnn

    model = small_cnn(10, in_channels=1, width=4)
    assert save_state_dict(model, tmp_path / "a" / "ann.pt", "x") == save_state_dict(
        model, tmp_path / "b" / "ann.pt", "x"
    )


def test_run_from_checkpoint_reproduces_ann(trained_run, compose_config, tiny_overrides, tmp_path):
    out_a, metrics_a = trained_run
    out_c = tmp_path / "run_c"
    overrides = [*tiny_overrides, f"ann.checkpoint={out_a / 'ann.pt'}"]
    metrics_c = run(compose_config(overrides, output_dir=out_c))
    record = read_metrics(out_c)
    assert record["status"] == "ok"
    assert metrics_c["ann/test/acc"] == metrics_a["ann/test/acc"]
    assert _comparable(metrics_c) == _comparable(metrics_a)  # same ANN -> same SNN
    assert record["ann_checkpoint_sha256"] == (out_a / "ann.pt.sha256").read_text().split()[0]
    assert not (out_c / "ann.pt").exists()  # loaded, not trained
    assert not (out_c / "lightning_checkpoints").exists()


def test_multirun_sweep_writes_one_record_per_job(repo_root, tiny_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "calibration=none,light",
        *tiny_overrides,
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("PROJECT_ROOT", None)
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {}
    for job in ("0", "1"):
        job_dir = sweep / job
        record = read_metrics(job_dir)
        assert record["status"] == "ok"
        for key in REQUIRED:
            assert key in record["metrics"], key
        assert (job_dir / "calibration_indices.json").is_file()
        assert (job_dir / "results.md").is_file()
        assert Path(record["config"]["paths"]["output_dir"]) == job_dir
        records[record["config"]["calibration"]["name"]] = record
    assert set(records) == {"none", "light"}
    assert records["none"]["config"]["calibration"]["steps"] == []
    assert records["light"]["config"]["calibration"]["steps"]
    # both jobs train the same ANN (same seed) and calibrate the same images
    assert records["none"]["metrics"]["ann/test/acc"] == records["light"]["metrics"]["ann/test/acc"]
    assert (sweep / "0" / "calibration_indices.json").read_text() == (
        sweep / "1" / "calibration_indices.json"
    ).read_text()


def test_advanced_run_records_each_site_loss_before_and_after(
    trained_run, compose_config, tiny_overrides, tmp_path
):
    """calibration=advanced: the weight step's loss per site before and after reaches
    metrics.json (``snn/weights/site{i}_loss_before_T{T}``) and adaptive_T{T}.json, and
    after ≤ before at every site (the kept weights are never worse than the start)."""
    out_a, _ = trained_run
    overrides = [*tiny_overrides, f"ann.checkpoint={out_a / 'ann.pt'}", "calibration=advanced",
                 "calibration.steps.0.iterations=30", "calibration.steps.0.lr=1e-3",
                 "calibration.steps.1.samples=null", "snn.compare_baseline=false"]  # fmt: skip
    metrics = run(compose_config(overrides, output_dir=tmp_path))
    T = 2
    before = {k: v for k, v in metrics.items() if k.endswith(f"_loss_before_T{T}")}
    assert before and all(k.startswith("snn/weights/site") for k in before)
    for key, value in before.items():
        after = metrics[key.replace("_loss_before_", "_loss_after_")]
        assert after <= value, (key, value, after)
    saved = json.loads((tmp_path / f"adaptive_T{T}.json").read_text())["weights"]
    assert [v for v in saved["loss_after"] if v == v] == [
        metrics[k.replace("_loss_before_", "_loss_after_")] for k in sorted(before, key=_site)
    ]


def _site(key: str) -> int:
    return int(key.split("/site")[1].split("_")[0])
