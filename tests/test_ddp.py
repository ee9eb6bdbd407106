"""Evaluation under DDP (2 CPU processes) gives exactly the metrics of one process."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import TensorDataset

from adacal.calibration import BiasCorrection, CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate
from adacal.lightning import SNNEvaluator
from adacal.lightning.snn_module import ShardSampler
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron


def test_shard_sampler_covers_every_sample_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]  # no padding, unlike DistributedSampler


def _evaluate(net, dataset, devices: int) -> dict[str, float]:
    evaluator = SNNEvaluator(net, dataset, T=4, anytime=[1, 2, 4], chunk=2, batch_size=50)
    strategy = "ddp_spawn" if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    return trainer.test(evaluator, verbose=False)[0]


@pytest.mark.ddp
def test_two_process_evaluation_equals_one_process(digits_ann, digits):
    torch.manual_seed(0)
    net = convert(digits_ann, IFNeuron(), digits["x_train"][:1])
    data = CalibrationData.from_network(net, digits["x_train"][:128], 4, progress=False)
    calibrate(net, data, ThresholdSpec(method="mse"), [BiasCorrection()])
    # an odd size gives uneven shards
    dataset = TensorDataset(digits["x_test"][:251], digits["y_test"][:251])
    one = _evaluate(net, dataset, 1)
    two = _evaluate(net, dataset, 2)
    assert one["samples"] == two["samples"] == 251.0
    assert set(one) == set(two)
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-6), key
