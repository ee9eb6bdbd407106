"""Run records of a sweep: every job folder under one or more roots, with its status.

A job folder is one holding ``metrics.json`` or a Hydra ``.hydra/`` folder. Its status is

- ``ok``: ``metrics.json`` says so;
- ``failed``: ``metrics.json`` written by :func:`~adacal.reporting.write_failure` (the error
  is kept);
- ``running``: a partial record (the run stopped, or still runs, after some T);
- ``failed`` also for a job the launcher found dead (killed, cancelled, out of time): it
  keeps the job's metrics and says what stopped it under ``stopped``
  (``hydra_plugins.adacal_submitit``);
- ``missing``: a ``.hydra/`` folder and no ``metrics.json`` (killed before its first T, or
  not started yet); its config comes from ``.hydra/config.yaml``.

A record expands into one *entry* per method it measured (:func:`split_record`): an AdaFire
+ SSC run that also evaluated the network before compression gives ``adafire`` and
``adafire + ssc``; an IAT run that also ran every sample to T gives the rows with and
without ``+ iat``. Pure functions over dicts; only :func:`find_runs` reads files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def method_label(config: Mapping[str, Any]) -> str:
    """``if``, ``burst φ=4``, ``adafire + ssc + iat`` … from a resolved run config."""
    neuron = config.get("neuron", {})
    label = str(neuron.get("name", "if"))
    if label == "burst":
        label += f" φ={neuron.get('phi')}"
    for group, off in (("compression", "none"), ("inference", "fixed")):
        name = str(config.get(group, {}).get("name", off))
        if name != off:
            label += f" + {name}"
    return label


@dataclass(frozen=True, eq=False)  # identity: one record per folder
class RunRecord:
    """One job folder: its status, resolved config, flat metrics and Hydra overrides."""

    folder: Path
    status: str  # ok | failed | running | missing
    config: dict[str, Any]
    metrics: dict[str, Any]
    overrides: tuple[str, ...] = ()
    error: str | None = None

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def timesteps(self) -> list[int]:
        """The T this record has a score for (any ``snn/test/<name>_T{T}`` key)."""
        found = set()
        for key in self.metrics:
            if key.startswith("snn/test/") and "_T" in key and "/anytime_" not in key:
                tail = key.rsplit("_T", 1)[1]
                if tail.isdigit():
                    found.add(int(tail))
        return sorted(found)


@dataclass(frozen=True)
class Entry:
    """One method measured by one run: the label and the metrics under ``snn/test/``."""

    label: str
    run: RunRecord
    metrics: dict[str, Any] = field(repr=False)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_run(folder: Path) -> RunRecord:
    """The :class:`RunRecord` of one job folder (``metrics.json`` and/or ``.hydra/``)."""
    overrides = _read_yaml(folder / ".hydra" / "overrides.yaml") or []
    path = folder / "metrics.json"
    if not path.is_file():
        config = _read_yaml(folder / ".hydra" / "config.yaml") or {}
        return RunRecord(folder, "missing", config, {}, tuple(overrides))
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return RunRecord(folder, "failed", {}, {}, tuple(overrides), f"unreadable: {err}")
    if not isinstance(record, dict):
        error = f"unreadable: a JSON {type(record).__name__}, not a run record"
        return RunRecord(folder, "failed", {}, {}, tuple(overrides), error)
    config = record.get("config") or _read_yaml(folder / ".hydra" / "config.yaml") or {}
    return RunRecord(
        folder=folder,
        status=str(record.get("status", "failed")),
        config=dict(config),
        metrics=dict(record.get("metrics", {})),
        overrides=tuple(overrides),
        error=record.get("error"),
    )


def find_runs(roots: Sequence[str | Path]) -> list[RunRecord]:
    """Every job folder under ``roots`` (each a sweep folder, a run folder or a parent of
    several), sorted by path. Folders named ``.submitit`` or ``wandb`` are not searched."""
    folders: set[Path] = set()
    for root in map(Path, roots):
        if not root.exists():
            continue
        for marker in [root / "metrics.json", *root.rglob("metrics.json")]:
            if marker.is_file() and not _hidden(marker.parent, root):
                folders.add(marker.parent)
        for marker in [root / ".hydra", *root.rglob(".hydra")]:
            if marker.is_dir() and not _hidden(marker.parent, root):
                folders.add(marker.parent)
    return [read_run(f) for f in sorted(folders)]


def _hidden(folder: Path, root: Path) -> bool:
    parts = folder.relative_to(root).parts if folder != root else ()
    return any(p in (".submitit", "wandb") or p.startswith(".") for p in parts)


def split_record(run: RunRecord) -> list[Entry]:
    """The methods one run measured, as entries whose scores are under ``snn/test/``.

    Sub-records ``snn/uncompressed/*`` (the network before SSC: the neuron's label alone)
    and ``snn/full/*`` (an IAT network with every sample running T steps: the label
    without ``+ iat``) become entries of their own; keys outside ``snn/test/`` (ANN,
    baseline, timing) are shared by all entries of the run.
    """
    label = method_label(run.config)
    metrics = run.metrics
    shared = {k: v for k, v in metrics.items() if not k.startswith("snn/test/")}
    entries = []
    for prefix, name in (
        ("snn/uncompressed/", label.split(" + ")[0]),
        ("snn/full/", label.replace(" + iat", "")),
    ):
        part = {
            k.replace(prefix, "snn/test/"): v for k, v in metrics.items() if k.startswith(prefix)
        }
        if part:
            entries.append(Entry(name, run, {**shared, **part}))
    entries.append(Entry(label, run, dict(metrics)))
    return entries


def config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"`` (``experiment`` reads ``experiment_name``);
    a :class:`KeyError` when absent."""
    if dotted == "experiment":
        dotted = "experiment_name"
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def matches(
    entry: Entry, select: Mapping[str, Any], exclude: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``entry`` satisfies every ``select`` item and no ``exclude`` item: ``method``
    compares the method label; any other key is a dotted config path compared as a string
    (``seed: 0`` matches ``0``); a list of values means any of them. A key a record lacks
    (an older config) fails ``select`` and passes ``exclude``."""
    for key, unwanted in (exclude or {}).items():
        if _has(entry, key, unwanted):
            return False
    return all(_has(entry, key, wanted) for key, wanted in select.items())


def _has(entry: Entry, key: str, wanted: Any) -> bool:
    """Whether ``entry``'s ``key`` (``method`` or a dotted config path) is one of ``wanted``."""
    options = wanted if isinstance(wanted, (list, tuple)) else [wanted]
    if key == "method":
        have = entry.label
    else:
        try:
            have = config_value(entry.run.config, key)
        except KeyError:
            return False
    return str(have) in {str(o) for o in options}


WANDB_STATUS = {"finished": "ok", "running": "running", "crashed": "failed", "failed": "failed"}


def wandb_runs(project: str, group: str, api: Any = None) -> list[RunRecord]:
    """The runs of a W&B ``group`` in ``project`` (``entity/project``) as records (online).

    Config and summary come from W&B (the pipeline logs the resolved config and the flat
    metrics); the state maps finished → ok, running → running, crashed/failed → failed.
    ``api`` defaults to ``wandb.Api()``.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    records = []
    for run in api.runs(project, filters={"group": group}):
        summary = {k: v for k, v in dict(run.summary).items() if not k.startswith("_")}
        status = WANDB_STATUS.get(str(run.state), "failed")
        error = None if status != "failed" else f"W&B state {run.state}"
        config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
        records.append(RunRecord(Path(f"wandb/{run.id}"), status, config, summary, (), error))
    return records
