"""SNN Calibration's light corrections (Li et al., ICML 2021), site by site in network order.

For site l, e = SNN rate − ANN activation on the calibration images, where the
SNN rate is simulated with every earlier site already corrected. With ``reuse_prefix``
(default) the network is simulated once, site after site (:func:`rates_in_order`); without,
up to site l again for every l (:func:`site_rates`; same numbers, the reference in tests).

- Bias calibration (light pipeline): per channel, bias_l ← bias_l − mean_{n,h,w}(e).
- Potential calibration (advanced pipeline): per neuron, v_l(0) ← v_l(0) − T·mean_n(e).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from adacal.calibration.data import CalibrationData
from adacal.snn.convert import SpikingNetwork
from adacal.snn.graph import rates_in_order
from adacal.snn.simulate import site_rates


def channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over every dim but the channel dim 1: [N, C, ...] -> [C]."""
    return t.transpose(0, 1).reshape(t.shape[1], -1).mean(1)


def _rates(
    net: SpikingNetwork, images: torch.Tensor, data: CalibrationData, reuse: bool, what: str
) -> Iterator[tuple[int, torch.Tensor]]:
    """(k, rate_k) in site order, each simulated with the earlier sites corrected."""
    if reuse:
        rates = rates_in_order(net, images, data.T, data.batch_size)
        yield from data.track(rates, what, total=len(net.sites))
        return
    for k in data.track(range(len(net.sites)), what):
        yield k, site_rates(net, images, data.T, [k], data.chunk, data.batch_size)[k]


@dataclass
class BiasCorrection:
    """Per-channel bias calibration; ``samples`` calibration images (None: all)."""

    samples: int | None = None
    reuse_prefix: bool = True

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> None:
        images, ann = data.subset(self.samples)
        for k, rate in _rates(net, images, data, self.reuse_prefix, "bias calibration"):
            site = net.sites[k]
            site.bias = site.bias - channel_mean(rate - ann[k])


@dataclass
class PotentialCalibration:
    """Per-neuron initial-potential calibration; ``samples`` calibration images (None: all)."""

    samples: int | None = None
    reuse_prefix: bool = True

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> None:
        images, ann = data.subset(self.samples)
        for k, rate in _rates(net, images, data, self.reuse_prefix, "potential calibration"):
            site = net.sites[k]
            site.v_delta = site.v_delta + data.T * (ann[k] - rate).mean(0)
