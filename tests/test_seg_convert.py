"""Segmentation networks (smp DeepLabV3, DeepLabV3+, FPN, Unet) through conversion, threshold
fitting and simulation, and the mIoU scorer they are judged by. CPU only, small images."""

from __future__ import annotations

import functools

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torchmetrics.classification import MulticlassJaccardIndex

from _hermetic import one_thread
from adacal.calibration import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate, fit_thresholds
from adacal.errors import ConfigError
from adacal.lightning.scoring import MeanIoU, iou_from_confusion, miou_from_confusion
from adacal.models.segmentation import segmentation_model
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.simulate import anytime_logits, simulate

NUM_CLASSES = 5
SIZE = 64
ARCHS = {
    "deeplabv3": {"encoder_depth": 4, "decoder_channels": 32},
    "deeplabv3plus": {"encoder_depth": 4, "decoder_channels": 32},
    # smp's FPN takes decoder_pyramid_channels, so segmentation_model's decoder_channels is
    # swallowed by its **kwargs; and with encoder_depth < 5 its output is 2^(5 - depth) times
    # the input size. The default depth 5 keeps [B, K, H, W].
    "fpn": {},
    "unet": {"encoder_depth": 4, "decoder_channels": (64, 32, 16, 16)},
}
_RELU_CALLS = (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_)


class _CountReluCalls(TorchFunctionMode):
    """Counts every ReLU call, module or functional (``nn.ReLU`` runs ``F.relu`` once)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELU_CALLS:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _relu_module_calls(model: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Calls of ``nn.ReLU`` modules in one forward (a module called twice counts twice)."""
    calls = [0]

    def hook(*_):
        calls[0] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return calls[0], out


def _small_atrous_rates(model: nn.Module, rates=(1, 2, 3)) -> None:
    """smp's ASPP rates (12, 24, 36) exceed a 64x64 image's 4x4 or 8x8 feature map, where only
    the centre tap would see data; small rates make the dilated taps count."""
    convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1]
    assert len(convs) in (0, 3)
    for conv, rate in zip(convs, rates, strict=False):
        conv.dilation, conv.padding = (rate, rate), (rate, rate)


@functools.cache
def _model(arch: str) -> nn.Module:
    """Random-init ``arch`` (resnet18) with BN statistics of real activations, eval mode.

    Do not modify the result (shared between tests); ``convert`` works on a copy.
    """
    torch.manual_seed(0)
    model = segmentation_model(arch, "resnet18", NUM_CLASSES, **ARCHS[arch])
    _small_atrous_rates(model)
    return _warm_batch_norm(model)


def _warm_batch_norm(model: nn.Module) -> nn.Module:
    """BN running statistics of four train-mode passes on random images; eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None  # cumulative averages: the statistics of these passes
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, SIZE, SIZE))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def _image(seed: int = 1, n: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# --- 1. sites and the ReLU network ----------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_one_site_per_relu_call_and_relu_mode_is_the_ann(arch):
    model = _model(arch)
    x = _image(n=2)
    module_calls, ann = _relu_module_calls(model, x)
    counter = _CountReluCalls()
    with counter, torch.no_grad():
        model(x)
    assert counter.calls == module_calls > 15  # smp uses nn.ReLU modules only
    net = convert(model, IFNeuron(), x[:1])
    assert len(net.sites) == module_calls
    assert [s.index for s in net.sites] == list(range(module_calls))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    net.set_mode("relu")
    with torch.no_grad():
        out = net(x)
    assert out.shape == ann.shape == (2, NUM_CLASSES, SIZE, SIZE)
    # measured max |diff| 3.8e-6 .. 3.6e-5 (fpn, whose outputs reach ~10)
    assert (out - ann).abs().max() < 1e-4


# --- 2. spikes through ASPP, upsampling and concatenation ------------------------------------

# Max thresholds per channel fitted on the simulated image itself (nothing saturates), IF
# neurons, T = 512, one 64x64 image. Measured (relative L2 error at T = 8, 128, 512; per-pixel
# argmax agreement at 512): deeplabv3 0.797, 0.267, 0.081; 0.950. deeplabv3plus 0.575, 0.113,
# 0.033; 0.981. fpn 0.481, 0.160, 0.051; 0.976. unet 1.046, 0.230, 0.067; 0.959.
# (Random-init logits have small argmax margins, hence agreement below 1.)
_RATE_BOUNDS = {  # arch: (max relative error at T = 512, min argmax agreement at T = 512)
    "deeplabv3": (0.12, 0.92),
    "deeplabv3plus": (0.06, 0.95),
    "fpn": (0.08, 0.95),
    "unet": (0.10, 0.93),
}


@pytest.mark.parametrize("arch", ARCHS)
def test_rate_coded_output_converges_to_the_ann(arch):
    model = _model(arch)
    x = _image()
    with torch.no_grad():
        ann = model(x)
    T = 512
    net = convert(model, IFNeuron(), x)
    data = CalibrationData.from_network(net, x, T, progress=False)
    net.set_T(T)
    fit_thresholds(net, data, ThresholdSpec(method="max", granularity="channel"))
    # IF with v(0) = θ/2: every prefix of the run is an exact t-step run
    rates = anytime_logits(simulate(net, x, T, chunk=64))
    assert rates.shape == (T, *ann.shape)

    def rel(t: int) -> float:
        return ((rates[t - 1] - ann).norm() / ann.norm()).item()

    max_rel, min_agree = _RATE_BOUNDS[arch]
    agree = (rates[-1].argmax(1) == ann.argmax(1)).float().mean().item()
    assert rel(T) < max_rel, rel(T)
    assert agree > min_agree, agree
    # convergence, not luck: measured rel(512)/rel(8) 0.06 .. 0.11, rel(512)/rel(128) 0.29 .. 0.32
    assert rel(T) < 0.25 * rel(8), (rel(8), rel(T))
    assert rel(T) < 0.5 * rel(128), (rel(128), rel(T))


# --- 3. max pooling --------------------------------------------------------------------------


def test_unet_stem_max_pool_is_refused():
    model = segmentation_model(
        "unet",
        num_classes=NUM_CLASSES,
        encoder_depth=4,
        decoder_channels=(64, 32, 16, 16),
        stem_pool="max",
    )
    assert isinstance(model.encoder.maxpool, nn.MaxPool2d)
    with pytest.raises(ConfigError, match="max pooling") as info:
        convert(model, IFNeuron(), _image())  # the stem ReLU also feeds a skip connection
    assert info.value.key == "architecture"


def test_deeplabv3plus_stem_max_pool_moves_before_its_neuron():
    torch.manual_seed(0)
    model = segmentation_model(
        "deeplabv3plus",
        num_classes=NUM_CLASSES,
        encoder_depth=4,
        decoder_channels=32,
        stem_pool="max",
    )
    model = _warm_batch_norm(model)
    assert isinstance(model.encoder.maxpool, nn.MaxPool2d)
    x = _image(n=2)
    net = convert(model, IFNeuron(), x[:1])
    code = net.net.code
    assert code.index("maxpool(") < code.index("self.site_0(")
    assert net.sites[0].neuron_shape == (64, SIZE // 4, SIZE // 4)  # after the stride-2 pool
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max() < 1e-4  # measured 3.9e-6 (outputs up to 1.6)


@pytest.mark.parametrize("arch", ARCHS)
def test_avg_stem_pool_leaves_no_max_pool(arch):
    model = segmentation_model(arch, num_classes=NUM_CLASSES, **ARCHS[arch])
    assert not any(isinstance(m, nn.MaxPool2d | nn.AdaptiveMaxPool2d) for m in model.modules())
    pool = model.encoder.maxpool
    assert isinstance(pool, nn.AvgPool2d)
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)


# --- 4. pruned encoder, GroupNorm ------------------------------------------------------------


def _smp(arch: str, depth: int, decoder_channels) -> nn.Module:
    cls = {"deeplabv3": smp.DeepLabV3, "deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet}
    return cls[arch](
        encoder_name="resnet18",
        encoder_weights=None,
        classes=NUM_CLASSES,
        encoder_depth=depth,
        decoder_channels=decoder_channels,
    )


@pytest.mark.parametrize("arch", ["deeplabv3", "deeplabv3plus", "unet"])
@pytest.mark.parametrize("depth", [3, 4])
def test_encoder_depth_deletes_the_unused_stages(arch, depth):
    channels = (64, 32, 16, 16)[:depth] if arch == "unet" else 32
    torch.manual_seed(0)
    reference = _smp(arch, depth, channels).eval()  # smp keeps every stage
    model = segmentation_model(
        arch,
        num_classes=NUM_CLASSES,
        encoder_depth=depth,
        decoder_channels=channels,
        stem_pool="max",
    ).eval()
    dropped = [f"layer{i}" for i in range(depth, 5)]
    unused = sum(
        p.numel() for n, p in reference.encoder.named_parameters() if n.split(".")[0] in dropped
    )
    assert unused > 0
    assert all(not hasattr(model.encoder, name) for name in dropped)
    keys = model.state_dict().keys()
    assert not any(part in dropped for k in keys for part in k.split("."))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == sum(p.numel() for p in reference.parameters()) - unused
    # the deleted stages never ran: smp's weights minus them give the same outputs
    state = {
        k: v
        for k, v in reference.state_dict().items()
        if not any(d in k.split(".") for d in dropped)
    }
    model.load_state_dict(state, strict=True)
    x = _image(n=2)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_fpn_group_norm_is_replaced_by_batch_norm_and_folds():
    reference = smp.FPN(encoder_name="resnet18", encoder_weights=None, classes=NUM_CLASSES)
    groups = [m for m in reference.modules() if isinstance(m, nn.GroupNorm)]
    assert groups  # smp's FPN segmentation blocks use GroupNorm
    model = segmentation_model("fpn", num_classes=NUM_CLASSES)
    assert not any(isinstance(m, nn.GroupNorm) for m in model.modules())

    def bn_widths(m):
        return sorted(b.num_features for b in m.modules() if isinstance(b, nn.BatchNorm2d))

    assert bn_widths(model) == sorted(bn_widths(reference) + [g.num_channels for g in groups])
    net = convert(_model("fpn"), IFNeuron(), _image())
    assert not any(isinstance(m, nn.BatchNorm2d | nn.GroupNorm) for m in net.modules())


# --- 5. a trained network on synthetic shapes -------------------------------------------------


def _shapes(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n RGB images [n, 3, size, size] with 1-3 filled shapes on a noisy background and labels
    [n, size, size]: 0 background, 1 rectangle (reddish), 2 disc (bluish); later shapes cover
    earlier ones."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    x = 0.3 * rand(n, 3, 1, 1) + 0.15 * torch.randn(n, 3, size, size, generator=gen)
    y = torch.zeros(n, size, size, dtype=torch.long)
    colours = {1: torch.tensor([0.9, 0.3, 0.2]), 2: torch.tensor([0.2, 0.4, 0.9])}
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            cls = int(torch.randint(1, 3, (1,), generator=gen))
            cy, cx = (rand(2) * 0.8 + 0.1) * size
            half = (rand(1) * 0.15 + 0.1) * size
            if cls == 1:
                width = (rand(1) * 0.15 + 0.1) * size
                mask = ((yy - cy).abs() < half) & ((xx - cx).abs() < width)
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < half**2
            colour = colours[cls] + 0.25 * (rand(3) - 0.5)
            pixels = int(mask.sum())
            x[i][:, mask] = colour[:, None] + 0.15 * torch.randn(3, pixels, generator=gen)
            y[i][mask] = cls
    return (x - 0.4) / 0.35, y


def test_trained_deeplabv3plus_snn_matches_the_ann_miou():
    size, classes = 32, 3  # 32x32 keeps training + simulation near 15 s on one CPU thread
    x_train, y_train = _shapes(320, size, seed=0)
    x_test, y_test = _shapes(32, size, seed=1)
    with one_thread(seed=0):  # the same network for every thread count
        model = segmentation_model(
            "deeplabv3plus", num_classes=classes, encoder_depth=3, decoder_channels=32
        )
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        model.train()
        step = 0
        while step < 150:
            for idx in torch.randperm(len(y_train), generator=gen).split(16):
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step == 150:
                    break
    model.eval()

    scorer = MeanIoU(classes)

    def miou(logits: torch.Tensor) -> float:
        confusion = scorer.counts(logits.unsqueeze(0), y_test)["confusion"][0]
        return miou_from_confusion(confusion)

    with torch.no_grad():
        ann = model(x_test)
    ann_miou = miou(ann)
    assert ann_miou > 0.8, ann_miou  # measured 0.895, the same on 1 and 2 threads

    T = 128
    net = convert(model, IFNeuron(), x_test[:1])
    data = CalibrationData.from_network(net, x_train[:64], T, progress=False)
    calibrate(net, data, ThresholdSpec(method="max"))
    rates = anytime_logits(simulate(net, x_test, T, chunk=32))
    snn_miou = miou(rates[-1])
    # measured SNN mIoU 0.8801 at T = 16, 0.8938 at 128 (gap 0.0010), on 1 and 2 threads
    assert abs(snn_miou - ann_miou) <= 0.01, (ann_miou, snn_miou)
    assert abs(snn_miou - ann_miou) < abs(miou(rates[15]) - ann_miou)
    agree = (rates[-1].argmax(1) == ann.argmax(1)).float().mean().item()
    assert agree > 0.99, agree  # measured 0.9991


# --- 6. the mIoU arithmetic ------------------------------------------------------------------


def test_iou_matches_torchmetrics_with_ignored_pixels():
    gen = torch.Generator().manual_seed(0)
    K = 6  # labels and predictions use 0..4: class 5 is absent from both
    y = torch.randint(0, 5, (4, 16, 16), generator=gen)
    y[torch.rand(y.shape, generator=gen) < 0.2] = 255
    logits = torch.randn(4, K, 16, 16, generator=gen)
    logits[:, 5] = -1e9
    logits[:, 1] += 0.5  # uneven classes
    pred = logits.argmax(1)
    assert (y == 255).any()
    confusion = MeanIoU(K).counts(logits.unsqueeze(0), y)["confusion"][0]
    assert int(confusion.sum()) == int((y != 255).sum())
    reference = MulticlassJaccardIndex(K, ignore_index=255, average="macro")(pred, y)
    assert miou_from_confusion(confusion) == pytest.approx(reference.item(), abs=1e-6)
    per_class = MulticlassJaccardIndex(K, ignore_index=255, average="none")(pred, y)
    ious = iou_from_confusion(confusion)
    assert torch.isnan(ious[5]) and per_class[5] == 0  # torchmetrics: 0, left out of its mean
    assert torch.allclose(ious[:5].float(), per_class[:5], atol=1e-6)


def test_iou_by_hand():
    # rows: label, columns: prediction; class 2 absent from both
    confusion = torch.tensor([[4, 1, 0], [2, 3, 0], [0, 0, 0]])
    ious = iou_from_confusion(confusion)
    assert ious[0].item() == pytest.approx(4 / 7)  # 4 / (5 + 6 - 4)
    assert ious[1].item() == pytest.approx(3 / 6)  # 3 / (5 + 4 - 3)
    assert torch.isnan(ious[2])
    assert miou_from_confusion(confusion) == pytest.approx((4 / 7 + 1 / 2) / 2)
    # a class only predicted counts, with IoU 0
    confusion = torch.tensor([[4, 1, 1], [2, 3, 0], [0, 0, 0]])
    assert iou_from_confusion(confusion).tolist() == pytest.approx([4 / 8, 3 / 6, 0.0])
    assert miou_from_confusion(confusion) == pytest.approx(1 / 3)
    scores = MeanIoU(3).scores({"confusion": confusion.unsqueeze(0)}, [7])
    assert scores["miou_t7"] == pytest.approx(1 / 3)
    assert scores["pixel_acc_t7"] == pytest.approx(7 / 11)


def test_fpn_takes_one_decoder_width_and_refuses_a_short_encoder():
    """smp's FPN names its widths decoder_pyramid/segmentation_channels and returns a wrong
    output size below encoder depth 5: the builder maps the one width and refuses the depth."""
    narrow = segmentation_model("fpn", num_classes=5, decoder_channels=64)
    wide = segmentation_model("fpn", num_classes=5)
    assert narrow.decoder.p5.out_channels == 64
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())
    with pytest.raises(ConfigError) as err:
        segmentation_model("fpn", num_classes=5, encoder_depth=4)
    assert err.value.key == "architecture.encoder_depth"
