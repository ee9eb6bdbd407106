"""Conversion core: BN folding, site discovery, max pooling, time expansion, simulation."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from adacal.calibration.recipe import observed_max_thresholds
from adacal.errors import ConfigError
from adacal.models import resnet20, small_cnn, vgg16
from adacal.snn.convert import CONVERSION_STEPS, TimeExpand, convert, fold_batchnorm
from adacal.snn.neurons import IFNeuron
from adacal.snn.simulate import anytime_logits, chunks, simulate


def _randomise_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
    return model.eval()


_max_thresholds = observed_max_thresholds


def test_conversion_order_is_pinned():
    assert CONVERSION_STEPS == (
        "fold_batchnorm",
        "place_sites",
        "commute_stem_maxpool",
        "refuse_nonlinear",
        "insert_time_expansion",
    )


@pytest.mark.parametrize(
    "layer", [nn.GroupNorm(2, 8), nn.GELU(), nn.Sigmoid(), nn.LayerNorm([8, 8, 8])]
)
def test_nonlinear_op_after_a_neuron_is_refused_by_name(layer):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), layer,
        nn.ReLU(), nn.Flatten(), nn.Linear(512, 4),
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        convert(model.eval(), IFNeuron(), torch.randn(1, 3, 8, 8))
    assert err.value.key == "architecture"
    assert type(layer).__name__ in str(err.value) and "node '_3'" in str(err.value)


def test_nonlinear_op_before_the_first_neuron_is_analog_and_kept():
    """A GroupNorm on the image (the analog prefix) is computed once: exact, allowed."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Flatten(),
        nn.Linear(512, 4),
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    net = convert(model, IFNeuron(), x[:1])
    assert len(net.sites) == 1
    torch.testing.assert_close(net(x), model(x))


def test_bn_folding_preserves_outputs():
    torch.manual_seed(0)
    model = _randomise_bn(resnet20(10))
    x = torch.randn(4, 3, 32, 32)
    folded = fold_batchnorm(torch.fx.symbolic_trace(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), model(x), atol=1e-5)
    net = convert(model, IFNeuron(), x[:1])
    assert torch.allclose(net(x), model(x), atol=1e-5)  # relu mode = the ANN


@pytest.mark.parametrize(
    ("build", "sites", "size"),
    [
        (lambda: small_cnn(10, in_channels=1), 5, 32),
        (lambda: resnet20(10), 19, 32),
        (lambda: resnet20(10, width="wide"), 19, 32),
        (lambda: vgg16(10), 15, 32),
        (lambda: torchvision.models.resnet18(num_classes=10), 17, 64),
        (lambda: torchvision.models.resnet34(num_classes=10), 33, 64),
    ],
)
def test_every_architecture_converts_and_runs(build, sites, size):
    torch.manual_seed(0)
    model = _randomise_bn(build())
    channels = 1 if sites == 5 else 3
    x = torch.randn(2, channels, size, size)
    net = convert(model, IFNeuron(), x[:1])
    assert len(net.sites) == sites
    assert [s.index for s in net.sites] == list(range(sites))
    _max_thresholds(net, x)
    net.set_T(4)
    out = simulate(net, x, 4, chunk=3)
    assert out.shape == (4, 2, 10) and torch.isfinite(out).all()
    assert all(torch.cat(s.spike_counts).shape == (4, 2) for s in net.sites)


def test_stem_maxpool_moves_before_the_neuron_and_stays_exact():
    torch.manual_seed(0)
    model = _randomise_bn(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    net = convert(model, IFNeuron(), x[:1])
    code = net.net.code
    assert code.index("self.maxpool(") < code.index("self.site_0(")
    assert torch.allclose(net(x), model(x), atol=1e-4)
    # the analog stem runs once per batch: a single TimeExpand feeds the first site
    assert len(net.expanders) == 1 and isinstance(net.expanders[0], TimeExpand)


def test_maxpool_between_spiking_layers_is_refused():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 2),
    )
    with pytest.raises(ConfigError, match="max pooling") as info:
        convert(model, IFNeuron(), torch.randn(1, 3, 14, 14))
    assert info.value.key == "architecture"


def test_functional_relu_and_shared_module_calls_are_separate_sites():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            y = self.act(self.conv(x))
            y = torch.relu(self.conv(y)) + self.act(x).relu()
            return self.fc(y.mean((2, 3)))

    net = convert(Net(), IFNeuron(), torch.randn(1, 2, 4, 4))
    assert len(net.sites) == 4  # act twice, torch.relu, Tensor.relu


def test_large_T_spiking_resnet_matches_the_ann():
    torch.manual_seed(0)
    model = _randomise_bn(resnet20(10))
    x = torch.randn(4, 3, 32, 32)
    net = convert(model, IFNeuron(), x[:1])
    _max_thresholds(net, x)
    T = 512
    net.set_T(T)
    logits = anytime_logits(simulate(net, x, T, chunk=64))[-1]
    ann = model(x)
    assert (logits - ann).abs().max() < 0.05 * ann.abs().max()
    assert torch.equal(logits.argmax(1), ann.argmax(1))


def test_chunking_does_not_change_the_simulation():
    torch.manual_seed(0)
    model = _randomise_bn(small_cnn(10, in_channels=1))
    x = torch.randn(3, 1, 32, 32)
    net = convert(model, IFNeuron(), x[:1])
    _max_thresholds(net, x)
    net.set_T(10)
    a = simulate(net, x, 10, chunk=None)
    b = simulate(net, x, 10, chunk=3)
    assert torch.allclose(a, b, atol=1e-5)
    assert list(chunks(10, 4)) == [4, 4, 2] and list(chunks(5, None)) == [5]
