"""Exponential moving average of a module's weights, as a Lightning callback.

After every optimiser step ``ema ← d·ema + (1 − d)·w`` for every floating parameter and
buffer (BatchNorm running statistics included; integer buffers are copied), with the
warm-up ``d_k = min(decay, (1 + k) / (10 + k))`` at step k so early averages do not hold
the random initialisation. Validation runs on the averaged weights, and when training ends
they replace the trained ones: the exported ANN is the average.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn


def ema_update(avg: dict[str, Tensor], current: dict[str, Tensor], decay: float) -> None:
    """In place: ``avg[k] = decay·avg[k] + (1 − decay)·current[k]`` (floats), copy otherwise."""
    for key, value in current.items():
        if value.dtype.is_floating_point:
            avg[key].mul_(decay).add_(value.detach(), alpha=1.0 - decay)
        else:
            avg[key].copy_(value)


class EMA(L.Callback):
    """Keep an EMA of ``pl_module.model`` (decay ``decay``); validate and finish with it."""

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.steps = 0
        self.avg: dict[str, Tensor] | None = None
        self._saved: dict[str, Tensor] | None = None

    @staticmethod
    def _model(pl_module: L.LightningModule) -> nn.Module:
        return pl_module.model

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        current = self._model(pl_module).state_dict()
        if self.avg is None:
            self.avg = {k: v.detach().clone() for k, v in current.items()}
        else:  # restored from a checkpoint: onto the model's device
            self.avg = {k: v.to(current[k].device) for k, v in self.avg.items()}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        assert self.avg is not None
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            ema_update(self.avg, self._model(pl_module).state_dict(), decay)

    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if self.avg is None or self._saved is not None:
            return
        model = self._model(pl_module)
        self._saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.avg)

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._saved is not None:
            self._model(pl_module).load_state_dict(self._saved)
            self._saved = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training or trainer.state.fn == "fit":
            self._swap_in(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.avg is not None:
            self._model(pl_module).load_state_dict(self.avg)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "avg": self.avg}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.avg = state["avg"]
