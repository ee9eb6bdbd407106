"""One network for one T: convert an ANN with a neuron and run the whole calibration recipe.

The single place where a neuron spec meets its search: :func:`calibrated_network` converts
``model`` (:func:`adacal.snn.convert.convert`), attaches the cost model's fan-out maps (SOP
counting, the searches' ``cost="sops"``) and runs :func:`adacal.calibration.recipe.calibrate`
with the neuron's search (:func:`adacal.adaptive.search.search_for`) and the compression. The
run's SNN stage and the analysis (notebooks) both build their networks here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from adacal.adaptive.search import search_for
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import Step, ThresholdSpec, calibrate
from adacal.metrics.energy import CostModel
from adacal.snn.convert import SpikingNetwork, convert
from adacal.snn.neurons import IFNeuron


def calibrated_network(
    model: torch.nn.Module,
    neuron: IFNeuron,
    images: Tensor,
    T: int,
    spec: ThresholdSpec,
    steps: Sequence[Step] = (),
    compression: Any = None,
    cost: CostModel | None = None,
    chunk: int | None = 8,
    batch_size: int = 128,
    progress: bool = False,
    compiled: bool | str = "auto",
    before_compression: Callable[[SpikingNetwork], None] | None = None,
    on_budget: Callable[[str, SpikingNetwork], None] | None = None,
) -> tuple[SpikingNetwork, dict[str, Any], float]:
    """Convert ``model`` with ``neuron`` and calibrate it for T steps on ``images`` [N, C, H, W].

    ``on_budget`` receives the network of each further compression budget
    (:func:`adacal.calibration.recipe.calibrate`). ``compiled`` is ``snn.compile``
    (:meth:`SpikingNetwork.set_compiled`: auto, true, false).
    Returns the network (on ``images``' device, with the fan-out maps of ``cost`` when given),
    the recipe's record (the searches' choices) and the seconds it took.
    """
    start = time.perf_counter()
    net = convert(model, neuron, images[:1]).to(images.device)
    if cost is not None:
        cost.attach(net)
    net.set_compiled(compiled)
    data = CalibrationData.from_network(
        net, images, T, chunk=chunk, batch_size=batch_size, progress=progress
    )
    record = calibrate(
        net,
        data,
        spec,
        list(steps),
        search=search_for(neuron),
        compression=compression,
        before_compression=before_compression,
        on_budget=on_budget,
    )
    return net, record, time.perf_counter() - start
