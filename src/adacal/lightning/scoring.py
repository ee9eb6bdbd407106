"""What the evaluator counts per step and how the counts become scores (one class per task).

A scorer turns rate-coded outputs after each reported step, ``logits [S, B, K, ...]``, and the
labels into fixed-shape count tensors (summed over batches and processes), and the summed
counts into named scores ``{name}_t{t}`` (and per-class lists, ``extras``). ``names[0]`` is
the task's headline metric.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix


class Scorer(Protocol):
    names: tuple[str, ...]
    supports_exit: bool

    def sizes(self, steps: int) -> dict[str, tuple[int, ...]]: ...

    def counts(self, logits: Tensor, y: Tensor) -> dict[str, Tensor]: ...

    def scores(self, counts: dict[str, Tensor], steps: list[int]) -> dict[str, float]: ...

    def extras(self, counts: dict[str, Tensor]) -> dict[str, list[float]]: ...


class TopOne:
    """Classification: ``acc_t{t}`` = fraction of samples whose argmax is the label."""

    names = ("acc",)
    supports_exit = True

    def sizes(self, steps: int) -> dict[str, tuple[int, ...]]:
        return {"correct": (steps,), "samples": (1,)}

    def counts(self, logits: Tensor, y: Tensor) -> dict[str, Tensor]:
        """logits [S, B, K], y [B] -> correct [S], samples [1]."""
        correct = (logits.argmax(-1) == y.unsqueeze(0)).sum(1)
        return {"correct": correct, "samples": torch.tensor([len(y)], device=y.device)}

    def scores(self, counts: dict[str, Tensor], steps: list[int]) -> dict[str, float]:
        n = float(counts["samples"].item())
        return {f"acc_t{t}": float(counts["correct"][i].item()) / n for i, t in enumerate(steps)}

    def extras(self, counts: dict[str, Tensor]) -> dict[str, list[float]]:
        return {}


def iou_from_confusion(confusion: Tensor) -> Tensor:
    """Per-class IoU from a confusion matrix [K, K] (rows: label, columns: prediction):

        IoU_k = C_kk / (Σ_j C_kj + Σ_i C_ik − C_kk)

    NaN for a class absent from both labels and predictions (left out of the mean)."""
    c = confusion.double()
    tp = c.diagonal()
    union = c.sum(0) + c.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def miou_from_confusion(confusion: Tensor) -> float:
    """mIoU = mean of the per-class IoU over the classes present (labels or predictions)."""
    return float(iou_from_confusion(confusion).nanmean().item())


class MeanIoU:
    """Segmentation: ``miou_t{t}`` and ``pixel_acc_t{t}`` from one confusion matrix per step,
    summed over the whole test set (pixels labelled ``ignore_index`` are not counted);
    ``class_iou`` [K] at the last step."""

    names = ("miou", "pixel_acc")
    supports_exit = True  # IAT: per-image confidence = mean over pixels (adaptive.iat)

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)

    def sizes(self, steps: int) -> dict[str, tuple[int, ...]]:
        return {"confusion": (steps, self.num_classes, self.num_classes), "samples": (1,)}

    def counts(self, logits: Tensor, y: Tensor) -> dict[str, Tensor]:
        """logits [S, B, K, H, W], y [B, H, W] -> confusion [S, K, K], samples [1]."""
        confusion = torch.stack(
            [
                multiclass_confusion_matrix(
                    step.argmax(1), y, self.num_classes, ignore_index=self.ignore_index
                )
                for step in logits
            ]
        )
        return {"confusion": confusion, "samples": torch.tensor([len(y)], device=y.device)}

    def scores(self, counts: dict[str, Tensor], steps: list[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, t in enumerate(steps):
            c = counts["confusion"][i]
            out[f"miou_t{t}"] = miou_from_confusion(c)
            out[f"pixel_acc_t{t}"] = float((c.diagonal().sum() / c.sum().clamp_min(1)).item())
        return out

    def extras(self, counts: dict[str, Tensor]) -> dict[str, list[float]]:
        """``class_iou`` [K] at the last reported step (NaN: class absent)."""
        return {"class_iou": iou_from_confusion(counts["confusion"][-1]).tolist()}
