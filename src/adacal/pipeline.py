"""The composition root: ``run(cfg)`` builds every object from the config and runs one job.

Data flow (DESIGN.md §3): seed → datamodule → ANN (load with hash check, or
train) → ANN test accuracy → for each target T: convert, fit thresholds,
calibrate, evaluate (anytime accuracy up to T, spikes per site) → metrics.json,
results table, logger. Everything else in the package receives built objects.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from adacal import reporting
from adacal.calibration.data import CalibrationData
from adacal.calibration.recipe import ThresholdSpec, calibrate
from adacal.checkpoint import load_state_dict, save_state_dict
from adacal.config import command_line, timesteps, validate
from adacal.lightning import ANNClassifier, SNNEvaluator
from adacal.snn.convert import convert
from adacal.snn.neurons import IFNeuron
from adacal.snn.runtime import tune_cpu_allocator

log = logging.getLogger("adacal")
for _name in ("lightning.pytorch", "lightning.fabric"):  # keep warnings, drop the banner lines
    logging.getLogger(_name).setLevel(logging.WARNING)


def run(cfg: DictConfig) -> dict[str, float]:
    """Run the job described by ``cfg``; returns the flat metrics also written to metrics.json."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    logger = None
    try:
        validate(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        torch.set_float32_matmul_precision("high")
        if _device(cfg).type == "cpu":
            tune_cpu_allocator()
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.dataset)
        datamodule.setup()
        model = instantiate(cfg.architecture)
        if "snn" in cfg.stages:  # refuse an unconvertible network before training it
            convert(model, IFNeuron(), datamodule.calibration_set(1, 0)[0])
        logger = instantiate(cfg.logger) if cfg.logger.get("_target_") else None
        extra: dict[str, Any] = {"command": command_line()}
        extra["ann_checkpoint_sha256"] = prepare_ann(cfg, model, datamodule, logger, out_dir)
        model = model.to(_device(cfg)).eval()
        if cfg.ann.evaluate:
            example = datamodule.calibration_set(1, 0)[0].to(_device(cfg))
            ann = convert(model, IFNeuron(), example)  # BN folded, every site a ReLU
            metrics["ann/test/acc"] = evaluate(cfg, ann, datamodule, 0)["acc_t1"]
        if "snn" in cfg.stages:

            def partial(snn_metrics: dict[str, float]) -> None:
                if rank_zero_only.rank == 0:
                    record = {**metrics, **snn_metrics}
                    reporting.write_metrics(out_dir, record, resolved, extra, status="running")

            metrics.update(snn_stage(cfg, model, datamodule, out_dir, on_result=partial))
        if logger is not None:
            logger.log_hyperparams(resolved)
            logger.log_metrics(metrics)
        if rank_zero_only.rank == 0:
            reporting.write_metrics(out_dir, metrics, resolved, extra)
            print_tables(metrics, cfg, out_dir)
        return metrics
    except BaseException as err:
        if rank_zero_only.rank == 0:
            reporting.write_failure(out_dir, err, metrics=metrics)
        raise
    finally:
        if logger is not None and type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()


def _trainer(cfg: DictConfig, logger: Any = None, **overrides: Any) -> L.Trainer:
    return instantiate(cfg.trainer, logger=logger if logger is not None else False, **overrides)


def prepare_ann(
    cfg: DictConfig, model: torch.nn.Module, datamodule: Any, logger: Any, out_dir: Path
) -> str | None:
    """Load the ANN checkpoint (hash-checked) or train the ANN; returns the state dict's sha256."""
    if cfg.ann.checkpoint:
        return load_state_dict(model, cfg.ann.checkpoint, key="ann.checkpoint")
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=out_dir / "lightning_checkpoints", save_last=True, every_n_epochs=1, save_top_k=0
    )
    trainer = _trainer(cfg, logger, callbacks=[checkpoints])
    module = ANNClassifier(model, **cfg.ann.optim)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ann.resume)
    model.eval()
    digest = None
    if trainer.global_rank == 0:
        digest = save_state_dict(model, out_dir / "ann.pt", command_line())
        if cfg.ann.export_to:
            save_state_dict(model, cfg.ann.export_to, command_line())
            log.info("ANN state dict written to %s (sha256 %s)", cfg.ann.export_to, digest)
    return digest


def _device(cfg: DictConfig) -> torch.device:
    """Where calibration runs: this process's GPU unless the trainer is on the CPU."""
    if cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")


def evaluate(cfg: DictConfig, net: Any, datamodule: Any, T: int) -> dict[str, Any]:
    """Test-set pass through :class:`SNNEvaluator` (T = 0: the ANN)."""
    evaluator = SNNEvaluator(
        net,
        datamodule.test_set,
        T,
        anytime=cfg.snn.anytime,
        chunk=cfg.snn.chunk,
        batch_size=cfg.snn.batch_size,
        num_workers=cfg.dataset.num_workers,
    )
    trainer = _trainer(cfg, None, use_distributed_sampler=False, max_epochs=1)
    trainer.test(evaluator, verbose=False)
    return evaluator.results


def snn_stage(
    cfg: DictConfig,
    model: torch.nn.Module,
    datamodule: Any,
    out_dir: Path,
    on_result: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Convert, calibrate and evaluate for every target T in ``snn.T``.

    ``on_result`` receives the metrics gathered so far after each T (partial records).
    """
    images, _, indices = datamodule.calibration_set(
        cfg.calibration.num_samples, cfg.calibration.seed
    )
    if rank_zero_only.rank == 0:
        (out_dir / "calibration_indices.json").write_text(str(indices.tolist()))
    device = _device(cfg)
    images = images.to(device)
    metrics: dict[str, float] = {}
    Ts = timesteps(cfg)
    for T in Ts:
        start = time.perf_counter()
        net = convert(model, instantiate(cfg.neuron), images[:1]).to(device)
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
        calibrate(net, data, spec, instantiate(cfg.calibration.steps, _convert_="all"))
        calib_s = time.perf_counter() - start
        start = time.perf_counter()
        res = evaluate(cfg, net, datamodule, T)
        eval_s = time.perf_counter() - start
        metrics.update(_snn_metrics(net, res, T, calib_s, eval_s))
        if on_result is not None:
            on_result(metrics)
        log.info(
            "T=%d: top-1 %.2f%% (calibration %.1fs, evaluation %.1fs)",
            T,
            100 * res[f"acc_t{T}"],
            calib_s,
            eval_s,
        )
    return metrics


def _snn_metrics(
    net: Any, res: dict[str, Any], T: int, calib_s: float, eval_s: float
) -> dict[str, float]:
    neurons = sum(s.neurons_per_sample for s in net.sites)
    out = {
        f"snn/test/acc_T{T}": res[f"acc_t{T}"],
        f"snn/test/spikes_T{T}": res["spikes"],
        f"snn/test/rate_T{T}": res["spikes"] / (neurons * T),
        f"snn/time/calibration_s_T{T}": calib_s,
        f"snn/time/evaluation_s_T{T}": eval_s,
    }
    for key, value in res.items():
        if key.startswith("acc_t"):
            out[f"snn/test/anytime_T{T}/{key}"] = value
    for site, spikes in zip(net.sites, res["site_spikes"], strict=True):
        out[f"snn/test/site{site.index}_rate_T{T}"] = spikes / (site.neurons_per_sample * T)
    return out


def print_tables(metrics: dict[str, float], cfg: DictConfig, out_dir: Path) -> None:
    """Print the results table and write it as results.md beside metrics.json."""
    title = (
        f"{cfg.experiment_name}: {cfg.architecture.name} on {cfg.dataset.name}, "
        f"{cfg.neuron.get('name', 'if')} neuron, {cfg.calibration.name} calibration"
    )
    console = Console()
    console.print(reporting.results_table(metrics, title=title))
    text = f"# {title}\n\n{reporting.results_markdown(metrics)}\n"
    if any("/anytime_" in k for k in metrics):
        text += f"\n## Anytime accuracy (%)\n\n{reporting.anytime_markdown(metrics)}\n"
    (out_dir / "results.md").write_text(text)
