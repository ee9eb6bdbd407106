"""What every calibration step sees: the calibration images, T, and the ANN's reference activations.

The ANN activations of all sites are recorded once, before any step changes the network.
The SNN rates a step corrects from come from the simulation module:
:func:`adacal.snn.simulate.site_rates` (the network up to the sites asked for) and
:func:`adacal.snn.graph.rates_in_order` (site after site, the prefix simulated once).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from rich.progress import track
from torch import Tensor

from adacal.snn.convert import SpikingNetwork
from adacal.snn.simulate import preactivations


def record_preactivations(net: SpikingNetwork, images: Tensor, batch_size: int) -> list[Tensor]:
    """Pre-activations z of every site on ``images`` [N, C, H, W] (ANN mode), one tensor
    [N, C, ...] per site in site order (:func:`adacal.snn.simulate.preactivations`)."""
    return preactivations(net, images, batch_size)[0]


@dataclass
class CalibrationData:
    """Inputs shared by the calibration steps of one conversion.

    Attributes:
        images: calibration images [N, C, H, W] (test-time transform).
        T: timesteps the SNN is calibrated for.
        chunk: timesteps simulated per forward pass.
        batch_size: images per simulated batch.
        ann: ANN activations relu(z) per site, [N, C, ...] each, recorded from the
            unmodified converted network (BN folded) before any step runs.
        progress: show a progress bar per step.
    """

    images: Tensor
    T: int
    chunk: int | None = 8
    batch_size: int = 128
    ann: list[Tensor] = field(default_factory=list)
    progress: bool = True

    @classmethod
    def from_network(cls, net: SpikingNetwork, images: Tensor, T: int, **kw) -> CalibrationData:
        data = cls(images=images, T=T, **kw)
        pre = record_preactivations(net, images, data.batch_size)
        data.ann = [torch.relu(z) for z in pre]
        return data

    def subset(self, n: int | None) -> tuple[Tensor, list[Tensor]]:
        """The first n calibration images and their ANN activations (all when n is None)."""
        n = self.images.shape[0] if n is None else min(n, self.images.shape[0])
        return self.images[:n], [a[:n] for a in self.ann]

    def track(self, items: Iterable, description: str, total: int | None = None) -> Iterator:
        """Iterate with a progress bar (rich) when ``progress`` is on."""
        seq = items if total is not None else list(items)  # a generator stays lazy with a total
        size = total if total is not None else len(seq)  # type: ignore[arg-type]
        return iter(
            track(seq, total=size, description=description, disable=not self.progress,
                  transient=True)
        )  # fmt: skip
