"""metrics.json (atomic, status ok/failed) and the result tables."""

from __future__ import annotations

import json
import os

import pytest
from rich.console import Console

from adacal.reporting import (
    anytime_markdown,
    git_revision,
    read_metrics,
    results_markdown,
    results_rows,
    results_table,
    write_failure,
    write_metrics,
)

METRICS = {
    "ann/test/acc": 0.9412,
    "snn/test/acc_T4": 0.9013,
    "snn/test/acc_T8": 0.9366,
    "snn/test/spikes_T4": 123456.7,
    "snn/test/spikes_T8": 250000.0,
    "snn/test/rate_T4": 0.0813,
    "snn/test/sops_T4": 2500000.4,
    "snn/test/energy_uj_T4": 3.456,
    "snn/test/saving_vs_baseline_T4": -0.253,
    "snn/test/mean_timesteps_T4": 2.5,
    "snn/test/anytime_T8/acc_t1": 0.1,
    "snn/test/anytime_T8/acc_t8": 0.9366,
    "snn/test/anytime_T4/acc_t1": 0.2,
}


def test_write_metrics_content(tmp_path):
    path = write_metrics(
        tmp_path,
        {"b": 2.0, "a": float("nan")},
        {"seed": 0},
        extra={"ann_checkpoint_sha256": "ab", "status": "ignored"},
    )
    assert path == tmp_path / "metrics.json"
    data = json.loads(path.read_text())
    assert data["status"] == "ok"
    assert data["metrics"] == {"a": None, "b": 2.0}
    assert data["config"] == {"seed": 0}
    assert data["ann_checkpoint_sha256"] == "ab"
    assert data["git_revision"] == git_revision()
    assert read_metrics(tmp_path) == data


def test_write_metrics_is_atomic(tmp_path, monkeypatch):
    path = write_metrics(tmp_path / "m.json", {"x": 1.0}, {})
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_metrics(path, {"x": 2.0}, {})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_failure_file_is_never_ok(tmp_path):
    try:
        raise RuntimeError("out of memory")
    except RuntimeError as err:
        path = write_failure(tmp_path, err, config={"seed": 1}, metrics={"ann/test/acc": 0.5})
    data = read_metrics(path)
    assert data["status"] == "failed"
    assert data["error"] == "RuntimeError: out of memory"
    assert "Traceback" in data["traceback"]
    assert data["metrics"] == {"ann/test/acc": 0.5}
    assert read_metrics(write_failure(tmp_path, "killed"))["error"] == "killed"


def test_git_revision_outside_git(tmp_path):
    assert git_revision(tmp_path) == "unknown"


def test_results_markdown_exact():
    assert results_markdown(METRICS) == (
        "| T | ANN top-1 (%) | SNN top-1 (%) | Δ vs ANN (pp) | spikes/image | firing rate "
        "| SOPs/image | energy (µJ) | saving vs baseline | mean steps |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        "| 4 | 94.12 | 90.13 | -3.99 | 123,457 | 0.0813 | 2,500,000 | 3.46 | -25.3% | 2.50 |\n"
        "| 8 | 94.12 | 93.66 | -0.46 | 250,000 | - | - | - | - | - |\n"
    )
    assert results_rows(METRICS, timesteps=[2]) == [["2", "94.12"] + ["-"] * 8]


def test_results_table_renders():
    console = Console(width=120, record=True)
    console.print(results_table(METRICS, title="CIFAR-10"))
    text = console.export_text()
    assert "CIFAR-10" in text and "93.66" in text and "-0.46" in text


def test_anytime_markdown_exact():
    lines = [
        "| t | T=4 (%) | T=8 (%) |",
        "|---:|---:|---:|",
        "| 1 | 20.00 | 10.00 |",
        "| 8 | - | 93.66 |",
    ]
    assert anytime_markdown(METRICS) == "\n".join(lines) + "\n"


def test_method_labels():
    from adacal.reporting.methods import method_label

    cfg = {
        "neuron": {"name": "burst", "phi": 4},
        "compression": {"name": "ssc"},
        "inference": {"name": "iat"},
    }
    assert method_label(cfg) == "burst φ=4 + ssc + iat"
    assert (
        method_label({"neuron": {"name": "adafire"}, "compression": {"name": "none"}}) == "adafire"
    )


def test_iat_run_gives_a_row_without_and_with_exits(tmp_path):
    from adacal.reporting.methods import load_runs

    metrics = {
        "ann/test/acc": 0.9,
        "snn/test/acc_T4": 0.8,
        "snn/full/acc_T4": 0.81,
        "snn/test/mean_timesteps_T4": 2.0,
        "snn/full/mean_timesteps_T4": 4.0,
    }
    config = {
        "neuron": {"name": "adafire"},
        "compression": {"name": "ssc"},
        "inference": {"name": "iat"},
    }
    write_metrics(tmp_path / "a", metrics, config)
    runs = load_runs([tmp_path / "a"])
    assert [label for label, _ in runs] == ["adafire + ssc", "adafire + ssc + iat"]
    assert runs[0][1]["snn/test/acc_T4"] == 0.81 and runs[0][1]["ann/test/acc"] == 0.9
    assert runs[1][1]["snn/test/mean_timesteps_T4"] == 2.0


def test_segmentation_records_are_tabled_by_miou():
    """A record with miou keys is labelled and scored by mIoU (acc keys are not read)."""
    seg = {
        "ann/test/miou": 0.6,
        "ann/test/pixel_acc": 0.9,
        "snn/test/miou_T8": 0.55,
        "snn/test/pixel_acc_T8": 0.88,
        "snn/test/anytime_T8/miou_t4": 0.3,
        "snn/test/anytime_T8/miou_t8": 0.55,
        "snn/test/energy_uj_T8": 10.0,
    }
    md = results_markdown(seg)
    assert md.splitlines()[0].startswith("| T | ANN mIoU (%) | SNN mIoU (%) | Δ vs ANN (pp)")
    assert md.splitlines()[2].startswith("| 8 | 60.00 | 55.00 | -5.00 |")
    assert anytime_markdown(seg).splitlines()[2] == "| 4 | 30.00 |"
    from adacal.reporting.methods import runs_metric

    assert runs_metric([("if", {"snn/test/acc_T8": 0.5}), ("seg", seg)]) == "miou"
    assert runs_metric([("if", {"snn/test/acc_T8": 0.5})]) == "acc"
