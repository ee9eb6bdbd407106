"""Health checks: a run whose numbers cannot be trusted fails instead of reporting "ok".

Each check raises :class:`~adacal.errors.HealthError` whose message names the config key most
likely at fault and says what to do:

- non-finite weights after training (``ann.optim.lr``) or in a loaded checkpoint
  (``ann.checkpoint``); a non-finite training loss stops training at once
  (:class:`FiniteLoss`); non-finite logits of the ANN on calibration images;
- an ANN whose test accuracy is at chance after training or loading;
- an SNN at chance at every fitted T where its ANN is not (``snn.T`` and the calibration).

"At chance" is statistical, not a margin on a trained model: accuracy within three binomial
standard deviations of 1/K on n test images (:func:`chance_bound`). ``health=false`` turns
the accuracy checks off (a deliberately untrained model); the finiteness checks always run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from adacal import keys
from adacal.errors import HealthError

SIGMAS = 3.0  # how many binomial standard deviations above 1/K still count as chance


def weights_key(trained: bool) -> str:
    """The key to blame for bad weights: the optimiser when trained, else the checkpoint."""
    return "ann.optim.lr" if trained else "ann.checkpoint"


def _hint(trained: bool, lr: float | None) -> str:
    if trained:
        now = f" (now {lr:g})" if lr is not None else ""
        return f"lower ann.optim.lr{now} or check the data normalisation"
    return "pass a checkpoint trained for this architecture= and dataset="


def check_finite_weights(
    model: nn.Module, trained: bool, lr: float | None = None, source: str = ""
) -> None:
    """Raise :class:`HealthError` when a parameter or buffer of ``model`` is NaN or infinite.

    ``trained``: the weights come from training here (blame ``ann.optim.lr``) rather than
    from ``ann.checkpoint``; ``source`` names the checkpoint file in the message.
    """
    bad = [
        name
        for name, tensor in (*model.named_parameters(), *model.named_buffers())
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        what = "training diverged" if trained else f"the checkpoint {source} holds them".strip()
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise HealthError(
            weights_key(trained),
            f"non-finite weights in {', '.join(bad[:3])}{more}: {what}; {_hint(trained, lr)}",
        )


@torch.no_grad()
def check_finite_logits(
    model: nn.Module, images: torch.Tensor, trained: bool, lr: float | None = None
) -> None:
    """Raise :class:`HealthError` when ``model(images)`` has a NaN or infinite value."""
    out = model(images)
    out = out["out"] if isinstance(out, Mapping) else out
    if not bool(torch.isfinite(out).all()):
        raise HealthError(
            weights_key(trained),
            f"the ANN's outputs are not finite on {len(images)} calibration images; "
            f"{_hint(trained, lr)}",
        )


def chance_bound(num_classes: int, n: int) -> float:
    """Highest accuracy still at chance: 1/K + 3·sqrt(p(1−p)/n), p = 1/K (n test images).

    On 100 images of 10 classes 0.19; on 10,000 images 0.109; on 10,000 of 100 classes 0.013.
    """
    p = 1.0 / max(int(num_classes), 1)
    return p + SIGMAS * math.sqrt(p * (1.0 - p) / max(int(n), 1))


def at_chance(acc: float | None, num_classes: int, n: int) -> bool:
    """True when ``acc`` is missing, NaN, or not above :func:`chance_bound`."""
    return acc is None or not math.isfinite(acc) or acc <= chance_bound(num_classes, n)


def check_ann_accuracy(
    acc: float, num_classes: int, n: int, trained: bool, lr: float | None = None
) -> None:
    """Raise :class:`HealthError` when the ANN's test accuracy is at chance."""
    if at_chance(acc, num_classes, n):
        epochs = "; train longer (trainer.max_epochs)" if trained else ""
        raise HealthError(
            weights_key(trained),
            f"the ANN's test accuracy {acc:.1%} is at chance (1/{num_classes} on {n} images, "
            f"bound {chance_bound(num_classes, n):.1%}); {_hint(trained, lr)}{epochs}; "
            "health=false accepts it",
        )


def check_snn_accuracy(
    metrics: Mapping[str, Any], timesteps: list[int], num_classes: int, n: int
) -> None:
    """Raise :class:`HealthError` when the SNN is at chance at every T while the ANN is not.

    Reads ``ann/test/acc`` and ``snn/test/acc_T{T}``; does nothing without an ANN score (or
    when the ANN is at chance itself, which :func:`check_ann_accuracy` reports).
    """
    ann = metrics.get(keys.ann_key("acc"))
    if ann is None or at_chance(float(ann), num_classes, n) or not timesteps:
        return
    scores = {T: metrics.get(keys.key(keys.TEST, "acc", T)) for T in timesteps}
    if all(at_chance(None if s is None else float(s), num_classes, n) for s in scores.values()):
        shown = ", ".join(
            f"T={T}: {'nan' if s is None else format(float(s), '.1%')}" for T, s in scores.items()
        )
        raise HealthError(
            "snn.T",
            f"the SNN is at chance ({shown}; bound {chance_bound(num_classes, n):.1%}) while "
            f"the ANN scores {float(ann):.1%}: the conversion failed; try a larger snn.T, "
            "calibration.threshold.method=mse or calibration=light; health=false accepts it",
        )


def check_finite_metrics(metrics: Mapping[str, Any], timesteps: list[int], name: str) -> None:
    """Raise :class:`HealthError` when a headline SNN number (score, energy) is NaN or missing."""
    for T in timesteps:
        for key in (keys.key(keys.TEST, name, T), keys.key(keys.TEST, "energy_uj", T)):
            value = metrics.get(key)
            if value is not None and not math.isfinite(float(value)):
                raise HealthError(
                    "snn.T",
                    f"{key} is {value}: the spiking network produced non-finite values; "
                    "check the ANN checkpoint (ann.checkpoint) and calibration.threshold",
                )


class FiniteLoss(L.Callback):
    """Stop training at the first non-finite loss with a :class:`HealthError` (``ann.optim.lr``)."""

    def __init__(self, lr: float | None = None) -> None:
        self.lr = lr

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise HealthError(
                "ann.optim.lr",
                f"the training loss is {loss.item()} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}: training diverged; {_hint(True, self.lr)}",
            )
