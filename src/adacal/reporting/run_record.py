"""The ``metrics.json`` of the run in progress: what finished, what runs now, how it ended.

:class:`RunRecord` is the one writer of a run's record during :func:`adacal.pipeline.run`:
``running`` after every finished T and every test pass of the T in progress (so a killed
job keeps them), ``ok`` at the end, or
``failed`` with every finished T, the stage and T that were running (``stopped_at``) and why
(``interrupted: SIGINT``, ``HealthError: ann.optim.lr: ...``). Only rank 0 writes.

The record also keeps Hydra's config-group choices (``choices``: ``{"method":
"adafire_ssc_iat", "neuron": "adafire", ...}``, :func:`hydra_choices`), so that readers take
the method from them instead of rebuilding it (:func:`adacal.reporting.records.method_label`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adacal.reporting.metrics_file import write_failure, write_metrics


@dataclass
class RunRecord:
    """Metrics gathered so far and the stage that runs now, written to ``<out_dir>/metrics.json``.

    ``config`` is the resolved config (empty until it resolves); ``choices`` Hydra's
    config-group choices (:func:`hydra_choices`; written as the top-level ``choices`` when
    not empty); ``extra`` top-level entries (command, checkpoint digest); ``write``: False on
    ranks other than 0.
    """

    out_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    finished_T: list[int] = field(default_factory=list)
    stage: str = "setup"
    T: int | None = None
    write: bool = True

    def start(self, stage: str, T: int | None = None) -> None:
        """Note that ``stage`` (``setup``, ``ann``, ``snn``, ``report``) starts (at ``T``)."""
        self.stage, self.T = stage, T

    def finish_T(self, T: int, metrics: dict[str, float]) -> None:
        """Keep the metrics of a finished T and write the ``running`` record."""
        self.T = None  # nothing runs until the next start()
        self.metrics.update(metrics)
        if T not in self.finished_T:
            self.finished_T.append(T)
        if self.write:
            extra = {**self._top(), "finished_T": self.finished_T}
            write_metrics(self.out_dir, self.metrics, self.config, extra, status="running")

    def progress(self, T: int, metrics: dict[str, float]) -> None:
        """Keep what T has measured so far (its first test passes) and write the ``running``
        record with ``partial_T``: a job killed before T finishes keeps those passes."""
        self.metrics.update(metrics)
        if self.write:
            extra = {**self._top(), "finished_T": self.finished_T, "partial_T": T}
            write_metrics(self.out_dir, self.metrics, self.config, extra, status="running")

    def ok(self) -> Path | None:
        """Write the final ``ok`` record."""
        if not self.write:
            return None
        extra = {**self._top(), "finished_T": self.finished_T}
        return write_metrics(self.out_dir, self.metrics, self.config, extra)

    def failed(self, error: BaseException) -> Path | None:
        """Write the ``failed`` record: every finished T, ``stopped_at`` and the error."""
        if not self.write:
            return None
        stopped = {"stage": self.stage, **({"T": self.T} if self.T is not None else {})}
        return write_failure(
            self.out_dir,
            error,
            config=self.config,
            metrics=self.metrics,
            extra=self._top(),
            stopped_at=stopped,
            finished_T=self.finished_T,
        )

    def _top(self) -> dict[str, Any]:
        """The top-level entries besides status, metrics and config: ``choices``, ``extra``."""
        return {**({"choices": dict(self.choices)} if self.choices else {}), **self.extra}

    def where(self) -> str:
        """``snn stage at T=4`` / ``ann stage``: for the one-line message of a stopped run."""
        return f"{self.stage} stage" + (f" at T={self.T}" if self.T is not None else "")


def hydra_choices() -> dict[str, str | None]:
    """Hydra's ``runtime.choices`` of the running job as a plain dict (``{"method":
    "adafire_ssc_iat", "neuron": "adafire", "dataset": "cifar10", ...}``; an unselected
    optional group is None); empty when Hydra is not initialised (a config composed in a
    test and passed to :func:`adacal.pipeline.run`). Of Hydra's own groups only the launcher
    is kept (its help, logging and output groups say nothing about the run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {
        str(k): None if v is None else str(v)
        for k, v in choices.items()
        if not str(k).startswith("hydra/") or str(k) == "hydra/launcher"
    }
