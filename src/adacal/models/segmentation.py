"""Segmentation networks from segmentation-models-pytorch, made convertible.

``segmentation_model(arch, encoder, num_classes, ...)`` returns the plain smp model
``[B, C, H, W] -> [B, K, H, W]`` logits with three changes, none of them per-architecture
spiking code:

* ``stem_pool="avg"`` replaces the ResNet stem's 3×3/2 max pooling by average pooling with the
  same geometry (max pooling is not rate-preserving; with ``"max"`` the converter still moves a
  stem max pool before its neuron when that is exact, and refuses it otherwise, e.g. in Unet
  where the stem's ReLU also feeds a skip connection).
* GroupNorm (FPN's segmentation blocks) is replaced by BatchNorm: GroupNorm normalises each
  sample by statistics of its current input, which a spiking layer cannot do; BatchNorm folds.
* An ``encoder_depth`` below 5 deletes the encoder stages the model never calls (smp keeps
  them), so the state dict holds only what runs.

smp checks that H and W divide the encoder's output stride with Python control flow, which
torch.fx cannot trace; the check is switched off on the instance and the same rule is
enforced on the configured sizes instead (:func:`check_input_size`, keys ``dataset.crop_size``
and ``dataset.eval_size``).
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
from torch import nn

from adacal.errors import ConfigError

ARCHS = {
    "deeplabv3": smp.DeepLabV3,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "fpn": smp.FPN,
    "unet": smp.Unet,
}
ENCODERS = ("resnet18", "resnet34", "resnet50")
STEM_POOLS = ("avg", "max")


def segmentation_model(
    arch: str,
    encoder: str = "resnet18",
    num_classes: int = 21,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    encoder_depth: int = 5,
    encoder_output_stride: int | None = None,
    decoder_channels: int | Sequence[int] | None = None,
    stem_pool: str = "avg",
    name: str | None = None,
) -> nn.Module:
    """Build ``arch`` (deeplabv3, deeplabv3plus, fpn, unet) on a ResNet ``encoder``.

    ``encoder_weights`` null (default, offline) or "imagenet" (downloaded by smp through the
    Hugging Face hub, or read from its cache). ``decoder_channels`` null keeps smp's default.
    ``name`` (config label) is ignored. Returns the smp model (an ``nn.Module``) with
    ``adacal_divisor``: H and W of every input must be multiples of it.
    """
    if arch not in ARCHS:
        raise ConfigError("architecture.arch", f"'{arch}' is not one of {', '.join(ARCHS)}")
    if encoder not in ENCODERS:
        raise ConfigError(
            "architecture.encoder", f"'{encoder}' is not one of {', '.join(ENCODERS)}"
        )
    if stem_pool not in STEM_POOLS:
        raise ConfigError(
            "architecture.stem_pool", f"'{stem_pool}' is not one of {', '.join(STEM_POOLS)}"
        )
    if encoder_weights not in (None, "imagenet"):
        raise ConfigError(
            "architecture.encoder_weights", f"'{encoder_weights}' must be null or imagenet"
        )
    kwargs: dict = {"encoder_depth": int(encoder_depth)}
    if encoder_output_stride is not None:
        kwargs["encoder_output_stride"] = int(encoder_output_stride)
    if arch == "fpn" and int(encoder_depth) != 5:
        raise ConfigError(
            "architecture.encoder_depth",
            f"smp's FPN returns the wrong output size below depth 5 (got {encoder_depth}); use 5",
        )
    if decoder_channels is not None:
        width = (
            int(decoder_channels)
            if isinstance(decoder_channels, int)
            else [int(c) for c in decoder_channels]
        )
        if arch == "fpn":  # smp's FPN names its two widths differently
            if not isinstance(width, int):
                raise ConfigError("architecture.decoder_channels", "FPN takes one width (int)")
            kwargs["decoder_pyramid_channels"] = width
            kwargs["decoder_segmentation_channels"] = max(width // 2, 1)
        elif arch == "unet" and isinstance(width, int):  # one width per stage, halving to it
            depth = int(encoder_depth)
            kwargs["decoder_channels"] = [width * 2 ** (depth - 1 - i) for i in range(depth)]
        else:
            kwargs["decoder_channels"] = width
    try:
        model = ARCHS[arch](
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=int(in_channels),
            classes=int(num_classes),
            **kwargs,
        )
    except (OSError, RuntimeError) as exc:  # hub download refused or unreachable
        if encoder_weights is None:
            raise
        raise ConfigError(
            "architecture.encoder_weights",
            f"cannot load the ImageNet weights of {encoder} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); without network put them in the Hugging Face cache "
            "($HF_HOME) or set architecture.encoder_weights=null",
        ) from exc
    except (ValueError, AssertionError, TypeError) as exc:
        raise ConfigError("architecture", f"smp cannot build {arch} with {kwargs}: {exc}") from exc
    _prune_encoder(model.encoder, int(encoder_depth))
    if stem_pool == "avg":
        model.encoder.maxpool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
    _replace_group_norm(model)
    model.adacal_divisor = int(model.encoder.output_stride)
    model.requires_divisible_input_shape = False  # fx-traceable; sizes checked on the config
    return model


def _prune_encoder(encoder: nn.Module, depth: int) -> None:
    """Delete the ResNet stages past ``depth`` (never called by the encoder's forward)."""
    for stage in range(max(depth, 1), 5):  # depth 4 -> layer4, depth 3 -> layer3, layer4 ...
        name = f"layer{stage}"
        if hasattr(encoder, name):
            delattr(encoder, name)


def _replace_group_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, nn.BatchNorm2d(child.num_channels))
        else:
            _replace_group_norm(child)


def check_input_size(model: nn.Module, sizes: dict[str, tuple[int, int] | None]) -> None:
    """Refuse input sizes the model cannot take: ``sizes`` maps config keys to (H, W)."""
    divisor = getattr(model, "adacal_divisor", None)
    if not divisor:
        return
    for key, size in sizes.items():
        if size is None:
            continue
        h, w = size
        if h % divisor or w % divisor:
            fit = [max(divisor, round(v / divisor) * divisor) for v in (h, w)]
            raise ConfigError(
                key,
                f"{h}x{w} is not a multiple of the encoder's output stride {divisor}; "
                f"use e.g. {key}=[{fit[0]},{fit[1]}]",
            )
