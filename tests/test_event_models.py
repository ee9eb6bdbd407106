"""Event-frame ANNs: shapes, average pooling only, torchvision's layout at width 1, and the
existing converter: one site per ReLU call, relu mode equal to the ANN (BN folded)."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
import torchvision
from torch import nn

from adacal.errors import ConfigError
from adacal.models import event_resnet, event_vgg
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron


def relu_calls(model: nn.Module) -> int:
    """ReLU call sites in the traced graph (a module called twice counts twice)."""
    gm = fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    return sum(
        (n.op == "call_module" and isinstance(modules[n.target], nn.ReLU))
        or (n.op == "call_function" and n.target in (F.relu, torch.relu))
        for n in gm.graph.nodes
    )


def randomise_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
    return model.eval()


# (builder, kwargs, input [B, 2·bins, S, S], ReLU call sites)
CASES = {
    "event_resnet18_w025": (event_resnet, {"depth": 18, "width": 0.25}, (2, 18, 48, 48), 17),
    "event_resnet34_w025": (event_resnet, {"depth": 34, "width": 0.25}, (2, 8, 32, 32), 33),
    "event_resnet18": (event_resnet, {"depth": 18}, (1, 8, 32, 32), 17),
    "vgg11s": (event_vgg, {"depth": 11, "width": 0.25}, (2, 8, 32, 32), 10),
    "vgg11_64px": (event_vgg, {"depth": 11, "width": 0.25, "image_size": 64}, (2, 18, 64, 64), 10),
    "vgg16_w025": (event_vgg, {"depth": 16, "width": 0.25}, (2, 18, 32, 32), 15),
}


@pytest.mark.parametrize("name", list(CASES))
def test_event_models_convert_one_site_per_relu_call(name):
    build, kwargs, shape, sites = CASES[name]
    torch.manual_seed(0)
    model = randomise_bn(build(num_classes=7, in_channels=shape[1], **kwargs))
    assert not any(isinstance(m, nn.MaxPool2d | nn.AdaptiveMaxPool2d) for m in model.modules())
    x = torch.randn(shape)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (shape[0], 7)
        assert relu_calls(model) == sites
        net = convert(model, IFNeuron(), x)
        assert len(net.sites) == sites
        torch.testing.assert_close(net(x), y, atol=1e-4, rtol=1e-4)  # relu mode = the ANN


def test_event_resnet_at_full_width_is_torchvisions_layout():
    ours = event_resnet(18, num_classes=10, in_channels=18)
    theirs = torchvision.models.resnet18(num_classes=10)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    reference = {k: v.shape for k, v in theirs.state_dict().items()}
    assert shapes == {**reference, "reduce.weight": (3, 18, 3, 3), "reduce.bias": (3,)}
    assert isinstance(ours.maxpool, nn.AvgPool2d)  # the average-pool stem
    assert ours.reduce.kernel_size == (3, 3) and ours.conv1.in_channels == 3


def test_width_scales_channels_and_parameters():
    full, quarter = event_vgg(11, 10, 8), event_vgg(11, 10, 8, width=0.25)
    convs = [m.out_channels for m in quarter.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [16, 32, 64, 64, 128, 128, 128, 128]
    assert quarter.classifier[1].out_features == 1024
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(quarter) < n(full) / 10
    small = event_resnet(18, 10, 8, width=0.25)
    assert [small.layer1[0].conv1.out_channels, small.fc.in_features] == [16, 128]


def test_bad_depth_or_width_names_the_key():
    for build, kwargs in ((event_resnet, {"depth": 50}), (event_vgg, {"depth": 13})):
        with pytest.raises(ConfigError) as err:
            build(num_classes=10, in_channels=8, **kwargs)
        assert err.value.key == "architecture.depth"
    with pytest.raises(ConfigError) as err:
        event_vgg(11, 10, 8, width=0)
    assert err.value.key == "architecture.width"
