"""The SNN stage: for every target T, convert, calibrate, evaluate, and compare.

Per T (DESIGN.md §3): convert the ANN with the neuron, run the calibration recipe (thresholds,
the search, the calibration steps, compression), fit the exit thresholds (IAT), evaluate on
the test set, and the evaluation variants a method asks for: the network before compression
(``compression.compare_uncompressed``), the network of every further compression budget
(``compression.frontier``), the same network without exits
(``inference.compare_full``, which also replays the exit policies of ``inference.frontier``)
and the SNN Calibration baseline (IF neuron, same calibration,
same T; ``snn.compare_baseline``), whose energy gives the saving. Every object arrives built
(:class:`SNNParts`); the network's cost structure is analysed once per run
(:class:`~adacal.metrics.energy.CostModel`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from adacal import keys
from adacal.adaptive.convert import calibrated_network
from adacal.calibration.recipe import Step, ThresholdSpec
from adacal.metrics.energy import CostModel
from adacal.reporting.run_metrics import (
    baseline_energy_metrics,
    energy_metrics,
    saving_metrics,
    score_metrics,
    search_metrics,
    snn_metrics,
)
from adacal.snn import fused
from adacal.snn.convert import SpikingNetwork, convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.runtime import release_free_memory

log = logging.getLogger("adacal")

Evaluate = Callable[..., dict[str, Any]]  # (net, T, exit_thresholds=None) -> evaluator results


@dataclass
class SNNParts:
    """What the SNN stage is built from (by :func:`adacal.pipeline.run`).

    ``neuron``: the neuron spec; ``compression``: SSC or None; ``policy``: the IAT exit policy
    or None; ``spec`` and ``steps``: the threshold fit and the calibration steps; ``scorer``:
    what the evaluator scores (its ``names``: acc; miou, pixel_acc).
    """

    neuron: IFNeuron
    compression: Any
    policy: Any
    spec: ThresholdSpec
    steps: Sequence[Step]
    scorer: Any
    chunk: int | None = 8
    batch_size: int = 128
    progress: bool = False
    compiled: bool | str = "auto"
    compare_baseline: bool = True

    def __post_init__(self) -> None:
        self.compiled = fused.compile_mode(self.compiled)  # ConfigError naming snn.compile

    @property
    def names(self) -> tuple[str, ...]:
        """The task's score names."""
        return tuple(self.scorer.names)

    @property
    def is_baseline(self) -> bool:
        """The run is its own SNN Calibration baseline (IF, no compression, no exits)."""
        return type(self.neuron) is IFNeuron and self.compression is None and self.policy is None


def convert_and_calibrate(
    parts: SNNParts,
    model: torch.nn.Module,
    images: Tensor,
    T: int,
    neuron: IFNeuron,
    compression: Any,
    cost: CostModel,
    keep: list[SpikingNetwork] | None = None,
    budgets: list[tuple[str, SpikingNetwork]] | None = None,
) -> tuple[SpikingNetwork, dict[str, Any], float]:
    """:func:`adacal.adaptive.convert.calibrated_network` with this run's settings. With
    ``compression.compare_uncompressed`` a copy of the network just before compression is
    appended to ``keep``; the networks of ``compression.frontier``'s budgets go to
    ``budgets`` as (name, network)."""
    before = None
    if keep is not None and getattr(compression, "compare_uncompressed", False):

        def before(n: SpikingNetwork) -> None:
            twin = copy.deepcopy(n)
            twin.reset(1)  # the last calibration batch's state is not needed to evaluate
            keep.append(twin)

    return calibrated_network(
        model,
        neuron,
        images,
        T,
        parts.spec,
        parts.steps,
        compression=compression,
        cost=cost,
        chunk=parts.chunk,
        batch_size=parts.batch_size,
        progress=parts.progress,
        compiled=parts.compiled,
        before_compression=before,
        on_budget=(lambda name, n: budgets.append((name, n))) if budgets is not None else None,
    )


def run_T(
    parts: SNNParts,
    model: torch.nn.Module,
    images: Tensor,
    T: int,
    evaluate: Evaluate,
    cost: CostModel,
    fit_set: Callable[[int], tuple[Tensor, Tensor]],
    progress: Callable[[dict[str, float], dict[str, Any]], None] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Everything for one T: (its metrics, the search record). ``progress`` gets both as
    they stand after each test pass (a job killed during a long T keeps those passes)."""
    names = parts.names
    compile_start = fused.compile_seconds()
    kept: list[SpikingNetwork] = []
    budgets: list[tuple[str, SpikingNetwork]] = []
    net, record, calib_s = convert_and_calibrate(
        parts, model, images, T, parts.neuron, parts.compression, cost, keep=kept, budgets=budgets
    )
    release_free_memory()  # the searches' and calibration's freed activations (snn.runtime)
    metrics: dict[str, float] = {}

    def report() -> None:
        if progress is not None:
            progress(metrics, record)

    if kept:  # the same network before compression, evaluated on the same test set
        full = evaluate(kept[0], T)
        metrics.update(score_metrics(keys.UNCOMPRESSED, full, T, names))
        metrics.update(energy_metrics(cost, kept[0].sites, full, T, keys.UNCOMPRESSED))
        del kept[:]
        report()
    while budgets:  # the compression's other budgets (compression.frontier), every sample T steps
        name, other = budgets.pop(0)
        start = time.perf_counter()
        res_budget = evaluate(other, T)
        prefix = keys.budget(name)
        metrics[keys.key(keys.TIME, f"evaluation_{name}_s", T)] = time.perf_counter() - start
        metrics.update(score_metrics(prefix, res_budget, T, names))
        metrics.update(energy_metrics(cost, other.sites, res_budget, T, prefix))
        del other
        release_free_memory()  # a budget network's state (snn.runtime)
        report()
    eta, points = None, []
    if parts.policy is not None:
        x_fit, y_fit = fit_set(int(parts.policy.fit_batches) * int(parts.policy.batch_size))
        eta, points = parts.policy.fit_all(net, x_fit, y_fit, T)
        record["iat"] = {"eta": eta.tolist(), "fit_images": int(x_fit.shape[0])}
        if points:
            record["iat"]["frontier"] = [
                {
                    "name": p.name,
                    "confidence": p.confidence,
                    "a": p.a,
                    "b": p.b,
                    "eta": p.eta.tolist(),
                }
                for p in points
            ]
    start = time.perf_counter()
    res = evaluate(net, T, exit_thresholds=eta)
    eval_s = time.perf_counter() - start
    metrics.update(snn_metrics(net, res, T, calib_s, eval_s, names))
    metrics.update(search_metrics(record, T))
    metrics.update(energy_metrics(cost, net.sites, res, T, keys.TEST))
    report()
    if parts.policy is not None and parts.policy.compare_full:  # the same network, no exits
        start = time.perf_counter()
        full = evaluate(net, T, replay=points) if points else evaluate(net, T)
        metrics[keys.key(keys.TIME, "evaluation_full_s", T)] = time.perf_counter() - start
        metrics.update(score_metrics(keys.FULL, full, T, names))
        metrics.update(energy_metrics(cost, net.sites, full, T, keys.FULL))
        for name, res_point in full.get("replay", {}).items():  # the frontier, replayed
            prefix = keys.replay(name)
            metrics.update(score_metrics(prefix, res_point, T, names))
            metrics.update(energy_metrics(cost, net.sites, res_point, T, prefix))
        report()
    if parts.compare_baseline:
        if parts.is_baseline:
            base_res, base_sites = res, net.sites
        else:  # IF neuron (same offset), same calibration steps, no compression, all T steps
            baseline_neuron = IFNeuron(offset=parts.neuron.offset)
            base_net, _, _ = convert_and_calibrate(
                parts, model, images, T, baseline_neuron, None, cost
            )
            release_free_memory()
            base_res, base_sites = evaluate(base_net, T), base_net.sites
        metrics.update(baseline_energy_metrics(cost, base_sites, base_res, T))
        metrics.update(score_metrics(keys.BASELINE, base_res, T, names))
        metrics.update(saving_metrics(metrics, T))
    # first calls of new fused neuron kernels at this T (adacal.snn.fused), in the times above
    metrics[keys.key(keys.TIME, "compile_s", T)] = fused.compile_seconds() - compile_start
    log.info(
        "T=%d: %s %.2f%% (calibration %.1fs, evaluation %.1fs)",
        T,
        names[0],
        100 * res[f"{names[0]}_t{T}"],
        calib_s,
        eval_s,
    )
    return metrics, record


def run_all_T(
    parts: SNNParts,
    model: torch.nn.Module,
    images: Tensor,
    timesteps: Sequence[int],
    evaluate: Evaluate,
    fit_set: Callable[[int], tuple[Tensor, Tensor]],
    record: Any,
) -> None:
    """:func:`run_T` for every target T on the calibration ``images`` [N, C, H, W]; each T's
    metrics reach the run record after each of its test passes (``record.progress``) and as it
    finishes (``record.finish_T``), so a failure keeps them; its search record goes to
    ``adaptive_T{T}.json`` beside it at the same moments."""
    cost = CostModel.of(convert(model, parts.neuron, images[:1]).to(images.device), images[:1])

    def keep_search(T: int, search: dict[str, Any]) -> None:
        if record.write and search:
            (record.out_dir / f"adaptive_T{T}.json").write_text(json.dumps(search, indent=1))

    def progress(T: int, metrics: dict[str, float], search: dict[str, Any]) -> None:
        keep_search(T, search)
        record.progress(T, metrics)

    for T in timesteps:
        record.start("snn", T)
        metrics, search = run_T(
            parts, model, images, T, evaluate, cost, fit_set, partial(progress, T)
        )
        keep_search(T, search)
        record.finish_T(T, metrics)
