"""SNN Calibration on the digits set: the claims of the foundation issue, measured."""

from __future__ import annotations

import pytest
import torch

from adacal.calibration import (
    BiasCorrection,
    CalibrationData,
    PotentialCalibration,
    WeightCalibration,
    site_rates,
)
from adacal.calibration.bias import channel_mean
from adacal.calibration.data import record_preactivations
from adacal.calibration.recipe import ThresholdSpec, calibrate, fit_thresholds
from adacal.calibration.thresholds import surrogate_error
from adacal.calibration.weights import site_region
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron, surrogate_floor
from adacal.snn.simulate import anytime_logits, simulate


def _logits(net, digits, T: int) -> torch.Tensor:
    """The SNN's rate-coded output after T steps on the digits test images, [N, K]."""
    return anytime_logits(simulate(net, digits["x_test"], T, chunk=16))[-1]


def _accuracy(logits: torch.Tensor, digits) -> float:
    return (logits.argmax(1) == digits["y_test"]).float().mean().item()


def _converted(digits_ann, digits, T, method="max", steps=(), samples=256):
    net = convert(digits_ann, IFNeuron(), digits["x_train"][:1])
    images = digits["x_train"][:samples]
    data = CalibrationData.from_network(net, images, T, chunk=8, progress=False)
    calibrate(net, data, ThresholdSpec(method=method), list(steps))
    return net, data


@pytest.fixture(scope="module")
def ann_logits(digits_ann, digits):
    with torch.no_grad():
        return digits_ann(digits["x_test"])


# The margins below were measured with the one-thread fixture model, simulated on 1 and on 2
# threads (tests/README.md, "Margins"): each bound is several times looser than the value
# measured, and far from what broken code gives.


def test_large_T_matches_the_ann(digits_ann, digits, ann_logits):
    assert _accuracy(ann_logits, digits) > 0.9  # measured 0.98 (chance: 0.1)
    net, _ = _converted(digits_ann, digits, 128)
    n = 180  # the first half of the test set: the same check at half the cost
    snn = anytime_logits(simulate(net, digits["x_test"][:n], 128, chunk=16))[-1]
    ann = ann_logits[:n]
    # rate coding converges to the ANN: relative output error measured 0.014 at T = 128 on these
    # 180 images (0.008 at T = 256, which takes twice as long and tests nothing more)
    assert (snn - ann).norm() / ann.norm() < 0.05
    # measured 0.994 on these 180 (one image changes class; 0.997 on all 360)
    assert (snn.argmax(1) == ann.argmax(1)).float().mean() >= 0.97


def test_light_calibration_raises_low_T_accuracy(digits_ann, digits, ann_logits):
    none, _ = _converted(digits_ann, digits, 4)
    light, _ = _converted(digits_ann, digits, 4, steps=[BiasCorrection()])
    out_none, out_light = _logits(none, digits, 4), _logits(light, digits, 4)
    # the output moves towards the ANN's: squared error measured 10.2 -> 1.75 (x0.17)
    err_none = (out_none - ann_logits).pow(2).mean().item()
    err_light = (out_light - ann_logits).pow(2).mean().item()
    assert err_light < 0.5 * err_none, (err_none, err_light)
    acc_none, acc_light = _accuracy(out_none, digits), _accuracy(out_light, digits)
    assert acc_light > acc_none, (acc_none, acc_light)  # measured 0.892 -> 0.975


def test_mse_thresholds_have_lower_surrogate_error_than_max(digits_ann, digits):
    T = 4
    net, data = _converted(digits_ann, digits, T, method="max")
    max_thetas = [s.theta.clone() for s in net.sites]
    fit_thresholds(net, data, ThresholdSpec(method="mse"))
    total_max = total_mse = 0.0
    for site, act, th_max in zip(net.sites, data.ann, max_thetas, strict=True):
        rows = act.reshape(1, -1)
        err_max = surrogate_error(rows, th_max, T, T).item()
        err_mse = surrogate_error(rows, site.theta, T, T).item()
        # θ is a grid point max·(1 − 0.01 i), i < 95, and i = 0 (max) is one of them
        i = round(100 * (1 - site.theta.item() / th_max.item()))
        assert 0 <= i < 95
        assert site.theta.item() == pytest.approx(th_max.item() * (1 - 0.01 * i), rel=1e-5)
        assert err_mse <= err_max * (1 + 1e-4)  # fitted on a subsample: up to rounding
        total_max += err_max
        total_mse += err_mse
    assert total_mse < 0.8 * total_max, (total_mse, total_max)  # measured x0.15


def test_bias_correction_shifts_the_first_site_by_its_mean_error(digits_ann, digits):
    """Bias calibration subtracts the per-channel mean error (SNN rate − ANN activation) from
    the input of the site. The first site's input is constant over the steps, so its IF rate is
    the clip-round surrogate of that input, before and after the shift: checked by equation
    (whether the mean error then shrinks depends on how the quantiser cuts the trained model's
    activations, so it is not asserted)."""
    T = 4
    net, data = _converted(digits_ann, digits, T)
    images, site = data.images, net.sites[0]
    (z,) = record_preactivations(net, images, batch_size=64)[:1]
    theta = site.theta.reshape(1, -1, 1, 1)

    def quantised(shift: torch.Tensor) -> torch.Tensor:
        return surrogate_floor(z + shift.reshape(1, -1, 1, 1), theta, T, theta / 2, T)

    rates = site_rates(net, images, T, [0])[0]
    before = channel_mean(rates - data.ann[0])
    BiasCorrection()(net, data)
    assert torch.allclose(site.bias, -before)  # b <- b - mean error, per channel
    after_rates = site_rates(net, images, T, [0])[0]
    after = channel_mean(after_rates - data.ann[0])
    for got, shift in ((rates, torch.zeros_like(before)), (after_rates, -before)):
        expected = quantised(shift)
        # equal up to a float ulp at a level boundary (T·z/θ + 1/2 an integer)
        wrong = (got - expected).abs() > 1e-4
        assert wrong.double().mean() < 1e-4, int(wrong.sum())
    expected_after = channel_mean(quantised(-before) - data.ann[0])
    torch.testing.assert_close(after, expected_after, atol=1e-4, rtol=0)
    assert not torch.allclose(after, before, atol=1e-4)  # the shift changed the rates


def test_potential_calibration_reduces_the_rate_error_per_neuron(digits_ann, digits):
    T = 4
    net, data = _converted(digits_ann, digits, T)
    last = len(net.sites) - 1

    def error() -> float:
        rates = site_rates(net, data.images, T, [last])[last]
        return (rates - data.ann[last]).mean(0).abs().mean().item()

    before = error()
    PotentialCalibration()(net, data)
    assert error() < 0.5 * before  # measured x0.06


def test_weight_calibration_never_raises_the_surrogate_loss(digits_ann, digits):
    T = 4
    net, data = _converted(digits_ann, digits, T)
    site = net.sites[1]
    region, bounds = site_region(net, 1)
    assert [b.op for b in bounds] == ["call_module"]  # fed by site 0 only

    def loss() -> float:
        rates = site_rates(net, data.images, T, [0])[0]
        site.mode = "surrogate"
        with torch.no_grad():
            out = site(region(rates))
        site.mode = "relu"
        return (out - data.ann[1]).pow(2).sum(1).mean().item()

    before = loss()
    calibration = WeightCalibration(iterations=100, lr=1e-2, samples=256, checks=5)
    calibration(net, data)
    assert len(calibration.losses) == len(net.sites)
    assert calibration.losses[1] == pytest.approx(loss(), rel=1e-4)  # the weights kept
    assert loss() <= before + 1e-6


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("lr", 0.0, "must be"), ("lr", -1e-4, "must be"), ("iterations", -1, "must be"),
     ("batch_size", 0, "must be"), ("optimizer", "adamw", "'adamw' is not one of")],
)  # fmt: skip
def test_weight_calibration_refuses_bad_settings(field, value, says):
    from adacal.errors import ConfigError

    with pytest.raises(ConfigError, match=f"WeightCalibration>.{field}: {says}"):
        WeightCalibration(**{field: value})


def _residual_model() -> torch.nn.Module:
    """The thin ResNet-20 with seeded random weights and BN statistics that are not identity."""
    from adacal.models import resnet20

    torch.manual_seed(0)
    model = resnet20(10).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.2)
    return model


@pytest.mark.parametrize("step", [BiasCorrection, PotentialCalibration])
def test_prefix_reuse_gives_the_same_corrections_as_resimulating(step):
    """Site-by-site calibration run once through the graph (frontier kept, the corrected site
    re-run) equals re-simulating up to every site, on a residual net with BN and a burst site."""
    from adacal.snn.neurons import BurstNeuron

    model = _residual_model()
    x = torch.randn(6, 3, 32, 32)
    nets = []
    for reuse in (True, False):
        net = convert(model, BurstNeuron(phi=2), x[:1])
        data = CalibrationData.from_network(net, x, 5, chunk=2, batch_size=4, progress=False)
        calibrate(net, data, ThresholdSpec(method="max"), [step(reuse_prefix=reuse)])
        nets.append(net)
    fast, slow = nets
    changed = 0
    for a, b in zip(fast.sites, slow.sites, strict=True):
        torch.testing.assert_close(a.bias, b.bias, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.v_delta, b.v_delta, atol=1e-5, rtol=1e-5)
        changed += int((a.bias.abs().sum() + a.v_delta.abs().sum()) > 0)
    assert changed == len(fast.sites)  # every site was corrected, not a trivial equality
    y_fast = anytime_logits(simulate(fast, x, 5))[-1]
    y_slow = anytime_logits(simulate(slow, x, 5))[-1]
    torch.testing.assert_close(y_fast, y_slow, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("phi", [1, 2])
def test_weight_calibration_with_prefix_reuse_gives_the_same_weights(phi):
    """One pass through the graph (each region tuned from the calibrated upstream rates kept
    on the frontier, then recomputed with its new weights) equals re-simulating from the input
    for every site, on a residual net with BN, IF (φ = 1) or burst (φ = 2) sites."""
    from adacal.snn.neurons import BurstNeuron

    model = _residual_model()
    x = torch.randn(8, 3, 32, 32)
    neuron = IFNeuron() if phi == 1 else BurstNeuron(phi=phi)
    nets, reports = [], []
    for reuse in (True, False):
        net = convert(model, neuron, x[:1])
        data = CalibrationData.from_network(net, x, 4, chunk=4, batch_size=4, progress=False)
        step = WeightCalibration(samples=None, iterations=20, lr=1e-3, batch_size=4, checks=2,
                                 reuse_prefix=reuse)  # fmt: skip
        calibrate(net, data, ThresholdSpec(method="max"), [step])
        nets.append(net)
        reports.append(step.report)
    fast, slow = nets
    moved = 0
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    original = dict(convert(model, neuron, x[:1]).named_parameters())
    for name, a in fast.named_parameters():
        moved += int(not torch.equal(a, original[name]))
    assert moved >= len(fast.sites) // 2  # weights did change: not a trivial equality
    before, after = reports[0]["loss_before"], reports[0]["loss_after"]
    torch.testing.assert_close(torch.tensor(before), torch.tensor(reports[1]["loss_before"]),
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    assert all(a <= b for a, b in zip(after, before, strict=True))  # keep-the-best: never worse


def test_advanced_tracks_the_ann_closer_than_light(digits_ann, digits, ann_logits):
    """SNN Calibration's claim on digits at T = 2 and 4 with the same (MSE) thresholds: the
    advanced pipeline (weights with Adam, then the potential) gives outputs closer to the
    ANN's than the light one (bias calibration); every site's loss on all samples after weight
    calibration is at most its loss before (the kept weights are the best checked, the start
    included), with one report entry per site, and some site's loss does drop.

    Measured mean squared logit error, advanced / light: 2.05 / 2.33 at T = 2 and 0.78 / 0.85
    at T = 4. Accuracy is not the measure here: on 360 test images the two differ by a few
    images either way (95.8 / 94.2 % at T = 2, 97.5 / 97.5 % at T = 4); the accuracy claim
    is measured on CIFAR-10 (experiments/results/cifar10_resnet20_calibration)."""
    for T in (2, 4):
        light, _ = _converted(digits_ann, digits, T, "mse", [BiasCorrection()])
        weights = WeightCalibration(samples=128, iterations=60, lr=1e-3, checks=3)
        advanced, _ = _converted(digits_ann, digits, T, "mse", [weights, PotentialCalibration()])
        error = {
            name: (_logits(net, digits, T) - ann_logits).pow(2).mean().item()
            for name, net in (("light", light), ("advanced", advanced))
        }
        assert error["advanced"] < error["light"], (T, error)
        before, after = weights.report["loss_before"], weights.report["loss_after"]
        assert len(before) == len(after) == len(advanced.sites)
        assert all(a <= b for a, b in zip(after, before, strict=True)), (before, after)
        assert after == weights.losses
        assert any(a < b for a, b in zip(after, before, strict=True)), (before, after)
