"""``metrics.json``: the one record of a run that tables and notebooks read (never W&B).

Layout::

    {"status": "ok" | "running" | "failed", "metrics": {"snn/test/acc_T8": 0.93, ...},
     "config": {...resolved config...}, "git_revision": "<hash>[+dirty]", ...extra}

A ``failed`` record also holds ``error`` (one line: ``ConfigError: snn.T: ...``,
``interrupted: SIGINT``), ``traceback``, ``stopped_at`` (the stage and T that were running),
``finished_T`` (the T whose metrics it keeps) and, for a signal, ``interrupted``
(``SIGINT`` / ``SIGTERM``). The metrics also hold the test passes that finished within the
T that was running (``stopped_at.T``); a ``running`` record names that T ``partial_T``.

Accuracies are fractions in [0, 1]. Files are written atomically (temporary file in the
same folder, flushed to disk, then ``os.replace``), so a reader never sees half a file, also
when the disk fills up.
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

from adacal.checkpoint import fsync_dir, readable_by_all
from adacal.errors import Interrupted
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
            f.flush()
            os.fsync(f.fileno())
        readable_by_all(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
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


def error_message(error: BaseException) -> str:
    """One line for the record: ``interrupted: SIGINT`` for a signal (or Ctrl-C), ``exited with
    status N`` for ``sys.exit``, else ``<Type>: <message>`` (just the type when it has none)."""
    if isinstance(error, Interrupted):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted: SIGINT"
    if isinstance(error, SystemExit):
        return f"exited with status {error.code}"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_failure(
    path: str | Path,
    error: BaseException | str,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    stopped_at: Mapping[str, Any] | None = None,
    finished_T: list[int] | None = None,
) -> Path:
    """Write ``metrics.json`` for a failed run: status ``"failed"`` and the error message.

    ``path`` as in :func:`write_metrics`. Any ``metrics`` gathered before the failure are kept
    (every finished T and the finished test passes of the running one), but the status is
    never ``"ok"``. ``stopped_at`` says what was running
    (``{"stage": "snn", "T": 4}``), ``finished_T`` which T the metrics hold; a signal adds
    ``interrupted: SIGINT``. ``extra`` adds top-level entries as in :func:`write_metrics`.
    """
    if isinstance(error, BaseException):
        message = error_message(error)
        trace = "".join(traceback.format_exception(error))
    else:
        message, trace = str(error), None
    payload: dict[str, Any] = {
        "status": "failed",
        "error": message,
        "traceback": trace,
        "metrics": {k: _jsonable(v) for k, v in sorted((metrics or {}).items())},
        "config": config or {},
        "git_revision": git_revision(),
    }
    if isinstance(error, Interrupted | KeyboardInterrupt):
        payload["interrupted"] = getattr(error, "signal_name", "SIGINT")
    if stopped_at is not None:
        payload["stopped_at"] = dict(stopped_at)
    if finished_T is not None:
        payload["finished_T"] = list(finished_T)
    for key, value in (extra or {}).items():
        payload.setdefault(key, value)
    return write_json_atomic(metrics_path(path), payload)


class RecordError(ValueError):
    """A ``metrics.json`` that is not a run record (not JSON, or not a JSON object)."""


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Load a ``metrics.json`` written by :func:`write_metrics` or :func:`write_failure`.

    Raises :class:`RecordError` naming the file when it is not JSON or not a JSON object.
    """
    path = metrics_path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path} is not JSON ({err})") from err
    if not isinstance(record, dict):
        raise RecordError(f"{path} holds a JSON {type(record).__name__}, not a run record")
    return record
