"""Plain ReLU ANNs (no spiking code). Every builder: ``fn(num_classes, in_channels=..., **kw)``."""

from __future__ import annotations

from adacal.models.event_nets import EventResNet, event_resnet, event_vgg
from adacal.models.resnet_cifar import CifarResNet, resnet20
from adacal.models.small_cnn import small_cnn
from adacal.models.torchvision_models import resnet, resnet18, resnet34
from adacal.models.vgg import VGG, vgg16

__all__ = [
    "VGG",
    "CifarResNet",
    "EventResNet",
    "event_resnet",
    "event_vgg",
    "resnet",
    "resnet18",
    "resnet20",
    "resnet34",
    "small_cnn",
    "vgg16",
]
