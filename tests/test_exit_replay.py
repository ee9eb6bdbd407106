"""Replayed exits (adacal.snn.exit_replay): an exit policy scored from one full T-step pass
equals the same policy run for real, and the IAT frontier config that drives it."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import TensorDataset

from adacal import keys
from adacal.adaptive.iat import IATPolicy, fit_exit_thresholds
from adacal.calibration.recipe import observed_max_thresholds
from adacal.errors import ConfigError
from adacal.lightning import SNNEvaluator
from adacal.reporting.records import RunRecord, matches, split_record
from adacal.snn.convert import convert
from adacal.snn.early_exit import confidence
from adacal.snn.exit_replay import ExitPoint, at_exit, counts_to_exit, exit_index, running_means
from adacal.snn.neurons import IFNeuron
from adacal.snn.simulate import anytime_logits, simulate

T = 6


# --- pure functions ---------------------------------------------------------------------------
def test_running_means_use_the_early_exit_arithmetic():
    per_step = torch.randn(T, 5, 4)
    means = running_means(per_step)
    total = None
    for t in range(1, T + 1):  # simulate_early_exit: float64 sum, divided by t, cast back
        y = per_step[t - 1].double()
        total = y if total is None else total + y
        assert torch.equal(means[t - 1], (total / t).to(per_step.dtype))


def test_exit_index_is_the_first_step_above_its_threshold():
    # one-hot-ish outputs whose maxprob confidence after t steps is known: sample b's mean
    # output at t is [s, 0] with s chosen so that softmax max = p[t, b]
    p = torch.tensor([[0.6, 0.9, 0.6], [0.95, 0.6, 0.6], [0.7, 0.7, 0.6]])  # [T=3, B=3]
    logit = torch.log(p / (1 - p))  # softmax([s, 0]) max = p for s = log(p / (1 − p))
    means = torch.stack([logit, torch.zeros_like(logit)], -1)  # [3, 3, 2]
    eta = torch.tensor([0.8, 0.8, 0.8])
    # sample 0: 0.6, 0.95 -> exits at t=2; sample 1: 0.9 -> t=1; sample 2: never -> t=T=3
    assert exit_index(means, eta, "maxprob").tolist() == [1, 0, 2]
    assert exit_index(means, torch.ones(3), "maxprob").tolist() == [2, 2, 2]  # η = 1: no exit
    assert exit_index(means, torch.zeros(3), "maxprob").tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="one exit threshold per step"):
        exit_index(means, torch.ones(2), "maxprob")


def test_exit_index_matches_a_per_sample_loop():
    per_step = torch.randn(T, 50, 10) * 2
    means = running_means(per_step)
    eta = torch.rand(T) * 0.6 + 0.2
    for metric in ("entropy", "maxprob"):
        index = exit_index(means, eta, metric)
        for b in range(50):
            c = [confidence(means[t, b : b + 1], metric).item() for t in range(T - 1)]
            want = next((t for t in range(T - 1) if c[t] > eta[t].item()), T - 1)
            assert index[b].item() == want
        assert torch.equal(at_exit(means, index)[3], means[index[3], 3])


def test_counts_to_exit_sums_each_samples_first_steps():
    counts = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # [L=2, T=3, B=2]
    index = torch.tensor([0, 2])  # sample 0 runs 1 step, sample 1 all 3
    # site 0: c[0,0,0] + (c[0,0,1] + c[0,1,1] + c[0,2,1]) = 0 + (1 + 3 + 5)
    # site 1: c[1,0,0] + (c[1,0,1] + c[1,1,1] + c[1,2,1]) = 6 + (7 + 9 + 11)
    assert counts_to_exit(counts, index).tolist() == [9.0, 33.0]


# --- on digits: replay = real early exit ------------------------------------------------------
@pytest.fixture(scope="module")
def net(digits_ann, digits):
    net = convert(digits_ann, IFNeuron(), digits["x_train"][:1])
    observed_max_thresholds(net, digits["x_train"][:256])
    net.set_T(T)
    gen = torch.Generator().manual_seed(1)
    for site in net.sites:
        site.fanout = torch.randint(1, 10, site.neuron_shape, generator=gen).float()
    return net


def _run(net, dataset, **kwargs) -> dict:
    evaluator = SNNEvaluator(net, dataset, T=T, anytime=[1, 2], batch_size=40, **kwargs)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.test(evaluator, verbose=False)
    return evaluator.results


def _median_eta(net, x, metric) -> torch.Tensor:
    """η_t just below the median confidence after t steps: about half exit at every step."""
    mean = anytime_logits(simulate(net, x, T))
    median = torch.stack([confidence(m, metric).median() for m in mean])
    return torch.nextafter(median, torch.tensor(-math.inf))


def test_replayed_exits_equal_real_early_exit_runs(net, digits):
    x, y = digits["x_test"][:120], digits["y_test"][:120]
    dataset = TensorDataset(x, y)
    points = [
        ExitPoint("entropy_median", "entropy", 0.0, 0.0, _median_eta(net, x, "entropy")),
        ExitPoint("maxprob_median", "maxprob", 0.0, 0.0, _median_eta(net, x, "maxprob")),
        ExitPoint("never", "maxprob", 0.0, 0.0, torch.full((T,), 2.0)),
    ]
    full = _run(net, dataset, replay=points)
    assert set(full["replay"]) == {p.name for p in points}
    for point in points:
        real = _run(net, dataset, exit_thresholds=point.eta, confidence=point.confidence)
        got = full["replay"][point.name]
        for k in ("acc_exit", f"acc_t{T}", "mean_timesteps", "spikes", "sops", "messages"):
            assert got[k] == pytest.approx(real[k], rel=1e-6), (point.name, k)
        assert got["exit_hist"] == pytest.approx(real["exit_hist"], abs=1e-9)
        assert got["site_sops"] == pytest.approx(real["site_sops"], rel=1e-6)
    never = full["replay"]["never"]  # no exit: the full pass itself
    assert never["mean_timesteps"] == T and never[f"acc_t{T}"] == full[f"acc_t{T}"]
    assert never["sops"] == pytest.approx(full["sops"], rel=1e-9)
    assert full["replay"]["entropy_median"]["mean_timesteps"] < (1 + T) / 2  # exits happened


def test_fit_all_gives_each_point_the_thresholds_of_its_own_fit(net, digits):
    policy = IATPolicy(
        fit_batches=2, batch_size=32, frontier={"b": [0.4, 0.05], "confidence": ["maxprob"]}
    )
    images, labels = digits["x_train"][:64], digits["y_train"][:64]
    eta, points = policy.fit_all(net, images, labels, T)
    want = fit_exit_thresholds(net, images, labels, T, 0.6, 0.4, "entropy", 32)
    assert torch.equal(eta, want)
    assert [(p.name, p.confidence, p.a, p.b) for p in points] == [
        ("maxprob_b0.4", "maxprob", 0.6, 0.4),
        ("maxprob_b0.05", "maxprob", 0.95, 0.05),
    ]
    for p in points:
        own = fit_exit_thresholds(net, images, labels, T, p.a, p.b, p.confidence, 32)
        assert torch.equal(p.eta, own)
        assert (p.eta > p.a).all() and p.eta.max().item() == pytest.approx(1.0)


# --- configuration and records ----------------------------------------------------------------
def test_frontier_points_are_the_product_of_b_and_confidence():
    policy = IATPolicy(frontier={"b": [0.2, 0.1], "confidence": ["entropy", "maxprob"]})
    names = [p[0] for p in policy.points()]
    assert names == ["entropy_b0.2", "entropy_b0.1", "maxprob_b0.2", "maxprob_b0.1"]
    assert all(a == pytest.approx(1 - b) for _, _, a, b in policy.points())
    assert IATPolicy().points() == []


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"frontier": {"b": [0.0]}}, "inference.frontier.b"),
        ({"frontier": {"b": [1.5]}}, "inference.frontier.b"),
        ({"frontier": {"b": "0.2"}}, "inference.frontier.b"),
        ({"frontier": {"b": [0.2], "confidence": ["margin"]}}, "inference.confidence"),
        ({"frontier": {"rho": [1]}}, "inference.frontier"),
        ({"frontier": {"b": [0.2]}, "compare_full": False}, "inference.frontier"),
    ],
)
def test_bad_frontier_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        IATPolicy(**kwargs)
    assert err.value.key == key


def test_replayed_points_become_table_entries_selected_by_their_policy(tmp_path):
    metrics = {
        "snn/test/acc_T8": 0.80,
        "snn/test/mean_timesteps_T8": 5.0,
        "snn/full/acc_T8": 0.82,
        keys.key(keys.replay("maxprob_b0.2"), "acc", 8): 0.79,
        keys.key(keys.replay("maxprob_b0.2"), "mean_timesteps", 8): 3.5,
        keys.key(keys.replay("entropy_b0.05"), "acc", 8): 0.81,
    }
    config = {"inference": {"name": "iat", "confidence": "entropy", "a": 0.6, "b": 0.4}}
    run = RunRecord(tmp_path, "ok", config, metrics)
    entries = split_record(run)
    replayed = [e for e in entries if e.run.config["inference"].get("replayed")]
    assert len(replayed) == 2
    pick = [e for e in entries if matches(e, {"inference.b": 0.2, "inference.replayed": True})]
    assert len(pick) == 1
    assert pick[0].run.config["inference"]["confidence"] == "maxprob"
    assert pick[0].metrics["snn/test/acc_T8"] == 0.79
    assert pick[0].metrics["snn/test/mean_timesteps_T8"] == 3.5
    select = {"method": run.method, "inference.b": 0.4}  # the real run, not its full pass
    real = [e for e in entries if matches(e, select, {"inference.replayed": True})]
    assert [e.metrics["snn/test/acc_T8"] for e in real] == [0.80]
    assert keys.replay_points(metrics) == ["entropy_b0.05", "maxprob_b0.2"]
    with pytest.raises(ValueError, match="without '/'"):
        keys.replay("a/b")
