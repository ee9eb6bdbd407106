"""End-to-end Adaptive Calibration run on digits: AdaFire + SSC + IAT, energy and baseline."""

from __future__ import annotations

import json
import re

import pytest

from adacal import keys
from adacal.checkpoint import save_state_dict
from adacal.metrics import energy
from adacal.pipeline import run
from adacal.reporting import read_metrics
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron

T = 4


@pytest.fixture(scope="module")
def adaptive_run(compose_config, digits_ann, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("adaptive")
    ckpt = out / "digits_ann.pt"
    save_state_dict(digits_ann, ckpt, "tests/conftest.py digits_ann")
    overrides = [
        f"ann.checkpoint={ckpt}",
        "dataset.test_limit=200",
        f"snn.T=[{T}]",
        "snn.anytime=[1,2,4]",
        "calibration.num_samples=64",
        "neuron=adafire",
        "neuron.batch_size=32",
        "compression=ssc",
        "compression.batch_size=32",
        "compression.rho=1.5",
        "compression.frontier=[3.0]",
        "inference=iat",
        "inference.fit_batches=1",
        "inference.batch_size=128",
        "logger=none",
        "progress=false",
        "trainer.enable_progress_bar=false",
    ]
    metrics = run(compose_config(overrides, output_dir=out))
    return out, metrics


def test_search_choices_are_recorded(adaptive_run):
    out, m = adaptive_run
    assert read_metrics(out)["status"] == "ok"
    record = json.loads((out / f"adaptive_T{T}.json").read_text())
    phis = record["adafire"]["phi"]
    ratios = record["ssc"]["ratio"]
    assert [m[f"snn/adafire/site{i}_phi_T{T}"] for i in range(len(phis))] == phis
    assert [m[f"snn/ssc/site{i}_ratio_T{T}"] for i in range(len(ratios))] == ratios
    assert all(1 <= p <= 8 for p in phis) and all(1.0 <= r <= 10.0 for r in ratios)
    assert len(record["iat"]["eta"]) == T
    assert m[f"snn/time/adafire_search_s_T{T}"] > 0 and m[f"snn/time/ssc_search_s_T{T}"] > 0


def test_iat_exits_early_and_energy_follows_the_convention(adaptive_run, digits_ann, digits):
    out, m = adaptive_run
    steps = m[f"snn/test/mean_timesteps_T{T}"]
    hist = [m[f"snn/test/exit_t{t}_T{T}"] for t in range(1, T + 1)]
    assert sum(hist) == pytest.approx(1.0)
    assert steps == pytest.approx(sum(t * h for t, h in enumerate(hist, start=1)))
    assert steps < T  # some test images left early
    # energy = 4.6 pJ × dense MACs × steps + 0.9 pJ × ACs, computed here independently
    net = convert(digits_ann, IFNeuron(), digits["x_test"][:1])
    dense = energy.dense_macs(net, digits["x_test"][:1])
    acs = m[f"snn/test/acs_T{T}"]
    assert m[f"snn/test/sops_T{T}"] == pytest.approx(acs + dense * steps)
    assert m[f"snn/test/energy_uj_T{T}"] == pytest.approx((4.6 * dense * steps + 0.9 * acs) / 1e6)
    assert m["ann/energy_uj"] == pytest.approx(
        4.6 * energy.ann_macs(net, digits["x_test"][:1]) / 1e6
    )
    assert m[f"snn/test/saving_vs_ann_T{T}"] == pytest.approx(
        1 - m[f"snn/test/energy_uj_T{T}"] / m["ann/energy_uj"]
    )
    for name in ("acs", "acs_messages"):  # the per-site counts add up to the totals
        per_site = sum(v for k, v in m.items() if re.fullmatch(rf"snn/test/site\d+_{name}_T{T}", k))
        assert per_site == pytest.approx(m[f"snn/test/{name}_T{T}"])
    assert m[f"snn/test/acs_messages_T{T}"] <= acs  # a burst of k is one message, k spikes


def test_baseline_runs_beside_and_gives_the_saving(adaptive_run):
    _, m = adaptive_run
    base = m[f"snn/baseline/energy_uj_T{T}"]
    assert m[f"snn/baseline/mean_timesteps_T{T}"] == T  # the baseline runs every step
    assert 0.0 <= m[f"snn/baseline/acc_T{T}"] <= 1.0
    assert m[f"snn/test/saving_vs_baseline_T{T}"] == pytest.approx(
        1 - m[f"snn/test/energy_uj_T{T}"] / base
    )


def test_a_further_ssc_budget_is_evaluated_as_a_network_of_its_own(
    adaptive_run, digits_ann, digits
):
    """compression.frontier=[3.0]: its ratios are recorded, its network runs every test image
    for all T steps (snn/budget/rho3.0/*), and its energy follows from its own counts."""
    out, m = adaptive_run
    point = json.loads((out / f"adaptive_T{T}.json").read_text())["ssc"]["frontier"]
    assert [p["name"] for p in point] == ["rho3.0"] and point[0]["rho"] == 3.0
    assert (
        point[0]["chosen_spikes"]
        <= json.loads((out / f"adaptive_T{T}.json").read_text())["ssc"]["chosen_spikes"]
    )  # a looser budget never costs more on the measured tables
    prefix = keys.budget("rho3.0")
    assert m[keys.key(prefix, "mean_timesteps", T)] == T
    assert 0.0 <= m[keys.key(prefix, "acc", T)] <= 1.0
    dense = energy.dense_macs(
        convert(digits_ann, IFNeuron(), digits["x_test"][:1]), digits["x_test"][:1]
    )
    acs = m[keys.key(prefix, "acs", T)]
    assert m[keys.key(prefix, "energy_uj", T)] == pytest.approx((4.6 * dense * T + 0.9 * acs) / 1e6)
    assert keys.budget_points(m) == ["rho3.0"]
