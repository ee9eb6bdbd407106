"""Lightning modules: ANN training/evaluation and SNN evaluation."""

from __future__ import annotations

from adacal.lightning.ann_module import ANNClassifier
from adacal.lightning.seg_module import ANNSegmenter
from adacal.lightning.snn_module import SNNEvaluator

__all__ = ["ANNClassifier", "ANNSegmenter", "SNNEvaluator"]
