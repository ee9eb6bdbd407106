"""SNN Calibration's light corrections (Li et al., ICML 2021), site by site in network order.

For site l, e = SNN rate − ANN activation on the calibration images, where the
SNN rate is simulated with every earlier site already corrected.

- Bias calibration (light pipeline): per channel, bias_l ← bias_l − mean_{n,h,w}(e).
- Potential calibration (advanced pipeline): per neuron, v_l(0) ← v_l(0) − T·mean_n(e).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adacal.calibration.data import CalibrationData, site_rates
from adacal.snn.convert import SpikingNetwork


def channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over every dim but the channel dim 1: [N, C, ...] -> [C]."""
    return t.transpose(0, 1).reshape(t.shape[1], -1).mean(1)


@dataclass
class BiasCorrection:
    """Per-channel bias calibration; ``samples`` calibration images (None: all)."""

    samples: int | None = None

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> None:
        images, ann = data.subset(self.samples)
        for k in data.track(range(len(net.sites)), "bias calibration"):
            rate = site_rates(net, images, data.T, [k], data.chunk, data.batch_size)[k]
            site = net.sites[k]
            err = channel_mean(rate - ann[k])
            site.bias = site.bias - err


@dataclass
class PotentialCalibration:
    """Per-neuron initial-potential calibration; ``samples`` calibration images (None: all)."""

    samples: int | None = None

    def __call__(self, net: SpikingNetwork, data: CalibrationData) -> None:
        images, ann = data.subset(self.samples)
        for k in data.track(range(len(net.sites)), "potential calibration"):
            rate = site_rates(net, images, data.T, [k], data.chunk, data.batch_size)[k]
            site = net.sites[k]
            site.v_delta = site.v_delta + data.T * (ann[k] - rate).mean(0)
