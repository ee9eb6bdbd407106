"""Table specs: a paper table as data (``experiments/tables/<name>.yaml``).

A spec names the Hydra jobs that fill the table, its rows (each a selection of runs by
method label and config values), its columns (metrics at each T) and the published
reference numbers with their source. Example::

    title: CIFAR-10, thin ResNet-20 (local CPU)
    state: local            # local: rendered on a CPU; gpu: needs a GPU (estimates below)
    hardware: 2-core CPU
    gpu_hours: 0
    metric: acc             # the score column: acc | miou
    timesteps: [2, 4, 8]
    columns: [score, sops, energy_uj, saving, mean_timesteps]
    layout: by_T            # by_T: the rows side by side at each T; by_row: each row over T
    baseline: if            # row id the `saving` column compares against (same T); also
                            # adds the section "Savings at equal accuracy" (equal_accuracy.py)
    burst: [spikes]         # energy conventions of that section: spikes (default) and/or messages
    prepare: []             # commands run once before the sweep (e.g. training the ANN)
    results: experiments/results/cifar10_resnet20_adaptive   # the committed rendering, if any
    jobs:
      - experiment: adaptive_cifar10_resnet20
        sweep: {method: [if, burst]}
    rows:
      - {id: ann, label: ANN, ann: true, select: {experiment: adaptive_cifar10_resnet20}}
      - id: if
        label: SNN Calibration (IF + light)
        select: {experiment: adaptive_cifar10_resnet20, method: if}
        references:
          - {T: 32, value: 93.30, source: snn_calibration_readme}
    sources:
      snn_calibration_readme: "Li et al. 2021, SNN Calibration, README table"

Energy columns come in two conventions (:mod:`adacal.metrics.energy`): ``sops``, ``acs``,
``energy_uj``, ``saving`` and ``saving_vs_ann`` count a burst of k spikes as k ACs per synapse
(``spikes``); ``sops_messages``, ``acs_messages``, ``energy_messages_uj``, ``saving_messages``
and ``saving_vs_ann_messages`` count a non-zero burst as one (``messages``).

A reference without ``T`` applies at every T of its row; ``column`` (default ``score``)
says which column it is quoted for, in that column's display unit (percent for scores and
savings). A row without references shows "not published" in the reference column: a value
we cannot cite is never invented. Validation raises :class:`SpecError` naming the key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adacal import keys

REPO = Path(__file__).resolve().parents[3]
TABLES_DIR = REPO / "experiments" / "tables"
EXPERIMENTS_DIR = REPO / "conf" / "experiment"

SCORES = ("acc", "miou", "pixel_acc")
ROW_KEYS = ("id", "label", "select", "exclude", "ann", "baseline", "references")


@dataclass(frozen=True)
class Column:
    """A table column: metric key stem, header, display scale and decimals."""

    key: str
    header: str
    scale: float = 1.0
    decimals: int = 2


COLUMNS: dict[str, Column] = {
    "score": Column("", "", 100.0),  # the spec's metric; header from the metric
    "pixel_acc": Column("pixel_acc", "pixel acc. (%)", 100.0),
    "sops": Column("sops", "SOPs/image (M)", 1e-6),
    "acs": Column("acs", "ACs/image (M)", 1e-6),
    "spikes": Column("spikes", "spikes/image (k)", 1e-3),
    "rate": Column("rate", "firing rate", 1.0, 4),
    "energy_uj": Column("energy_uj", "energy/image (µJ)", 1.0),
    "saving": Column("saving", "saving vs baseline (%)", 100.0, 1),
    "saving_vs_ann": Column("saving_vs_ann", "saving vs ANN (%)", 100.0, 1),
    "mean_timesteps": Column("mean_timesteps", "mean timesteps", 1.0),
    # the messages convention: a non-zero burst costs one AC per synapse (keys.burst_name)
    "sops_messages": Column("sops_messages", "SOPs/image, messages (M)", 1e-6),
    "acs_messages": Column("acs_messages", "ACs/image, messages (M)", 1e-6),
    "energy_messages_uj": Column("energy_messages_uj", "energy/image, messages (µJ)", 1.0),
    "saving_messages": Column("saving_messages", "saving vs baseline, messages (%)", 100.0, 1),
    "saving_vs_ann_messages": Column(
        "saving_vs_ann_messages", "saving vs ANN, messages (%)", 100.0, 1
    ),
}
# the saving columns (1 − E/E_baseline row) and the energy column each compares
SAVINGS = {"saving": "energy_uj", "saving_messages": "energy_messages_uj"}
# the energy column of each convention (keys.BURSTS)
ENERGY_COLUMNS = {keys.SPIKES: "energy_uj", keys.MESSAGES: "energy_messages_uj"}
SCORE_HEADERS = {"acc": "top-1 (%)", "miou": "mIoU (%)", "pixel_acc": "pixel acc. (%)"}


class SpecError(ValueError):
    """A table spec that cannot be used; the message names the file and the key."""

    def __init__(self, where: str, key: str, message: str) -> None:
        self.where, self.key = where, key
        super().__init__(f"{where}: {key}: {message}")


@dataclass(frozen=True)
class Reference:
    """A published value for one row (at one T, or every T) and column."""

    value: float
    source: str
    T: int | None = None
    column: str = "score"
    note: str = ""


@dataclass(frozen=True)
class Row:
    """A table row: the runs it takes (``select``), ANN or SNN, its references."""

    id: str
    label: str
    select: Mapping[str, Any]
    ann: bool = False
    references: tuple[Reference, ...] = ()
    exclude: Mapping[str, Any] | None = None  # runs to leave out (same keys as select)
    baseline: str | None = None  # row id for this row's `saving` (default: the spec's)


@dataclass(frozen=True)
class Job:
    """One Hydra multirun: an experiment and the sweep over its keys (Cartesian product)."""

    experiment: str
    sweep: Mapping[str, tuple[Any, ...]]
    extra: tuple[str, ...] = ()  # further overrides (e.g. hydra/launcher=slurm)

    def combinations(self) -> list[list[str]]:
        """One override list per job of the sweep (``experiment=…`` first)."""
        keys = list(self.sweep)
        values = [self.sweep[k] for k in keys]
        base = [f"experiment={self.experiment}", *self.extra]
        return [
            base + [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
            for combo in itertools.product(*values)
        ]

    def command(self) -> str:
        """The multirun command line that runs every combination."""
        sweep = " ".join(f"{k}={','.join(map(str, v))}" for k, v in self.sweep.items())
        parts = ["python run.py -m", f"experiment={self.experiment}", *self.extra, sweep]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class TableSpec:
    """A paper table as data (see the module docstring for the YAML layout)."""

    name: str
    title: str
    description: str
    state: str
    hardware: str
    gpu_hours: float | None
    metric: str
    timesteps: tuple[int, ...]
    columns: tuple[str, ...]
    baseline: str | None
    prepare: tuple[str, ...]
    jobs: tuple[Job, ...]
    rows: tuple[Row, ...]
    sources: Mapping[str, str]
    layout: str = "by_T"  # by_T: methods side by side at each T; by_row: each row over T
    results: str | None = None  # the committed rendering (folder under experiments/results/)
    path: Path | None = None
    bursts: tuple[str, ...] = (keys.SPIKES,)  # energy conventions of the equal-accuracy section

    @property
    def experiments(self) -> list[str]:
        return sorted({j.experiment for j in self.jobs})

    def commands(self) -> list[str]:
        return [*self.prepare, *(j.command() for j in self.jobs)]

    def gpu_hours_text(self) -> str:
        """``gpu_hours`` for a reader: none on a CPU table, none extra on a GPU table whose
        runs other tables make, else an estimate."""
        if self.gpu_hours is None:
            return "unknown"
        if self.gpu_hours == 0:
            return "none (CPU)" if self.state == "local" else "none extra (runs of other tables)"
        return f"~{self.gpu_hours:g} (estimate)"

    def header(self, column: str) -> str:
        return SCORE_HEADERS[self.metric] if column == "score" else COLUMNS[column].header


def _list(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def parse_spec(data: Mapping[str, Any], name: str, path: Path | None = None) -> TableSpec:
    """Build and validate a :class:`TableSpec` from its YAML mapping."""
    where = str(path) if path else name
    known = {
        "title", "description", "state", "hardware", "gpu_hours", "metric", "timesteps",
        "columns", "baseline", "prepare", "jobs", "rows", "sources", "layout", "results",
        "burst",
    }  # fmt: skip
    for key in data:
        if key not in known:
            raise SpecError(where, str(key), f"unknown key; known: {', '.join(sorted(known))}")
    for key in ("title", "jobs", "rows", "timesteps"):
        if not data.get(key):
            raise SpecError(where, key, "missing or empty")
    metric = str(data.get("metric", "acc"))
    if metric not in SCORES:
        raise SpecError(where, "metric", f"'{metric}' is not one of {', '.join(SCORES)}")
    columns = tuple(str(c) for c in data.get("columns", ["score"]))
    for c in columns:
        if c not in COLUMNS:
            raise SpecError(where, "columns", f"unknown metric '{c}'; known: {', '.join(COLUMNS)}")
    if "score" not in columns:
        columns = ("score", *columns)
    state = str(data.get("state", "gpu"))
    if state not in ("local", "gpu"):
        raise SpecError(where, "state", f"'{state}' is not one of local, gpu")
    sources = {str(k): str(v) for k, v in (data.get("sources") or {}).items()}
    jobs = []
    for i, job in enumerate(data["jobs"]):
        if not isinstance(job, Mapping) or "experiment" not in job:
            raise SpecError(where, f"jobs[{i}]", "needs an `experiment`")
        sweep = {str(k): _list(v) for k, v in (job.get("sweep") or {}).items()}
        jobs.append(Job(str(job["experiment"]), sweep, tuple(map(str, _list(job.get("extra"))))))
    rows, ids = [], set()
    for i, row in enumerate(data["rows"]):
        key = f"rows[{i}]"
        if not isinstance(row, Mapping) or "id" not in row or "select" not in row:
            raise SpecError(where, key, "needs an `id` and a `select`")
        for k in row:
            if k not in ROW_KEYS:
                raise SpecError(where, f"{key}.{k}", f"unknown key; known: {', '.join(ROW_KEYS)}")
        if row["id"] in ids:
            raise SpecError(where, f"{key}.id", f"'{row['id']}' is used twice")
        ids.add(row["id"])
        refs = []
        for j, ref in enumerate(row.get("references") or []):
            rkey = f"{key}.references[{j}]"
            if "value" not in ref or "source" not in ref:
                raise SpecError(where, rkey, "needs a `value` and a `source`")
            if str(ref["source"]) not in sources:
                raise SpecError(where, f"{rkey}.source", f"'{ref['source']}' is not in `sources`")
            column = str(ref.get("column", "score"))
            if column not in columns:
                raise SpecError(
                    where, f"{rkey}.column", f"'{column}' is not a column of this table"
                )
            T = ref.get("T")
            refs.append(
                Reference(
                    float(ref["value"]),
                    str(ref["source"]),
                    None if T is None else int(T),
                    column,
                    str(ref.get("note", "")),
                )
            )
        rows.append(
            Row(
                str(row["id"]),
                str(row.get("label", row["id"])),
                dict(row["select"]),
                bool(row.get("ann", False)),
                tuple(refs),
                dict(row.get("exclude") or {}),
                None if row.get("baseline") is None else str(row["baseline"]),
            )
        )
    baseline = data.get("baseline")
    named = [("baseline", baseline)] + [
        (f"rows[{i}].baseline", r.baseline) for i, r in enumerate(rows)
    ]
    for key, value in named:
        if value is not None and value not in ids:
            raise SpecError(where, key, f"'{value}' is not a row id ({', '.join(sorted(ids))})")
    layout = str(data.get("layout", "by_T"))
    if layout not in ("by_T", "by_row"):
        raise SpecError(where, "layout", f"'{layout}' is not one of by_T, by_row")
    bursts = tuple(str(b) for b in _list(data.get("burst", keys.SPIKES)))
    for b in bursts:
        if b not in keys.BURSTS:
            raise SpecError(where, "burst", f"'{b}' is not one of {', '.join(keys.BURSTS)}")
    if not bursts or len(set(bursts)) != len(bursts):
        raise SpecError(where, "burst", f"{list(bursts)}: name each convention once")
    gpu_hours = data.get("gpu_hours")
    return TableSpec(
        name=name,
        title=str(data["title"]),
        description=str(data.get("description", "")).strip(),
        state=state,
        hardware=str(data.get("hardware", "")),
        gpu_hours=None if gpu_hours is None else float(gpu_hours),
        metric=metric,
        timesteps=tuple(int(t) for t in data["timesteps"]),
        columns=columns,
        baseline=None if baseline is None else str(baseline),
        prepare=tuple(map(str, _list(data.get("prepare")))),
        jobs=tuple(jobs),
        rows=tuple(rows),
        sources=sources,
        layout=layout,
        results=None if data.get("results") is None else str(data["results"]),
        path=path,
        bursts=bursts,
    )


def check_experiments(spec: TableSpec, experiments_dir: Path = EXPERIMENTS_DIR) -> None:
    """Raise :class:`SpecError` when a job or a row names an experiment with no config."""
    where = str(spec.path or spec.name)
    known = {p.stem for p in experiments_dir.glob("*.yaml")}
    for i, job in enumerate(spec.jobs):
        if job.experiment not in known:
            raise SpecError(
                where,
                f"jobs[{i}].experiment",
                f"no experiment '{job.experiment}' in {experiments_dir}",
            )
    for i, row in enumerate(spec.rows):
        for name in _list(row.select.get("experiment")):
            if str(name) not in known:
                raise SpecError(
                    where,
                    f"rows[{i}].select.experiment",
                    f"no experiment '{name}' in {experiments_dir}",
                )


def load_spec(name_or_path: str | Path, tables_dir: Path = TABLES_DIR) -> TableSpec:
    """Load a spec by name (``experiments/tables/<name>.yaml``) or by path, validated."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = tables_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in tables_dir.glob("*.yaml")))
        raise SpecError(str(name_or_path), "table", f"no such table spec; known tables: {names}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SpecError(
            str(path), "yaml", f"not valid YAML: {' '.join(str(err).split())}"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            str(path), "yaml", "the file must hold a mapping of keys (title, jobs, rows…)"
        )
    spec = parse_spec(data, path.stem, path)
    check_experiments(spec)
    return spec


def all_specs(tables_dir: Path = TABLES_DIR) -> list[TableSpec]:
    """Every spec under ``tables_dir``, sorted by name."""
    return [load_spec(p) for p in sorted(tables_dir.glob("*.yaml"))]


def specs_for_experiment(
    experiment: str, tables_dir: Path = TABLES_DIR, errors: list[SpecError] | None = None
) -> list[TableSpec]:
    """The specs with a job running ``experiment`` (what a multirun of it fills). With an
    ``errors`` list, a spec that does not load is appended there and skipped, so one broken
    spec does not keep the others from rendering."""
    found = []
    for path in sorted(tables_dir.glob("*.yaml")):
        try:
            spec = load_spec(path)
        except SpecError as err:
            if errors is None:
                raise
            errors.append(err)
            continue
        if experiment in spec.experiments:
            found.append(spec)
    return found


INDEX_BEGIN = "<!-- tables:begin (generated by `python experiments/render.py --index`) -->"
INDEX_END = "<!-- tables:end -->"


def index_markdown(specs: list[TableSpec]) -> str:
    """The experiments/README.md index: per table its state, hardware, expected GPU-hours,
    rows and the commands that fill it (generated from the specs, so it cannot drift)."""
    out = [INDEX_BEGIN, ""]
    for spec in specs:
        gpu = spec.gpu_hours_text()
        rows = ", ".join(r.label for r in spec.rows)
        out += [f"### `{spec.name}`: {spec.title}", ""]
        out += [f"- state: **{spec.state}**; hardware: {spec.hardware}; GPU-hours: {gpu}"]
        if spec.results:
            done = f"rendered here: `{spec.results}/`"
        else:
            done = "GPU-only: not run here" if spec.state == "gpu" else "CPU; not rendered here"
        out += [f"- rows: {rows}", f"- T: {', '.join(map(str, spec.timesteps))}", f"- {done}", ""]
        out += [
            "```bash",
            *spec.commands(),
            f"python experiments/render.py {spec.name} <sweep folder(s)>",
            "```",
            "",
        ]
    return "\n".join(out + [INDEX_END])
