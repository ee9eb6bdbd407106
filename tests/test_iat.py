"""Input-aware Adaptive Timesteps (IAT): confidence, exit thresholds, early-exit simulation."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import TensorDataset

from adacal.adaptive import iat
from adacal.adaptive.iat import (
    IATPolicy,
    confidence,
    exit_thresholds_from_entropy,
    fit_exit_thresholds,
    simulate_early_exit,
)
from adacal.calibration.recipe import observed_max_thresholds
from adacal.errors import ConfigError
from adacal.lightning import SNNEvaluator
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.simulate import anytime_logits, simulate, sop_totals, spike_totals

T = 8


def _h(p: list[float]) -> float:
    """Normalised entropy of a probability vector, by hand."""
    return -sum(q * math.log(q) for q in p) / math.log(len(p))


# --- confidence and the threshold equation ---------------------------------------------------
def test_entropy_confidence_is_zero_for_uniform_and_one_for_one_hot():
    assert torch.allclose(confidence(torch.zeros(3, 10), "entropy"), torch.zeros(3), atol=1e-6)
    one_hot = torch.full((2, 10), -40.0)
    one_hot[0, 3] = one_hot[1, 7] = 40.0
    assert torch.allclose(confidence(one_hot, "entropy"), torch.ones(2), atol=1e-6)
    # p = [1/4, 3/4]: c = 1 - H(p)/log 2
    c = confidence(torch.tensor([[0.0, math.log(3.0)]]), "entropy")
    assert c.item() == pytest.approx(1 - _h([0.25, 0.75]), abs=1e-6)


def test_maxprob_confidence_is_the_largest_softmax_probability():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, -1.0, 2.0]])
    expected = []
    for row in logits.tolist():
        exps = [math.exp(v) for v in row]
        expected.append(max(exps) / sum(exps))
    assert torch.allclose(confidence(logits, "maxprob"), torch.tensor(expected), atol=1e-6)


def test_exit_thresholds_follow_the_equation():
    mean_entropy = torch.tensor([0.5, 0.2, 0.1, 0.3], dtype=torch.float64)
    eta = exit_thresholds_from_entropy(mean_entropy, 0.6, 0.4)
    expected = [0.6 + 0.4 * math.exp(0.1 - e) for e in (0.5, 0.2, 0.1, 0.3)]
    assert eta.tolist() == pytest.approx(expected, abs=1e-12)
    assert eta[2].item() == pytest.approx(1.0)  # the least uncertain step gets a + b
    assert int(eta.argmax()) == 2


def test_fit_uses_the_correct_samples_and_all_samples_where_none_is_correct(monkeypatch):
    """Two samples (label 0), T = 3, outputs chosen so the mean output after t steps is known."""
    l3, l9 = math.log(3.0), math.log(9.0)
    means = torch.tensor(  # wanted mean output [T, B=2, K=2] after t = 1, 2, 3 steps
        [
            [[l3, 0.0], [0.0, l3]],  # t=1: sample 0 right (p0 = .75), sample 1 wrong
            [[0.0, l3], [0.0, l3]],  # t=2: both wrong (p1 = .75) -> Ē_2 over all samples
            [[l9, 0.0], [l3, 0.0]],  # t=3: both right, p0 = .9 and .75
        ]
    )
    steps = torch.arange(1, 4, dtype=torch.float32).reshape(3, 1, 1)
    sums = means * steps
    per_step = torch.cat([sums[:1], sums[1:] - sums[:-1]])  # outputs whose running mean = means

    def fake_simulate(net, x, T, chunk=None):
        return per_step[:, x.long().flatten()]  # the "images" are the sample indices

    monkeypatch.setattr(iat, "simulate", fake_simulate)
    images, labels = torch.arange(2.0).reshape(2, 1), torch.zeros(2, dtype=torch.long)
    # batch_size=1: the sums run over several batches
    eta = fit_exit_thresholds(torch.nn.Module(), images, labels, 3, 0.5, 0.3, "entropy", 1)
    e = [_h([0.25, 0.75]), _h([0.25, 0.75]), (_h([0.9, 0.1]) + _h([0.75, 0.25])) / 2]
    expected = [0.5 + 0.3 * math.exp(min(e) - et) for et in e]
    assert eta.tolist() == pytest.approx(expected, abs=1e-5)
    # maxprob: uncertainty 1 - max p
    eta = fit_exit_thresholds(torch.nn.Module(), images, labels, 3, 0.5, 0.3, "maxprob", 2)
    e = [0.25, 0.25, (0.1 + 0.25) / 2]
    expected = [0.5 + 0.3 * math.exp(min(e) - et) for et in e]
    assert eta.tolist() == pytest.approx(expected, abs=1e-5)


# --- on digits --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net(digits_ann, digits):
    """The converted digits CNN, max thresholds, a made-up fan-out map on every site (SOPs)."""
    net = convert(digits_ann, IFNeuron(), digits["x_train"][:1])
    observed_max_thresholds(net, digits["x_train"][:256])
    net.set_T(T)
    gen = torch.Generator().manual_seed(0)
    for site in net.sites:
        site.fanout = torch.randint(1, 10, site.neuron_shape, generator=gen).float()
    return net


@pytest.fixture(scope="module")
def eta(net, digits):
    return IATPolicy(fit_batches=2, batch_size=64).fit(net, digits["x_train"], digits["y_train"], T)


def test_fitted_thresholds_lie_in_a_to_a_plus_b(eta):
    assert eta.shape == (T,)
    assert (eta > 0.6).all() and (eta <= 1.0 + 1e-6).all()
    assert eta.max().item() == pytest.approx(1.0)


def _median_thresholds(net, x) -> torch.Tensor:
    """η_t just below the median entropy confidence after t steps (full simulation): at least
    half of the samples exit at step 1, whatever the trained model (ties included)."""
    mean = anytime_logits(simulate(net, x, T))  # [T, B, K]
    median = torch.stack([confidence(m, "entropy").median() for m in mean])
    return torch.nextafter(median, torch.tensor(-math.inf))


@pytest.mark.parametrize("thresholds", ["fitted", "median"])
def test_early_exit_saves_steps_and_exited_samples_cost_nothing(net, eta, digits, thresholds):
    x, y = digits["x_test"][:96], digits["y_test"][:96]
    eta = eta if thresholds == "fitted" else _median_thresholds(net, x)
    seen: list[list[int]] = [[] for _ in net.sites]
    hooks = [
        site.register_forward_hook(lambda m, inp, out, i=i: seen[i].append(inp[0].shape[0]))
        for i, site in enumerate(net.sites)
    ]
    try:
        res = simulate_early_exit(net, x, T, eta, "entropy")
    finally:
        for hook in hooks:
            hook.remove()
    steps = res.exit_step
    assert steps.min() >= 1 and steps.max() <= T
    if thresholds == "median":  # c_1 >= median(c_1) for half of the samples: they exit at t = 1
        assert int((steps == 1).sum()) >= len(y) // 2
        assert steps.float().mean() < T - 1  # many samples exit early
    assert res.active[0] == len(y) and (res.active[1:] <= res.active[:-1]).all()
    assert res.active.tolist() == [int((steps >= t).sum()) for t in range(1, T + 1)]
    assert int(res.active.sum()) == int(steps.sum())
    for calls in seen:  # one call per simulated step, on the still-active samples only
        assert calls == res.active[: len(calls)].tolist()
        assert sum(calls) == int(steps.sum())

    # second computation: the full T-step simulation of every sample, then the exit rule
    per_step = simulate(net, x, T, chunk=1)
    spikes, sops = spike_totals(net).double(), sop_totals(net).double()  # [L, T, B]
    mean = anytime_logits(per_step)  # [T, B, K]
    conf = torch.stack([confidence(m, "entropy") for m in mean])  # [T, B]
    over = conf > eta.reshape(-1, 1)
    over[-1] = True
    first = over.float().argmax(0) + 1  # first step with c_t > η_t
    assert torch.equal(steps, first)
    # the logits at exit are each sample's mean output after its exit step (not those of
    # another step or sample): so are its prediction and the accuracy at exit
    at_exit = mean[steps - 1, torch.arange(len(y))]
    torch.testing.assert_close(res.logits, at_exit, rtol=1e-5, atol=1e-5)
    assert torch.equal(res.logits.argmax(1), at_exit.argmax(1))
    ran = (torch.arange(1, T + 1).reshape(T, 1) <= steps).double()  # [T, B]: steps simulated
    torch.testing.assert_close(res.site_spikes, (spikes * ran).sum((1, 2)), rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(res.site_sops, (sops * ran).sum((1, 2)), rtol=1e-6, atol=1e-3)
    full_spikes = spikes.sum((1, 2))
    assert (res.site_spikes <= full_spikes + 1e-3).all()
    if thresholds == "median":  # samples left after step 1: every site fires less in total
        assert (res.site_spikes < full_spikes).all()


@pytest.mark.parametrize("chunk", [3, T])
def test_chunked_passes_decide_and_count_exits_as_one_step_passes(net, eta, digits, chunk):
    """Simulating c steps per pass changes only the wall time: exit steps, outputs at exit
    and the counts of each sample's first e steps equal those of one step per pass, and each
    pass runs on the samples still in the simulation when it starts."""
    x = digits["x_test"][:96]
    one = simulate_early_exit(net, x, T, eta, "entropy")
    assert int(one.active[0]) > int(one.active[chunk - 1]) > 0  # exits inside the first pass
    seen: list[int] = []
    hook = net.sites[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        many = simulate_early_exit(net, x, T, eta, "entropy", chunk=chunk)
    finally:
        hook.remove()
    assert torch.equal(many.exit_step, one.exit_step)
    assert torch.equal(many.active, one.active)
    torch.testing.assert_close(many.logits, one.logits, rtol=1e-5, atol=1e-5)
    for name in ("site_spikes", "site_sops", "site_messages"):
        torch.testing.assert_close(getattr(many, name), getattr(one, name), rtol=1e-9, atol=1e-6)
    starts = range(0, T, chunk)  # the passes: c·(samples not exited before the pass) rows each
    assert seen == [min(chunk, T - s) * int(one.active[s]) for s in starts if one.active[s] > 0]
    with pytest.raises(ValueError, match="chunk"):
        simulate_early_exit(net, x, T, eta, "entropy", chunk=0)


def test_no_early_exit_equals_the_full_simulation(net, digits):
    x = digits["x_test"][:64]
    never = torch.full((T,), math.inf)
    res = simulate_early_exit(net, x, T, never, "maxprob")
    assert (res.exit_step == T).all() and res.active.tolist() == [64] * T
    per_step = simulate(net, x, T)
    assert torch.equal(res.logits, anytime_logits(per_step)[-1])
    torch.testing.assert_close(res.logits, per_step.mean(0), rtol=1e-6, atol=1e-6)
    spikes = spike_totals(net).double().sum((1, 2))
    assert torch.allclose(res.site_spikes, spikes, rtol=1e-6)
    assert torch.allclose(res.site_sops, sop_totals(net).double().sum((1, 2)), rtol=1e-6)


def _evaluate(net, dataset, eta, devices: int = 1) -> tuple[SNNEvaluator, dict[str, float]]:
    evaluator = SNNEvaluator(net, dataset, T=T, anytime=[1, 2], batch_size=40, exit_thresholds=eta)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    return evaluator, trainer.test(evaluator, verbose=False)[0]


def test_evaluator_reports_exit_accuracy_mean_timesteps_and_histogram(net, digits):
    x, y = digits["x_test"][:96], digits["y_test"][:96]
    eta = _median_thresholds(net, x)  # half of the images exit at t = 1
    evaluator, logged = _evaluate(net, TensorDataset(x, y), eta)
    r = evaluator.results
    hist = r["exit_hist"]
    assert len(hist) == T and sum(hist) == pytest.approx(1.0)
    assert sum(t * f for t, f in enumerate(hist, 1)) == pytest.approx(r["mean_timesteps"])
    assert r["mean_timesteps"] < (1 + T) / 2 + 1e-9  # at least half exit at t = 1
    assert logged["mean_timesteps"] == pytest.approx(r["mean_timesteps"])
    assert r["acc_exit"] == r[f"acc_t{T}"] and "acc_t1" not in r
    res = simulate_early_exit(net, x, T, eta, "entropy")  # one batch instead of 40-image ones
    assert r["mean_timesteps"] == pytest.approx(res.exit_step.double().mean().item())
    assert r["acc_exit"] == pytest.approx((res.logits.argmax(1) == y).double().mean().item())
    assert r["spikes"] == pytest.approx(res.site_spikes.sum().item() / len(y), rel=1e-5)
    assert r["sops"] == pytest.approx(res.site_sops.sum().item() / len(y), rel=1e-5)


@pytest.mark.ddp
def test_two_process_early_exit_evaluation_equals_one_process(net, eta, digits):
    dataset = TensorDataset(digits["x_test"][:91], digits["y_test"][:91])  # uneven shards
    one = _evaluate(net, dataset, eta, 1)[1]
    two = _evaluate(net, dataset, eta, 2)[1]
    assert set(one) == set(two) and "mean_timesteps" in one
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-6), key


# --- configuration --------------------------------------------------------------------------
def test_iat_config_builds_the_policy(compose_config, tmp_path):
    cfg = compose_config(["inference=iat"], output_dir=tmp_path)
    policy = instantiate(cfg.inference)
    assert policy == IATPolicy()
    assert (policy.name, policy.confidence, policy.a, policy.b) == ("iat", "entropy", 0.6, 0.4)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"confidence": "margin"}, "inference.confidence"),
        ({"fit_batches": 0}, "inference.fit_batches"),
        ({"batch_size": 0}, "inference.batch_size"),
        ({"chunk": 0}, "inference.chunk"),
        ({"b": -0.1}, "inference.b"),
        ({"a": 1.0}, "inference.a"),
    ],
)
def test_bad_policy_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        IATPolicy(**kwargs)
    assert err.value.key == key


def test_unknown_metric_is_refused_everywhere(net, digits):
    with pytest.raises(ConfigError, match="inference.confidence"):
        confidence(torch.zeros(1, 3), "margin")
    with pytest.raises(ConfigError, match="inference.confidence"):
        simulate_early_exit(net, digits["x_test"][:2], T, torch.ones(T), "margin")
    with pytest.raises(ConfigError, match="inference.confidence"):
        SNNEvaluator(net, TensorDataset(digits["x_test"][:2]), T=T, confidence="margin")


def test_dense_confidence_is_the_mean_of_the_pixel_confidences():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4, 6)
    for metric in ("entropy", "maxprob"):
        per_pixel = confidence(logits.permute(0, 2, 3, 1).reshape(-1, 5), metric).reshape(3, -1)
        torch.testing.assert_close(confidence(logits, metric), per_pixel.mean(1))


def test_pixel_accuracy_weighting_reduces_to_the_paper_for_classification():
    """correctness: {0, 1} per sample for [S, B, K]; pixel accuracy (void ignored) for dense."""
    from adacal.adaptive.iat import correctness

    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]])  # [S=1, B=3, K=2]
    assert correctness(logits, torch.tensor([0, 0, 0])).tolist() == [[1.0, 0.0, 1.0]]
    dense = torch.zeros(1, 2, 2, 2, 2)  # [S, B, K, H, W]: class 1 everywhere
    dense[:, :, 1] = 1.0
    y = torch.tensor([[[1, 1], [0, 255]], [[255, 255], [255, 255]]])
    assert correctness(dense, y).tolist() == [[2 / 3, 0.0]]  # 2 of 3 labelled; none labelled
