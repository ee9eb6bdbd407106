"""The composition root: ``run(cfg)`` builds every object from the config and runs one job.

Data flow (DESIGN.md §3): seed → datamodule → ANN (:mod:`adacal.stages.ann`: load with hash
check, or train) → ANN test score and MACs → for each target T the SNN stage
(:mod:`adacal.stages.snn`: convert, calibrate, search, compress, exit thresholds, evaluate,
baseline) → metrics.json, results table, logger. Everything else in the package receives
built objects; below this module only the ANN training and the test-set pass read the config
(the trainer's and the evaluator's settings, :mod:`adacal.stages.evaluate`).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from adacal import health, keys, quiet, run_logger
from adacal.calibration.recipe import ThresholdSpec
from adacal.config import command_line, timesteps, validate
from adacal.errors import ConfigError, Interrupted
from adacal.models.segmentation import check_input_size
from adacal.reporting.results_file import run_title, write_results
from adacal.reporting.run_record import RunRecord, hydra_choices
from adacal.signals import interrupts_raise
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.runtime import tune_cpu_allocator
from adacal.stages.ann import ann_metrics, prepare_ann
from adacal.stages.evaluate import evaluate
from adacal.stages.snn import SNNParts, run_all_T
from adacal.validate import check_data, check_memory

log = logging.getLogger("adacal")
for _name in ("lightning.pytorch", "lightning.fabric"):  # keep warnings, drop the banner lines
    logging.getLogger(_name).setLevel(logging.WARNING)


def run(cfg: DictConfig) -> dict[str, float]:
    """Run the job described by ``cfg``; returns the flat metrics also written to metrics.json.

    Every check that needs no training comes first (:func:`adacal.config.validate`, the W&B
    login, the data set's size, the memory a T needs). SIGINT / SIGTERM raise
    :class:`~adacal.errors.Interrupted`; any failure writes a ``failed`` record that keeps every
    finished T and says what was running (:class:`~adacal.reporting.run_record.RunRecord`).
    """
    quiet.install()  # library warnings that are noise for a user (adacal.quiet)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(out_dir, write=rank_zero_only.rank == 0)
    metrics, logger = record.metrics, None
    with interrupts_raise():
        try:
            validate(cfg)
            parts = snn_parts(cfg)  # bad neuron / compression / inference settings fail here
            record.config = OmegaConf.to_container(cfg, resolve=True)
            record.choices = hydra_choices()
            record.extra["command"] = command_line()
            logger = run_logger.start(cfg, record.config)
            device = _device(cfg)
            torch.set_float32_matmul_precision("high")
            if device.type == "cpu":
                tune_cpu_allocator()
            L.seed_everything(cfg.seed, workers=True, verbose=False)
            datamodule = build(cfg.dataset)
            datamodule.setup()
            check_data(cfg, len(datamodule.train_eval_set))
            model = build(cfg.architecture)
            if hasattr(datamodule, "input_sizes"):  # segmentation: H, W fit the encoder's stride
                check_input_size(model, datamodule.input_sizes())
            if "snn" in cfg.stages:  # refuse an unconvertible network or a T before training
                probe = convert(model, IFNeuron(), datamodule.calibration_set(1, 0)[0])
                check_memory(cfg, [s.neurons_per_sample for s in probe.sites], device)
            test = partial(_evaluate, cfg, datamodule, parts.scorer)
            record.start("ann")
            train = partial(build, cfg.task.module, model=model, **cfg.ann.optim)
            digest = prepare_ann(cfg, model, datamodule, logger, out_dir, train)
            record.extra["ann_checkpoint_sha256"] = digest
            model = model.to(device).eval()
            trained, lr = not cfg.ann.checkpoint, cfg.ann.optim.get("lr")
            health.check_finite_weights(model, trained, lr, str(cfg.ann.checkpoint or ""))
            scores = cfg.get("health", True) and "acc" in parts.names  # at chance fails
            k, n = int(cfg.dataset.get("num_classes", 0)), len(datamodule.test_set)
            if cfg.ann.evaluate:
                few = datamodule.calibration_set(min(8, len(datamodule.train_eval_set)), 0)[0]
                metrics.update(ann_metrics(model, few.to(device), test, parts.names, trained, lr))
                if scores:
                    health.check_ann_accuracy(metrics[keys.ann_key("acc")], k, n, trained, lr)
            if "snn" in cfg.stages:
                record.start("snn")
                images, _, indices = datamodule.calibration_set(
                    cfg.calibration.num_samples, cfg.calibration.seed
                )
                if rank_zero_only.rank == 0:
                    (out_dir / "calibration_indices.json").write_text(str(indices.tolist()))
                fit_set = partial(_fit_set, datamodule, int(cfg.seed) + 1, device)
                run_all_T(parts, model, images.to(device), timesteps(cfg), test, fit_set, record)
                health.check_finite_metrics(metrics, timesteps(cfg), parts.names[0])
                if scores:
                    health.check_snn_accuracy(metrics, timesteps(cfg), k, n)
            record.start("report")
            command = record.extra["command"]
            run_logger.log_results(cfg, logger, metrics, parts.names, out_dir, command)
            record.ok()
            if rank_zero_only.rank == 0:
                neuron, calibration = cfg.neuron.get("name", "if"), cfg.calibration.name
                title = run_title(cfg.experiment_name, cfg.architecture.name, cfg.dataset.name,
                                  neuron, calibration)  # fmt: skip
                burst = OmegaConf.select(cfg, "energy.burst", default=keys.SPIKES)
                write_results(metrics, title, out_dir, burst)
            return metrics
        except BaseException as err:
            if isinstance(err, Interrupted):
                err.where = record.where()
            record.failed(err)
            run_logger.finish(logger, err)
            logger = None
            raise
        finally:
            run_logger.finish(logger)


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`ConfigError` through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise


def snn_parts(cfg: DictConfig) -> SNNParts:
    """Everything the SNN stage is built from: the neuron spec, the spike compression (or
    None), the exit policy (or None), the threshold fit and calibration steps, the scorer."""
    scorer = build(cfg.task.scorer)
    compression = build(cfg.compression) if cfg.compression.get("_target_") else None
    policy = build(cfg.inference) if cfg.inference.get("_target_") else None
    if policy is not None and not scorer.supports_exit:
        raise ConfigError(
            "inference",
            f"input-aware adaptive timesteps (inference={cfg.inference.get('name')}) are "
            f"defined for classification only, not task={cfg.task.name}; "
            "use inference=fixed",
        )
    return SNNParts(
        neuron=build(cfg.neuron),
        compression=compression,
        policy=policy,
        spec=ThresholdSpec(**cfg.calibration.threshold),
        steps=build(cfg.calibration.steps, _convert_="all"),
        scorer=scorer,
        chunk=cfg.snn.chunk,
        batch_size=cfg.calibration.batch_size,
        progress=bool(cfg.progress and sys.stderr.isatty()),
        compiled=cfg.snn.compile,  # validated by SNNParts (ConfigError naming snn.compile)
        compare_baseline=bool(cfg.snn.compare_baseline),
    )


def _device(cfg: DictConfig) -> torch.device:
    """Where calibration runs: this process's GPU unless the trainer is on the CPU."""
    if cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")


def _fit_set(datamodule: Any, seed: int, device: torch.device, n: int) -> tuple[Any, Any]:
    """n training images and labels (at most the training set) for the exit thresholds."""
    n = min(n, len(datamodule.train_eval_set))  # small (limited) training sets
    x, y, _ = datamodule.calibration_set(n, seed)
    return x.to(device), y.to(device)


def _evaluate(
    cfg: DictConfig,
    datamodule: Any,
    scorer: Any,
    net: Any,
    T: int,
    exit_thresholds: Any = None,
    replay: Any = (),
) -> dict[str, Any]:
    """:func:`adacal.stages.evaluate.evaluate` on this run's test set (looked up at call time)."""
    return evaluate(cfg, net, datamodule, T, exit_thresholds, scorer=scorer, replay=replay)
