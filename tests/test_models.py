"""Models: shapes, parameter counts, ReLU call sites (as the converter sees them), tracing."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from adacal.errors import ConfigError
from adacal.models import resnet, resnet20, small_cnn, vgg16
from adacal.models import torchvision_models as tvm

CONF = Path(__file__).resolve().parents[1] / "conf"


def relu_sites(model: nn.Module) -> int:
    """Number of ReLU call sites in the traced graph (a module called twice counts twice)."""
    gm = fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    n = 0
    for node in gm.graph.nodes:
        is_module = node.op == "call_module" and isinstance(modules[node.target], nn.ReLU)
        is_function = node.op == "call_function" and node.target in (F.relu, torch.relu)
        n += int(is_module or is_function)
    return n


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (builder, kwargs, input shape, ReLU sites, output classes)
CASES = {
    "vgg16": (vgg16, {"num_classes": 10}, (2, 3, 32, 32), 15, 10),
    "resnet20": (resnet20, {"num_classes": 10}, (2, 3, 32, 32), 19, 10),
    "resnet20_wide": (resnet20, {"num_classes": 100, "width": "wide"}, (2, 3, 32, 32), 19, 100),
    "small_cnn": (small_cnn, {"num_classes": 10}, (2, 1, 32, 32), 5, 10),
    "resnet18": (resnet, {"depth": 18, "num_classes": 10}, (1, 3, 64, 64), 17, 10),
    "resnet34": (resnet, {"depth": 34}, (1, 3, 64, 64), 33, 1000),
}


@pytest.mark.parametrize("name", list(CASES))
def test_shape_sites_and_trace(name: str) -> None:
    build, kwargs, shape, sites, classes = CASES[name]
    torch.manual_seed(0)
    model = build(**kwargs).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        out = model(x)
        traced = fx.symbolic_trace(model)(x)
    assert out.shape == (shape[0], classes)
    assert torch.allclose(out, traced)
    assert relu_sites(model) == sites


@pytest.mark.parametrize("name", ["vgg16", "resnet20", "resnet20_wide", "small_cnn"])
def test_own_models_avgpool_only_and_bn_after_every_conv(name: str) -> None:
    build, kwargs, *_ = CASES[name]
    model = build(**kwargs)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())
    gm = fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d):
            users = list(node.users)
            assert len(users) == 1 and isinstance(modules[users[0].target], nn.BatchNorm2d)


def test_parameter_counts() -> None:
    assert 0.26e6 <= n_params(resnet20(10)) <= 0.28e6  # He et al.: 0.27 M
    assert 4.2e6 <= n_params(resnet20(10, width="wide")) <= 4.4e6
    assert 33e6 <= n_params(vgg16(10)) <= 34e6
    assert n_params(resnet(18)) == 11_689_512  # torchvision's resnet18
    assert n_params(resnet(34)) == 21_797_672


def test_thin_resnet20_shortcuts_are_parameter_free() -> None:
    model = resnet20(10)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())
    wide = resnet20(10, width="wide")
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in wide.modules()) == 2


def test_in_channels() -> None:
    assert vgg16(10, in_channels=1)(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    assert resnet20(10, in_channels=1)(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    assert resnet(18, 5, in_channels=1)(torch.randn(1, 1, 64, 64)).shape == (1, 5)


def test_bad_options_raise_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        resnet20(10, width="medium")
    assert err.value.key == "architecture.width"
    with pytest.raises(ConfigError) as err:
        resnet(50)
    assert err.value.key == "architecture.depth"


def test_pretrained_without_network_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**_: object) -> nn.Module:
        raise urllib.error.URLError("no network")

    weights = tvm._BUILDERS[18][1]
    monkeypatch.setitem(tvm._BUILDERS, 18, (offline, weights))
    with pytest.raises(ConfigError) as err:
        resnet(18, pretrained=True)
    assert err.value.key == "architecture.pretrained"
    assert "architecture.pretrained=false" in str(err.value)


def architecture_option(name: str):
    """conf/architecture/<name>.yaml as Hydra composes it: its defaults list merged in (the smp
    options share conf/architecture/_base/smp.yaml), interpolations left unresolved."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"architecture={name}"])
    return OmegaConf.to_container(cfg.architecture, resolve=False)


@pytest.mark.parametrize(
    "path", sorted((CONF / "architecture").glob("*.yaml")), ids=lambda p: p.stem
)
def test_architecture_configs_build(path: Path) -> None:
    size = 64 if path.stem in ("resnet18", "resnet34") else 32
    channels = 1 if path.stem == "small_cnn" else 3
    dataset = {"num_classes": 10, "in_channels": channels, "image_size": size}
    cfg = OmegaConf.create({"dataset": dataset, "architecture": architecture_option(path.stem)})
    assert cfg.architecture.name == path.stem
    model = instantiate(cfg.architecture)
    x = torch.randn(1, dataset["in_channels"], size, size)
    dense = "arch" in cfg.architecture  # segmentation-models-pytorch: per-pixel logits
    with torch.no_grad():
        assert model.eval()(x).shape == ((1, 10, size, size) if dense else (1, 10))


def test_vgg16_initial_logits_are_small():
    """Fan-out Kaiming on the classifier gave logits of std ~1e2 and NaN at lr 0.1 (measured)."""
    torch.manual_seed(0)
    model = vgg16(10).train()
    logits = model(torch.randn(16, 3, 32, 32))
    assert logits.std().item() < 1.0
