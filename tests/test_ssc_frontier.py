"""SSC's budget frontier (``compression.frontier``): one search, a network per budget ρ, each the
network a run with that ρ would build; the records split into one entry per budget."""

from __future__ import annotations

import pytest
import torch

from adacal import keys
from adacal.adaptive.compression import SpikeCompression, budget_name
from adacal.calibration import BiasCorrection
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate
from adacal.errors import ConfigError
from adacal.reporting.records import RunRecord, matches, split_record
from adacal.snn.convert import SpikingNetwork, convert
from adacal.snn.neurons import BurstNeuron

T = 2
MAIN, OTHERS, IMPOSSIBLE = 1.5, (1.0, 3.0), 0.01


def _calibrate(digits, digits_ann, rho: float, frontier=()) -> tuple:
    """Burst φ = 2 + bias correction + SSC(ρ) on 64 digits, T = 2; the budget networks too."""
    calib = digits["x_train"][:64]
    net = convert(digits_ann, BurstNeuron(phi=2), calib[:1])
    data = CalibrationData.from_network(net, calib, T, progress=False)
    budgets: dict[str, SpikingNetwork] = {}
    record = calibrate(
        net,
        data,
        ThresholdSpec(),
        [BiasCorrection()],
        compression=SpikeCompression(rho=rho, batch_size=64, frontier=frontier),
        on_budget=lambda name, n: budgets.setdefault(name, n),
    )
    return net, record["ssc"], budgets


@pytest.fixture(scope="module")
def frontier(digits, digits_ann):
    return _calibrate(digits, digits_ann, MAIN, (*OTHERS, MAIN, IMPOSSIBLE))


def _same(a: SpikingNetwork, b: SpikingNetwork) -> None:
    for sa, sb in zip(a.sites, b.sites, strict=True):
        assert torch.equal(sa.theta, sb.theta)
        assert torch.equal(sa.bias, sb.bias)
        assert sa.phi == sb.phi


@pytest.mark.parametrize("rho", OTHERS)
def test_a_budget_network_is_the_network_a_run_with_that_budget_builds(
    frontier, digits, digits_ann, rho
):
    """Same ratios, thresholds and re-calibrated biases, bitwise, as a separate run with ρ."""
    _, record, budgets = frontier
    alone, alone_record, none = _calibrate(digits, digits_ann, rho)
    assert none == {}  # no frontier, no budget networks (and no copy made)
    point = next(p for p in record["frontier"] if p["rho"] == rho)
    assert point["ratio"] == alone_record["ratio"]
    assert point["chosen_spikes"] == alone_record["chosen_spikes"]
    _same(budgets[budget_name(rho)], alone)


def test_the_main_budget_keeps_the_network_and_is_not_repeated(frontier, digits, digits_ann):
    net, record, budgets = frontier
    alone, alone_record, _ = _calibrate(digits, digits_ann, MAIN)
    assert record["ratio"] == alone_record["ratio"]
    _same(net, alone)
    assert sorted(budgets) == sorted(budget_name(r) for r in OTHERS)
    for other in budgets.values():  # handed over without the last calibration batch's state
        assert all(s.v is None and not s.spike_counts for s in other.sites)
    assert [p["rho"] for p in record["frontier"]] == [*OTHERS, IMPOSSIBLE]


def test_looser_budgets_never_cost_more_and_an_infeasible_one_is_recorded(frontier):
    """min Σ E over a larger feasible set is no larger: the solver's spikes fall with ρ."""
    _, record, _ = frontier
    by_rho = {p["rho"]: p for p in record["frontier"]} | {MAIN: record}
    spikes = [by_rho[r]["chosen_spikes"] for r in sorted((*OTHERS, MAIN))]
    assert spikes == sorted(spikes, reverse=True)
    assert spikes[0] > spikes[-1]
    for r in (*OTHERS, MAIN):
        assert by_rho[r]["chosen_sensitivity"] <= by_rho[r]["budget"] * (1 + 1e-9)
        assert by_rho[r]["budget"] == pytest.approx(r / MAIN * record["budget"])
    assert "smallest achievable" in by_rho[IMPOSSIBLE]["infeasible"]
    assert "ratio" not in by_rho[IMPOSSIBLE]


@pytest.mark.parametrize("frontier", [[0.0], ["x"], [1.0, -1.0]])
def test_bad_frontiers_name_the_key(frontier):
    with pytest.raises(ConfigError) as info:
        SpikeCompression(frontier=frontier)
    assert info.value.key == "compression.frontier"


def test_budget_points_split_into_entries_selected_by_rho(tmp_path):
    metrics = {
        "snn/test/acc_T4": 0.9,
        "snn/budget/rho1.25/acc_T4": 0.8,
        "snn/budget/rho2.0/acc_T4": 0.7,
        "snn/budget/rho2.0/sops_T4": 5.0,
        "snn/time/evaluation_rho2.0_s_T4": 1.0,
    }
    config = {
        "neuron": {"name": "adafire"},
        "compression": {"name": "ssc", "rho": 1.0},
        "inference": {"name": "iat"},
    }
    run = RunRecord(tmp_path, "ok", config, metrics)
    assert keys.budget_points(metrics) == ["rho1.25", "rho2.0"]
    entries = {e.run.config["compression"]["rho"]: e for e in split_record(run)}
    assert set(entries) == {1.0, 1.25, 2.0}
    picked = [e for e in split_record(run) if matches(e, {"compression.rho": 2.0})]
    assert [e.metrics["snn/test/acc_T4"] for e in picked] == [0.7]
    assert entries[2.0].metrics["snn/test/acc_T4"] == 0.7
    assert entries[2.0].metrics["snn/test/sops_T4"] == 5.0
    assert entries[2.0].run.config["compression"]["budget_point"] is True
    assert entries[2.0].label == entries[1.0].label.replace(" + iat", "")
    assert entries[1.25].metrics["snn/test/acc_T4"] == 0.8
    assert entries[1.0].metrics["snn/test/acc_T4"] == 0.9
