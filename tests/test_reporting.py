"""metrics.json (atomic, status ok/failed) and the result tables."""

from __future__ import annotations

import json
import math
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


def test_method_is_read_from_the_recorded_choices(tmp_path):
    """A record with Hydra's choices takes the method from them, even where its config would
    name another; a record without them (every committed one) rebuilds it from the config."""
    from adacal.reporting.methods import load_runs
    from adacal.reporting.records import method_label, read_run

    config = {"neuron": {"name": "if"}, "compression": {"name": "none"}}
    choices = {"method": "adafire_ssc_iat", "neuron": "adafire", "compression": "ssc"}
    choices |= {"inference": "iat", "experiment": None}
    assert method_label(config, choices) == "adafire + ssc + iat"
    assert method_label(config) == method_label(config, {}) == "if"
    burst = {"neuron": {"name": "burst", "phi": 2}}
    assert method_label(burst, {"neuron": "burst", "inference": "fixed"}) == "burst φ=2"

    metrics = {"snn/test/acc_T4": 0.8}
    write_metrics(tmp_path / "new", metrics, config, extra={"choices": choices})
    write_metrics(tmp_path / "old", metrics, config)
    assert read_run(tmp_path / "new").choices == choices
    assert read_run(tmp_path / "new").method == "adafire + ssc + iat"
    assert read_run(tmp_path / "old").choices == {}
    assert read_run(tmp_path / "old").method == "if"
    assert [label for label, _ in load_runs([tmp_path / "new"])] == ["adafire + ssc + iat"]


def test_run_record_writes_the_choices_only_when_known(tmp_path):
    from adacal.reporting.run_record import RunRecord, hydra_choices

    assert hydra_choices() == {}  # no Hydra job here (a composed config in a test)
    record = RunRecord(tmp_path / "a", config={"seed": 0})
    record.choices = {"method": "if", "neuron": "if", "experiment": None}
    record.finish_T(4, {"snn/test/acc_T4": 0.5})
    assert read_metrics(tmp_path / "a")["choices"] == record.choices
    assert read_metrics(record.ok())["choices"] == record.choices
    assert read_metrics(record.failed(RuntimeError("boom")))["choices"] == record.choices
    plain = RunRecord(tmp_path / "b")
    assert "choices" not in read_metrics(plain.ok())


def test_hydra_choices_of_a_running_job(repo_root):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from adacal.reporting.run_record import hydra_choices

    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        cfg = compose("config", ["method=adafire_ssc", "inference=iat"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        choices = hydra_choices()
    finally:
        HydraConfig.instance().cfg = None
    assert choices["method"] == "adafire_ssc" and choices["experiment"] is None
    assert (choices["neuron"], choices["compression"], choices["inference"]) == (
        "adafire",
        "ssc",
        "iat",
    )
    assert all(isinstance(v, str | None) for v in choices.values())
    # of Hydra's own groups only the launcher: help, logging, output say nothing of the run
    assert [k for k in choices if k.startswith("hydra/")] == ["hydra/launcher"]


def test_run_metrics_write_the_committed_key_strings():
    """The builders of run_metrics (all through adacal.keys) give exactly the key strings of
    the committed records."""
    from types import SimpleNamespace

    from adacal.metrics import energy
    from adacal.reporting import run_metrics as rm

    sites = [SimpleNamespace(index=i, neurons_per_sample=10) for i in range(2)]
    net = SimpleNamespace(sites=sites)
    res = {
        "acc_t1": 0.5,
        "acc_t4": 0.9,
        "spikes": 40.0,
        "site_spikes": [8.0, 32.0],
        "class_iou": [0.1],
        "sops": 7.0,
        "site_sops": [3.0, 4.0],
        "exit_hist": [0.25, 0.75],
        "mean_timesteps": 2.0,
    }
    out = rm.snn_metrics(net, res, 4, 1.0, 2.0)
    assert out == {
        "snn/test/acc_T4": 0.9,
        "snn/test/spikes_T4": 40.0,
        "snn/test/rate_T4": 40.0 / (20 * 4),
        "snn/time/calibration_s_T4": 1.0,
        "snn/time/evaluation_s_T4": 2.0,
        "snn/test/anytime_T4/acc_t1": 0.5,
        "snn/test/anytime_T4/acc_t4": 0.9,
        "snn/test/class0_iou_T4": 0.1,
        "snn/test/site0_rate_T4": 8.0 / 40,
        "snn/test/site1_rate_T4": 32.0 / 40,
    }
    record = {"adafire": {"phi": [1, 3], "seconds": 5.0}, "ssc": {"ratio": [0.5], "seconds": 6}}
    assert rm.search_metrics(record, 8) == {
        "snn/adafire/site0_phi_T8": 1.0,
        "snn/adafire/site1_phi_T8": 3.0,
        "snn/time/adafire_search_s_T8": 5.0,
        "snn/ssc/site0_ratio_T8": 0.5,
        "snn/time/ssc_search_s_T8": 6,
    }
    assert rm.score_metrics("snn/full", res, 4, ("acc",)) == {"snn/full/acc_T4": 0.9}
    cost = SimpleNamespace(energy=lambda acs, steps: energy.snn_energy(acs, 10.0, steps, 100.0))
    out = rm.energy_metrics(cost, sites, res, 4, "snn/test")
    assert out["snn/test/sops_T4"] == 7.0 + 10.0 * 2.0  # ACs + dense MACs × mean steps
    assert out["snn/test/site1_acs_T4"] == 4.0 and out["snn/test/exit_t2_T4"] == 0.75
    assert sorted(out) == [
        "snn/test/acs_T4",
        "snn/test/energy_uj_T4",
        "snn/test/exit_t1_T4",
        "snn/test/exit_t2_T4",
        "snn/test/mean_timesteps_T4",
        "snn/test/saving_vs_ann_T4",
        "snn/test/site0_acs_T4",
        "snn/test/site1_acs_T4",
        "snn/test/sops_T4",
    ]
    base = rm.baseline_energy_metrics(cost, sites, res, 4)
    assert sorted(base) == [
        "snn/baseline/acs_T4",
        "snn/baseline/energy_uj_T4",
        "snn/baseline/mean_timesteps_T4",
        "snn/baseline/saving_vs_ann_T4",
        "snn/baseline/sops_T4",
    ]
    both = {"snn/test/energy_uj_T4": 1.5, "snn/baseline/energy_uj_T4": 2.0}
    assert rm.saving_metrics(both, 4) == {"snn/test/saving_vs_baseline_T4": 0.25}
    zero = {**both, "snn/baseline/energy_uj_T4": 0.0}
    assert math.isnan(rm.saving_metrics(zero, 4)["snn/test/saving_vs_baseline_T4"])


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
