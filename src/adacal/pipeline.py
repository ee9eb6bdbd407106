"""The composition root: ``run(cfg)`` builds every object from the config and runs one job.

Data flow (DESIGN.md §3): seed → datamodule → ANN (load with hash check, or
train) → ANN test accuracy and MACs → for each target T: convert, fit thresholds,
choose φ per site (AdaFire), calibrate, compress (SSC), count synapses, fit the
exit thresholds (IAT), evaluate (anytime accuracy up to T or accuracy at exit,
spikes, SOPs and energy per site), and the SNN Calibration baseline (IF neuron,
same calibration, same T) for the savings → metrics.json, results table, logger.
Everything else in the package receives built objects.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from adacal import health, quiet, reporting, run_logger
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate
from adacal.checkpoint import load_state_dict, save_state_dict
from adacal.checkpoint_io import AtomicCheckpointIO
from adacal.config import command_line, timesteps, validate
from adacal.errors import ConfigError, Interrupted
from adacal.lightning import SNNEvaluator
from adacal.metrics import energy
from adacal.models.segmentation import check_input_size
from adacal.reporting.run_metrics import energy_metrics, search_metrics, snn_metrics
from adacal.reporting.run_record import RunRecord
from adacal.resume import resume_plan
from adacal.signals import interrupts_raise
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.runtime import tune_cpu_allocator
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
    metrics = record.metrics
    logger = None
    with interrupts_raise():
        try:
            validate(cfg)
            snn_parts(cfg)  # bad neuron / compression / inference settings fail before any work
            names = scorer(cfg).names
            record.config = OmegaConf.to_container(cfg, resolve=True)
            record.extra["command"] = command_line()
            logger = run_logger.start(cfg, record.config)
            torch.set_float32_matmul_precision("high")
            if _device(cfg).type == "cpu":
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
                check_memory(cfg, [s.neurons_per_sample for s in probe.sites], _device(cfg))
            record.start("ann")
            digest = prepare_ann(cfg, model, datamodule, logger, out_dir)
            record.extra["ann_checkpoint_sha256"] = digest
            model = model.to(_device(cfg)).eval()
            trained, lr = not cfg.ann.checkpoint, cfg.ann.optim.get("lr")
            health.check_finite_weights(model, trained, lr, str(cfg.ann.checkpoint or ""))
            scores = cfg.get("health", True) and "acc" in names  # accuracy at chance fails
            k, n = int(cfg.dataset.get("num_classes", 0)), len(datamodule.test_set)
            if cfg.ann.evaluate:
                images = datamodule.calibration_set(min(8, len(datamodule.train_eval_set)), 0)[0]
                example = images[:1].to(_device(cfg))
                ann = convert(model, IFNeuron(), example)  # BN folded, every site a ReLU
                health.check_finite_logits(ann, images.to(_device(cfg)), trained, lr)
                res = evaluate(cfg, ann, datamodule, 0)
                metrics.update({f"ann/test/{name}": res[f"{name}_t1"] for name in names})
                metrics["ann/macs"] = energy.ann_macs(ann, example)
                metrics["ann/energy_uj"] = energy.energy_pj(metrics["ann/macs"], 0.0) / 1e6
                if scores:
                    health.check_ann_accuracy(metrics["ann/test/acc"], k, n, trained, lr)
            if "snn" in cfg.stages:
                record.start("snn")
                snn_stage(
                    cfg,
                    model,
                    datamodule,
                    out_dir,
                    on_result=record.finish_T,
                    on_start=lambda T: record.start("snn", T),
                )
                health.check_finite_metrics(metrics, timesteps(cfg), names[0])
                if scores:
                    health.check_snn_accuracy(metrics, timesteps(cfg), k, n)
            record.start("report")
            run_logger.log_results(cfg, logger, metrics, names, out_dir, record.extra["command"])
            record.ok()
            if rank_zero_only.rank == 0:
                print_tables(metrics, cfg, out_dir)
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


def snn_parts(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """The neuron spec, the spike compression (or None) and the exit policy (or None)."""
    neuron = build(cfg.neuron)
    compression = build(cfg.compression) if cfg.compression.get("_target_") else None
    policy = build(cfg.inference) if cfg.inference.get("_target_") else None
    if policy is not None and not scorer(cfg).supports_exit:
        raise ConfigError(
            "inference",
            f"input-aware adaptive timesteps (inference={cfg.inference.get('name')}) are "
            f"defined for classification only, not task={cfg.task.name}; "
            "use inference=fixed",
        )
    return neuron, compression, policy


def scorer(cfg: DictConfig) -> Any:
    """What the evaluator scores: the task's scorer (top-1, or mIoU and pixel accuracy)."""
    return build(cfg.task.scorer)


def _trainer(cfg: DictConfig, logger: Any = None, **overrides: Any) -> L.Trainer:
    return instantiate(cfg.trainer, logger=logger if logger is not None else False, **overrides)


def prepare_ann(
    cfg: DictConfig, model: torch.nn.Module, datamodule: Any, logger: Any, out_dir: Path
) -> str | None:
    """Load the ANN checkpoint (hash-checked) or train the ANN; returns the state dict's sha256.

    Training starts as ``ann.resume`` says (:func:`adacal.resume.resume_plan`): with ``auto``
    a requeued job loads the ann.pt an earlier attempt finished, or resumes from its last.ckpt.
    """
    if cfg.ann.checkpoint:
        return load_state_dict(model, cfg.ann.checkpoint, key="ann.checkpoint")
    plan = resume_plan(cfg.ann.get("resume"), out_dir)
    log.info("%s", plan.reason)
    if plan.action == "load":  # an earlier attempt of this (requeued) job finished training
        digest = load_state_dict(model, plan.path, key="ann.resume")
        if cfg.ann.export_to and rank_zero_only.rank == 0:  # it may have stopped before this
            dtype = cfg.ann.get("export_dtype", "float32")
            save_state_dict(model, cfg.ann.export_to, command_line(), dtype=dtype)
        return digest
    # save_top_k=1 without a monitor keeps the newest epoch; Lightning writes last.ckpt only
    # when some checkpoint was saved, so save_top_k=0 would never write one
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=out_dir / "lightning_checkpoints", save_last=True, every_n_epochs=1, save_top_k=1
    )
    trainer = _trainer(
        cfg,
        logger,
        callbacks=[checkpoints, health.FiniteLoss(cfg.ann.optim.get("lr"))],
        plugins=[AtomicCheckpointIO()],  # a full disk never leaves a truncated last.ckpt
    )
    module = build(cfg.task.module, model=model, **cfg.ann.optim)
    trainer.fit(module, datamodule=datamodule, ckpt_path=plan.ckpt_path)
    model.eval()
    digest = None
    if trainer.global_rank == 0:
        digest = save_state_dict(model, out_dir / "ann.pt", command_line())
        if cfg.ann.export_to:
            dtype = cfg.ann.get("export_dtype", "float32")
            save_state_dict(model, cfg.ann.export_to, command_line(), dtype=dtype)
            log.info("ANN state dict written to %s (sha256 %s)", cfg.ann.export_to, digest)
    return digest


def _device(cfg: DictConfig) -> torch.device:
    """Where calibration runs: this process's GPU unless the trainer is on the CPU."""
    if cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")


def evaluate(
    cfg: DictConfig, net: Any, datamodule: Any, T: int, exit_thresholds: Any = None
) -> dict[str, Any]:
    """Test-set pass through :class:`SNNEvaluator` (T = 0: the ANN; IAT with exit thresholds)."""
    extra: dict[str, Any] = {"scorer": scorer(cfg)}
    if exit_thresholds is not None:
        extra.update(exit_thresholds=exit_thresholds, confidence=cfg.inference.confidence)
    evaluator = SNNEvaluator(
        net,
        datamodule.test_set,
        T,
        anytime=cfg.snn.anytime,
        chunk=cfg.snn.chunk,
        batch_size=cfg.snn.batch_size,
        num_workers=cfg.dataset.num_workers,
        **extra,
    )
    # float32 whatever the training precision: the simulation's thresholds and spike counts
    # are not defined under autocast
    trainer = _trainer(cfg, None, use_distributed_sampler=False, max_epochs=1, precision="32-true")
    trainer.test(evaluator, verbose=False)
    return evaluator.results


def snn_stage(
    cfg: DictConfig,
    model: torch.nn.Module,
    datamodule: Any,
    out_dir: Path,
    on_result: Callable[[int, dict[str, float]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Convert, calibrate and evaluate for every target T in ``snn.T``.

    ``on_start(T)`` is called as each T starts; ``on_result(T, metrics)`` receives the
    metrics gathered so far after each T (partial records).
    """
    images, _, indices = datamodule.calibration_set(
        cfg.calibration.num_samples, cfg.calibration.seed
    )
    if rank_zero_only.rank == 0:
        (out_dir / "calibration_indices.json").write_text(str(indices.tolist()))
    device = _device(cfg)
    images = images.to(device)
    neuron, compression, policy = snn_parts(cfg)
    is_baseline = type(neuron) is IFNeuron and compression is None and policy is None
    names = scorer(cfg).names
    metrics: dict[str, float] = {}
    for T in timesteps(cfg):
        if on_start is not None:
            on_start(T)
        kept: list[Any] = []
        net, record, calib_s = convert_and_calibrate(
            cfg, model, images, T, neuron, compression, keep=kept
        )
        if kept:  # the same network before compression, evaluated on the same test set
            full = evaluate(cfg, kept[0], datamodule, T)
            metrics.update(scores("snn/uncompressed", full, T, names))
            metrics.update(energy_metrics(kept[0], images[:1], full, T, "snn/uncompressed"))
            del kept[:]
        eta = None
        if policy is not None:
            n_fit = int(policy.fit_batches) * int(policy.batch_size)
            n_fit = min(n_fit, len(datamodule.train_eval_set))  # small (limited) training sets
            x_fit, y_fit, _ = datamodule.calibration_set(n_fit, int(cfg.seed) + 1)
            eta = policy.fit(net, x_fit.to(device), y_fit.to(device), T)
            record["iat"] = {"eta": eta.tolist(), "fit_images": n_fit}
        start = time.perf_counter()
        res = evaluate(cfg, net, datamodule, T, exit_thresholds=eta)
        eval_s = time.perf_counter() - start
        metrics.update(snn_metrics(net, res, T, calib_s, eval_s, names))
        metrics.update(search_metrics(record, T))
        metrics.update(energy_metrics(net, images[:1], res, T, "snn/test"))
        if policy is not None and policy.compare_full:  # the same network without exits
            start = time.perf_counter()
            full = evaluate(cfg, net, datamodule, T)
            metrics[f"snn/time/evaluation_full_s_T{T}"] = time.perf_counter() - start
            metrics.update(scores("snn/full", full, T, names))
            metrics.update(energy_metrics(net, images[:1], full, T, "snn/full"))
        if cfg.snn.compare_baseline:
            if is_baseline:
                base = {
                    f"snn/baseline/{k}": v
                    for k, v in energy_metrics(net, images[:1], res, T, "").items()
                }
                base.update(scores("snn/baseline", res, T, names))
            else:
                base = baseline_metrics(cfg, model, datamodule, images, T, neuron)
            metrics.update(base)
            metrics[f"snn/test/saving_vs_baseline_T{T}"] = 1.0 - (
                metrics[f"snn/test/energy_uj_T{T}"] / base[f"snn/baseline/energy_uj_T{T}"]
            )
        if rank_zero_only.rank == 0 and record:
            (out_dir / f"adaptive_T{T}.json").write_text(json.dumps(record, indent=1))
        if on_result is not None:
            on_result(T, metrics)
        log.info(
            "T=%d: %s %.2f%% (calibration %.1fs, evaluation %.1fs)",
            T,
            names[0],
            100 * res[f"{names[0]}_t{T}"],
            calib_s,
            eval_s,
        )
    return metrics


def scores(prefix: str, res: dict[str, Any], T: int, names: Any) -> dict[str, float]:
    """``{prefix}/{name}_T{T}`` for each of the task's score names (acc; miou, pixel_acc)."""
    return {f"{prefix}/{name}_T{T}": res[f"{name}_t{T}"] for name in names}


def convert_and_calibrate(
    cfg: DictConfig,
    model: torch.nn.Module,
    images: torch.Tensor,
    T: int,
    neuron: Any,
    compression: Any,
    keep: list[Any] | None = None,
) -> tuple[Any, dict[str, Any], float]:
    """Convert ``model`` with ``neuron`` and run the calibration recipe for T steps.

    Returns the network (with fan-out maps attached for SOP counting), the search
    record and the seconds it took. With ``compression.compare_uncompressed`` a copy of
    the network just before compression (fan-out attached) is appended to ``keep``.
    """
    start = time.perf_counter()
    net = convert(model, neuron, images[:1]).to(images.device)
    energy.attach_fanout(net, images[:1])  # SOP counting (and the searches' cost="sops")
    net.set_compiled(bool(cfg.snn.compile))
    data = CalibrationData.from_network(
        net,
        images,
        T,
        chunk=cfg.snn.chunk,
        batch_size=cfg.calibration.batch_size,
        progress=cfg.progress and sys.stderr.isatty(),
    )
    spec = ThresholdSpec(**cfg.calibration.threshold)
    steps = build(cfg.calibration.steps, _convert_="all")
    before = None
    if keep is not None and getattr(compression, "compare_uncompressed", False):

        def before(n: Any) -> None:
            keep.append(copy.deepcopy(n))

    record = calibrate(
        net, data, spec, steps, neuron=neuron, compression=compression, before_compression=before
    )
    return net, record, time.perf_counter() - start


def baseline_metrics(
    cfg: DictConfig,
    model: torch.nn.Module,
    datamodule: Any,
    images: torch.Tensor,
    T: int,
    neuron: Any,
) -> dict[str, float]:
    """The SNN Calibration baseline at the same T: IF neuron (same offset), same calibration
    steps, no compression, every sample runs T steps. Keys ``snn/baseline/*``."""
    net, _, _ = convert_and_calibrate(cfg, model, images, T, IFNeuron(offset=neuron.offset), None)
    res = evaluate(cfg, net, datamodule, T)
    out = {f"snn/baseline/{k}": v for k, v in energy_metrics(net, images[:1], res, T, "").items()}
    out.update(scores("snn/baseline", res, T, scorer(cfg).names))
    return out


def print_tables(metrics: dict[str, float], cfg: DictConfig, out_dir: Path) -> None:
    """Print the results table and write it as results.md beside metrics.json."""
    title = (
        f"{cfg.experiment_name}: {cfg.architecture.name} on {cfg.dataset.name}, "
        f"{cfg.neuron.get('name', 'if')} neuron, {cfg.calibration.name} calibration"
    )
    reporting.print_results(Console(), metrics, title=title)
    text = f"# {title}\n\n{reporting.results_markdown(metrics)}\n"
    if any("/anytime_" in k for k in metrics):
        label = "mIoU" if reporting.table.headline_metric(metrics) == "miou" else "accuracy"
        text += f"\n## Anytime {label} (%)\n\n{reporting.anytime_markdown(metrics)}\n"
    (out_dir / "results.md").write_text(text)
