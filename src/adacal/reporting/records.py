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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from adacal import keys

GROUPS = (("compression", "none"), ("inference", "fixed"))  # groups named unless off


def method_label(config: Mapping[str, Any], choices: Mapping[str, Any] | None = None) -> str:
    """``if``, ``burst φ=4``, ``adafire + ssc + iat`` … of a run: the neuron, then the
    compression and inference options that are not off (``none``, ``fixed``).

    The options are read from Hydra's ``choices`` (``runtime.choices``, kept in
    ``metrics.json`` under ``choices``) when the record has them, else from the ``name`` of
    each group in the resolved ``config`` (older records). Burst's φ comes from the config.
    """
    choices = choices or {}
    neuron = config.get("neuron", {})
    label = str(_option(choices, config, "neuron", "if"))
    if label == "burst":
        label += f" φ={neuron.get('phi')}"
    for group, off in GROUPS:
        name = str(_option(choices, config, group, off))
        if name != off:
            label += f" + {name}"
    return label


def _option(choices: Mapping[str, Any], config: Mapping[str, Any], group: str, off: str) -> Any:
    """The option of config ``group``: Hydra's choice when recorded, else the config's name."""
    if choices.get(group) is not None:
        return choices[group]
    return config.get(group, {}).get("name", off)


@dataclass(frozen=True, eq=False)  # identity: one record per folder
class RunRecord:
    """One job folder: its status, resolved config, flat metrics, Hydra overrides and
    Hydra's config-group ``choices`` (``{"method": "adafire_ssc_iat", "neuron": ...}``;
    empty for records written before they were kept)."""

    folder: Path
    status: str  # ok | failed | running | missing
    config: dict[str, Any]
    metrics: dict[str, Any]
    overrides: tuple[str, ...] = ()
    error: str | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    finished_T: tuple[int, ...] | None = None  # None: not recorded (every scored T finished)

    @property
    def method(self) -> str:
        """The method label (:func:`method_label` of the config and the choices)."""
        return method_label(self.config, self.choices)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def timesteps(self) -> list[int]:
        """The T this record has a score for (any ``snn/test/<name>_T{T}`` key)."""
        found = {
            k.T
            for text in self.metrics
            if keys.under(text, keys.TEST) and (k := keys.parse(text)) and not k.anytime
        }
        return sorted(found)

    def partial_timesteps(self) -> list[int]:
        """The T with some test passes (any ``snn/.../<name>_T{T}`` key: the network before
        compression, a budget, the main pass) but not finished: a run stopped inside that T."""
        if self.finished_T is None:
            return []
        seen = {k.T for k in keys.parsed(self.metrics) if k.prefix.startswith("snn/")}
        return sorted(T for T in seen if T not in self.finished_T)


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
        metrics=if_messages(dict(record.get("metrics", {})), config),
        overrides=tuple(overrides),
        error=record.get("error"),
        choices=dict(record.get("choices") or {}),
        finished_T=_finished(record.get("finished_T")),
    )


def _finished(value: Any) -> tuple[int, ...] | None:
    """A record's ``finished_T`` list as a tuple (None when absent or not a list)."""
    return tuple(int(T) for T in value) if isinstance(value, list) else None


# the energy names whose messages form an IF network shares (adacal.keys.burst_name)
_ENERGY_NAMES = ("acs", "sops", "energy_uj", "saving_vs_ann", "saving_vs_baseline")


def if_messages(metrics: dict[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with the ``messages`` energy keys of IF networks filled in where a record
    written before that convention lacks them: an IF neuron fires at most one spike per step,
    so each spike is one message and the two conventions agree exactly. Applies to the
    SNN Calibration baseline (``snn/baseline/``, always IF) and, for a run whose neuron is IF
    without compression or exits, to its ``snn/test/`` keys; existing keys are kept."""
    neuron = str((config.get("neuron") or {}).get("_target_", ""))
    plain_if = neuron.endswith(".IFNeuron") and not (config.get("compression") or {}).get(
        "_target_"
    )
    plain_if = plain_if and not (config.get("inference") or {}).get("_target_")
    prefixes = (keys.BASELINE, keys.TEST) if plain_if else (keys.BASELINE,)
    out = dict(metrics)
    for text, value in metrics.items():
        k = keys.parse(text)
        if k is None or k.prefix not in prefixes or k.cls is not None or k.step is not None:
            continue
        if k.name in _ENERGY_NAMES:
            twin = keys.Key(k.prefix, keys.burst_name(k.name, keys.MESSAGES), k.T, site=k.site)
            out.setdefault(twin.text(), value)
    return out


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
    without ``+ iat``) become entries of their own, and so does each replayed exit policy
    ``snn/replay/<point>/*`` (:func:`replayed_run`) and each further compression budget
    ``snn/budget/<point>/*`` (:func:`budget_run`; every sample T steps, so without ``+ iat``);
    keys outside ``snn/test/`` (ANN, baseline, timing) are shared by all entries of the run.
    """
    label = run.method
    metrics = run.metrics
    shared = {k: v for k, v in metrics.items() if not keys.under(k, keys.TEST)}
    entries = []
    for prefix, name in (
        (keys.UNCOMPRESSED, label.split(" + ")[0]),
        (keys.FULL, label.replace(" + iat", "")),
    ):
        part = {moved: v for k, v in metrics.items() if (moved := keys.move(k, prefix, keys.TEST))}
        if part:
            entries.append(Entry(name, run, {**shared, **part}))
    for point in keys.replay_points(metrics):
        prefix = keys.replay(point)
        part = {moved: v for k, v in metrics.items() if (moved := keys.move(k, prefix, keys.TEST))}
        entries.append(Entry(label, replayed_run(run, point), {**shared, **part}))
    for point in keys.budget_points(metrics):
        prefix = keys.budget(point)
        part = {moved: v for k, v in metrics.items() if (moved := keys.move(k, prefix, keys.TEST))}
        entries.append(
            Entry(label.replace(" + iat", ""), budget_run(run, point), {**shared, **part})
        )
    entries.append(Entry(label, run, dict(metrics)))
    return entries


def replayed_run(run: RunRecord, point: str) -> RunRecord:
    """``run`` as seen by a replayed exit policy (``snn/replay/<point>``): its config's
    ``inference`` carries that policy's ``confidence``, ``a`` and ``b`` (read off the name
    ``<confidence>_b<b>``, a = 1 − b) and ``replayed: true``,
    so table rows select it like a run of its own."""
    inference = dict(run.config.get("inference") or {})
    confidence, _, b = point.rpartition("_b")
    try:
        inference.update(confidence=confidence, b=float(b), a=1 - float(b))
    except ValueError:
        inference.update(confidence=point)
    inference["replayed"] = True
    return replace(run, config={**run.config, "inference": inference})


def budget_run(run: RunRecord, point: str) -> RunRecord:
    """``run`` as seen by a further compression budget (``snn/budget/rho<ρ>``): its config's
    ``compression.rho`` is ρ and ``compression.budget_point`` is true, so table rows select it
    like a run with that budget (its label, without ``+ iat``, says it ran every sample T
    steps, as the ``snn/full`` entry)."""
    compression = dict(run.config.get("compression") or {})
    try:
        compression["rho"] = float(point.removeprefix("rho"))
    except ValueError:
        compression["point"] = point
    compression["budget_point"] = True
    return replace(run, config={**run.config, "compression": compression})


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
