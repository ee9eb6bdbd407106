"""``metrics.json``: the one record of a run that tables and notebooks read (never W&B).

Layout::

    {"status": "ok" | "failed", "metrics": {"snn/test/acc_T8": 0.93, ...},
     "config": {...resolved config...}, "git_revision": "<hash>[+dirty]", ...extra}

Accuracies are fractions in [0, 1]. Files are written atomically (temporary file in the
same folder, then ``os.replace``), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adacal.checkpoint import readable_by_all
from adacal.reporting.git import git_revision


def _jsonable(value: Any) -> Any:
    """Convert tensors, numpy scalars, paths and non-finite floats to JSON-safe values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # torch.Tensor, numpy array/scalar
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def metrics_path(path: str | Path) -> Path:
    """``path`` itself when it names a ``.json`` file, else ``path / "metrics.json"``."""
    path = Path(path)
    return path if path.suffix == ".json" else path / "metrics.json"


def write_json_atomic(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(payload), f, indent=2, sort_keys=False)
            f.write("\n")
        readable_by_all(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_metrics(
    path: str | Path,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    status: str = "ok",
) -> Path:
    """Write a run's ``metrics.json`` (status ``"ok"``, or ``"running"`` for a partial record
    written while a long run goes on); returns the file path.

    ``path`` is the ``.json`` file or the run directory (then ``<path>/metrics.json``).
    ``metrics`` are flat keys with the timestep in the name; ``config`` is the resolved
    config (plain containers); ``extra`` adds top-level entries (e.g. checkpoint digest).
    """
    payload: dict[str, Any] = {
        "status": status,
        "metrics": {k: _jsonable(v) for k, v in sorted(metrics.items())},
        "config": config,
        "git_revision": git_revision(),
    }
    for key, value in (extra or {}).items():
        if key not in ("status", "metrics"):
            payload[key] = value
    return write_json_atomic(metrics_path(path), payload)


def write_failure(
    path: str | Path,
    error: BaseException | str,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write ``metrics.json`` for a failed run: status ``"failed"`` and the error message.

    ``path`` as in :func:`write_metrics`.
    Any ``metrics`` gathered before the failure are kept, but the status is never ``"ok"``.
    """
    if isinstance(error, BaseException):
        message = f"{type(error).__name__}: {error}"
        trace = "".join(traceback.format_exception(error))
    else:
        message, trace = str(error), None
    payload: dict[str, Any] = {
        "status": "failed",
        "error": message,
        "traceback": trace,
        "metrics": dict(sorted((metrics or {}).items())),
        "config": config or {},
        "git_revision": git_revision(),
    }
    return write_json_atomic(metrics_path(path), payload)


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Load a ``metrics.json`` written by :func:`write_metrics` or :func:`write_failure`."""
    return json.loads(metrics_path(path).read_text())
