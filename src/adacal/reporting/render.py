"""Render a table spec from sweep folders: Markdown and CSV with our value, the reference and
the difference, and every run that failed, is incomplete or is missing listed.

Per (row, T) the runs a row selects are grouped by seed; a seed's value is the run's
metric (runs of one seed for different T merge). The cell is the mean over seeds, with the
sample standard deviation (n − 1) when more than one seed ran::

    mean = Σ_s v_s / n,   std = sqrt(Σ_s (v_s − mean)² / (n − 1)).

The ``saving`` column is 1 − E/E_b per seed, E_b the energy of the spec's ``baseline`` row
at the same T (the same seed when it ran, else the baseline's mean), or, without a baseline
row, the run's own ``snn/baseline/energy_uj_T{T}``; ``saving_messages`` is the same with the
``messages`` energies (``energy_messages_uj``). Δ = ours − reference, in the column's
display unit (percentage points for scores and savings).

With a baseline row (the spec's ``baseline`` or a row's), the Markdown ends with the section
"Savings at equal accuracy" (:mod:`adacal.reporting.equal_accuracy`): per reference accuracy
and energy convention of the spec's ``burst``, each row's cheapest measured point reaching it.

Runs that did not finish (status ``failed``, ``running``, or a job the launcher recorded as
killed) still give the T they measured before they stopped, but a finished run of the same
seed wins, and every Markdown cell that uses such a value is marked with :data:`INCOMPLETE`
(explained under the table, the runs listed below it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from adacal import keys
from adacal.metrics.energy import saving
from adacal.reporting import equal_accuracy as eq
from adacal.reporting.records import Entry, RunRecord, find_runs, matches, split_record
from adacal.reporting.rendered import Cell, Line, Problems, Rendered
from adacal.reporting.spec import (
    COLUMNS,
    ENERGY_COLUMNS,
    SAVINGS,
    Reference,
    Row,
    SpecError,
    TableSpec,
)
from adacal.reporting.table import _finite

NOT_PUBLISHED = "not published"
MISSING = "-"
INCOMPLETE = "†"  # a value from a run that did not finish
INCOMPLETE_NOTE = (
    f"{INCOMPLETE} uses a value from a run that did not finish (failed, killed, cancelled or "
    "still running; listed below): what it measured before it stopped."
)


def _in_order(entries: Sequence[Entry]) -> list[Entry]:
    """Runs that did not finish first, then finished ones, each in folder order: a later run
    fills further T, and a finished run's value wins over an unfinished one's."""
    return sorted(entries, key=lambda e: (e.run.status == "ok", str(e.run.folder)))


def _by_seed(entries: Sequence[Entry]) -> dict[Any, dict[str, Any]]:
    """Merged metrics per seed (see :func:`_in_order`), seeds in folder order."""
    merged: dict[Any, dict[str, Any]] = {}
    for e in sorted(entries, key=lambda e: str(e.run.folder)):
        merged.setdefault(e.run.seed, {})
    for e in _in_order(entries):
        merged.setdefault(e.run.seed, {}).update(e.metrics)
    return merged


def _unfinished_keys(entries: Sequence[Entry]) -> dict[Any, set[str]]:
    """Per seed, the metric keys whose merged value comes from a run not ``ok``."""
    keys: dict[Any, set[str]] = {}
    for e in _in_order(entries):
        mine = keys.setdefault(e.run.seed, set())
        if e.run.status == "ok":
            mine.difference_update(e.metrics)
        else:
            mine.update(e.metrics)
    return keys


def _key(spec: TableSpec, row: Row, column: str, T: int | None) -> str | None:
    """The metric key of ``column`` (``saving`` excluded) for a row at T."""
    name = spec.metric if column == "score" else COLUMNS[column].key
    if row.ann:
        return {
            "score": keys.ann_key(name),
            "pixel_acc": keys.ann_key("pixel_acc"),
            "energy_uj": keys.ANN_ENERGY_UJ,
            "energy_messages_uj": keys.ANN_ENERGY_UJ,  # MACs only: the same in both conventions
        }.get(column)
    return None if T is None else keys.key(keys.TEST, name, T)


def _raw(spec: TableSpec, row: Row, column: str, T: int | None, m: dict[str, Any]) -> float | None:
    """The undisplayed value of ``column`` for one seed's metrics (``saving`` excluded)."""
    key = _key(spec, row, column, T)
    return None if key is None else _finite(m.get(key))


def _own(m: dict[str, Any], key: str | None) -> float | None:
    """The run's own value under ``key`` (None without a key or a finite value)."""
    return None if key is None else _finite(m.get(key))


Bases = Mapping[str, tuple[dict[Any, float] | None, bool]]


def _line(
    spec: TableSpec, row: Row, T: int | None, entries: list[Entry], bases: Bases | None = None
) -> Line:
    """One (row, T); ``bases``: per saving column (:data:`SAVINGS`) the baseline row's energy
    per seed (None: each run's own) and whether some of it comes from a run that did not
    finish."""
    chosen = [e for e in entries if matches(e, row.select, row.exclude)]
    seeds = _by_seed(chosen)
    unfinished = _unfinished_keys(chosen)
    cells = {}
    for column in spec.columns:
        values = []
        marked = False
        for seed, m in seeds.items():
            if column in SAVINGS:
                base, base_unfinished = (bases or {}).get(column, (None, False))
                energy_column = SAVINGS[column]
                energy = _raw(spec, row, energy_column, T, m)
                own_key = COLUMNS[energy_column].key
                own = None if T is None else keys.key(keys.BASELINE, own_key, T)
                ref = base.get(seed, base.get("mean")) if base is not None else _own(m, own)
                raw = None if row.ann or energy is None or not ref else _finite(saving(energy, ref))
                used = {_key(spec, row, energy_column, T), own if base is None else None}
                from_base = base is not None and base_unfinished
            else:
                raw = _raw(spec, row, column, T, m)
                used, from_base = {_key(spec, row, column, T)}, False
            if raw is not None:
                values.append(raw * COLUMNS[column].scale)
                marked = marked or from_base or bool(used & unfinished.get(seed, set()))
        cells[column] = Cell(tuple(values), marked)
    refs = {
        c: tuple(r for r in row.references if r.column == c and (r.T is None or r.T == T))
        for c in spec.columns
    }
    runs = tuple(dict.fromkeys(e.run for e in chosen))
    suppliers: dict[Any, list[RunRecord]] = {}
    for e in chosen:
        if _raw(spec, row, "score", T, e.metrics) is not None:
            suppliers.setdefault(e.run.seed, []).append(e.run)
    dups = tuple(r for group in suppliers.values() if len(group) > 1 for r in group)
    return Line(row, T, cells, refs, runs, dups if not row.ann else ())


def _baseline_energy(
    spec: TableSpec, row_id: str | None, T: int, entries: list[Entry], column: str = "energy_uj"
) -> tuple[dict[Any, float] | None, bool]:
    """Energy (the energy ``column``) of the baseline row at T per seed, and its mean under
    ``"mean"`` (None without a baseline row: the runs' own ``snn/baseline/energy_uj_T{T}`` is
    used), and whether any of it comes from a run that did not finish."""
    if row_id is None:
        return None, False
    row = next(r for r in spec.rows if r.id == row_id)
    chosen = [e for e in entries if matches(e, row.select, row.exclude)]
    unfinished = _unfinished_keys(chosen)
    out: dict[Any, float] = {}
    marked = False
    for seed, m in _by_seed(chosen).items():
        energy = _raw(spec, row, column, T, m)
        if energy:
            out[seed] = energy
            marked = marked or _key(spec, row, column, T) in unfinished.get(seed, set())
    if out:
        out["mean"] = statistics.fmean(out.values())
    return out, marked


def table_lines(spec: TableSpec, entries: list[Entry]) -> list[Line]:
    """Every (row, T) of the spec, ANN rows first and once, in the spec's layout."""
    lines = [_line(spec, r, None, entries) for r in spec.rows if r.ann]
    snn = [r for r in spec.rows if not r.ann]
    if spec.layout == "by_T":
        order = [(r, T) for T in spec.timesteps for r in snn]
    else:
        order = [(r, T) for r in snn for T in spec.timesteps]
    for r, T in order:
        bases = {
            c: _baseline_energy(spec, r.baseline or spec.baseline, T, entries, SAVINGS[c])
            for c in spec.columns
            if c in SAVINGS
        }
        lines.append(_line(spec, r, T, entries, bases))
    return lines


def _points(lines: Sequence[Line], energy: str) -> list[eq.Point]:
    """The measured points of one row's lines (a score and an ``energy`` column value;
    steps: the mean timesteps when recorded, else T)."""
    out = []
    for line in lines:
        score, cost = line.cells["score"], line.cells[energy]
        if line.T is None or score.mean is None or cost.mean is None:
            continue
        steps = line.cells["mean_timesteps"].mean
        incomplete = score.incomplete or cost.incomplete
        out.append(
            eq.Point(line.T, line.T if steps is None else steps, score.mean, cost.mean, incomplete)
        )
    return out


def _ann_score(spec: TableSpec, row: Row, entries: list[Entry]) -> float | None:
    """The ANN's score (display units, mean over seeds) recorded by ``row``'s runs."""
    ann = dataclasses.replace(row, ann=True, references=())
    return (
        _line(dataclasses.replace(spec, columns=("score",)), ann, None, entries).cells["score"].mean
    )


def equal_accuracy_comparisons(
    spec: TableSpec, entries: list[Entry]
) -> tuple[list[eq.Comparison], list[str]]:
    """Per energy convention of ``spec.bursts`` and baseline row (the spec's ``baseline`` or a
    row's), the comparisons of its rows at the two reference accuracies
    (:func:`adacal.reporting.equal_accuracy.targets`); and notes for what could not be
    compared. Nothing without a baseline row."""
    groups: dict[str, list[Row]] = {}
    for row in spec.rows:
        if not row.ann and (base := row.baseline or spec.baseline) is not None:
            groups.setdefault(base, []).append(row)
    if not groups:
        return [], []
    energies = tuple(ENERGY_COLUMNS[b] for b in spec.bursts)
    sub = dataclasses.replace(spec, columns=("score", "mean_timesteps", *energies))
    lines = table_lines(sub, entries)
    by_row: dict[str, list[Line]] = {}
    for line in lines:
        by_row.setdefault(line.row.id, []).append(line)
    rows = {r.id: r for r in spec.rows}
    comparisons, notes = [], []
    for burst, energy in zip(spec.bursts, energies, strict=True):
        for base_id, members in groups.items():
            base = rows[base_id]
            group = [base, *(r for r in members if r.id != base_id)]
            points = [(r.id, r.label, _points(by_row.get(r.id, []), energy)) for r in group]
            ann = _ann_score(spec, base, entries)
            found = eq.targets(points[0][2], ann, base.label)
            if not points[0][2]:
                notes.append(f"{base.label} ({burst}): no measured point (score and energy).")
            if ann is None:
                notes.append(f"{base.label}: its runs record no ANN score (no ANN − 1 pt).")
            comparisons += [eq.compare(points, base_id, t, burst) for t in found]
    return comparisons, list(dict.fromkeys(notes))


def _fmt(cell: Cell, decimals: int) -> str:
    if cell.mean is None:
        return MISSING
    text = f"{cell.mean:.{decimals}f}"
    text = text if cell.std is None else f"{text} ± {cell.std:.{decimals}f}"
    return text + INCOMPLETE if cell.incomplete else text


def _headers(spec: TableSpec) -> list[str]:
    headers = ["row", "T"]
    for c in spec.columns:
        headers.append(spec.header(c))
        if _has_refs(spec, c):
            headers += ["reference", "Δ"]
    return headers + ["seeds"]


def _has_refs(spec: TableSpec, column: str) -> bool:
    return any(r.column == column for row in spec.rows for r in row.references)


def _source_numbers(spec: TableSpec) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for row in spec.rows:
        for ref in row.references:
            numbers.setdefault(ref.source, len(numbers) + 1)
    return numbers


def _ref_cells(
    cell: Cell, refs: tuple[Reference, ...], decimals: int, numbers: dict[str, int]
) -> list[str]:
    if not refs:
        return [NOT_PUBLISHED, MISSING]
    quoted = " / ".join(f"{r.value:.{decimals}f} [{numbers[r.source]}]" for r in refs)
    if cell.mean is None:
        return [quoted, MISSING]
    return [quoted, " / ".join(f"{cell.mean - r.value:+.{decimals}f}" for r in refs)]


def markdown_rows(spec: TableSpec, lines: Sequence[Line]) -> list[list[str]]:
    """The table body as strings (the columns of the header)."""
    numbers = _source_numbers(spec)
    body = []
    for line in lines:
        cells = [line.row.label, MISSING if line.T is None else str(line.T)]
        for c in spec.columns:
            decimals = COLUMNS[c].decimals
            cells.append(_fmt(line.cells[c], decimals))
            if _has_refs(spec, c):
                cells += _ref_cells(line.cells[c], line.references[c], decimals, numbers)
        cells.append(str(max((cell.n for cell in line.cells.values()), default=0)))
        body.append(cells)
    return body


def _markdown_table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    align = ["---" if i == 0 else "---:" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(out)


def _where(run: RunRecord, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            rel = run.folder.relative_to(root)
            return str(Path(root.name) / rel)
        except ValueError:
            continue
    return str(run.folder)


def _run_line(run: RunRecord, roots: Sequence[Path]) -> str:
    overrides = (
        " ".join(o for o in run.overrides if not o.startswith("hydra")) or "no overrides recorded"
    )
    partial = run.partial_timesteps()
    finished = [T for T in run.timesteps() if T not in partial]
    done = ", ".join(map(str, finished)) or "none"
    if partial:
        done += f"; stopped inside T = {', '.join(map(str, partial))}, its finished passes kept"
    if run.status == "failed":
        detail = f"failed: {run.error or 'no error recorded'}"
        if run.timesteps() or partial:
            detail += f" (T done: {done})"
    elif run.status == "running":
        detail = f"incomplete (status running: still running, or killed; T done: {done})"
    else:
        detail = "missing: no metrics.json (killed before its first T, or not started)"
    return f"- `{_where(run, roots)}` ({overrides}): {detail}"


def _override(text: str) -> tuple[str, str]:
    """``key=value``, the value read as YAML (``false`` == ``False``, ``[2, 4]`` == ``[2,4]``)."""
    key, _, value = str(text).partition("=")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key.strip(), repr(parsed)


def find_problems(spec: TableSpec, runs: list[RunRecord], lines: list[Line]) -> Problems:
    """Runs not ``ok``, sweep jobs never started, empty cells, runs no row used."""
    problems = Problems(runs=[r for r in runs if r.status != "ok"])
    used = {r.folder for line in lines for r in line.runs}
    problems.unused = [r for r in runs if r.status == "ok" and r.folder not in used]
    recorded = [{_override(o) for o in r.overrides} for r in runs if r.overrides]
    if recorded:  # hydra job folders: which jobs of the spec's sweeps have none
        for job in spec.jobs:
            for combo in job.combinations():
                # the launcher is not a task override; Hydra records false as False
                task = {_override(o) for o in combo if not o.startswith("hydra")}
                if not any(task <= have for have in recorded):
                    problems.not_run.append(" ".join(combo))
    for line in lines:
        if line.duplicates:
            where = ", ".join(f"`{r.folder.name}`" for r in line.duplicates)
            problems.duplicates.append(f"{line.row.label} at T={line.T}: {where}")
        if line.cells["score"].mean is None:
            problems.empty.append(
                f"{line.row.label}" + ("" if line.T is None else f" at T={line.T}")
            )
    return problems


def _notes(spec: TableSpec) -> list[str]:
    numbers = _source_numbers(spec)
    out = [f"[{n}] {spec.sources[key]}" for key, n in numbers.items()]
    seen = set()
    for row in spec.rows:
        for ref in row.references:
            if ref.note and ref.note not in seen:
                seen.add(ref.note)
                out.append(f"[{numbers[ref.source]}] note: {ref.note}")
    return out


def to_markdown(
    spec: TableSpec,
    lines: list[Line],
    problems: Problems,
    roots: Sequence[Path],
    section: str = "",
) -> str:
    """The rendered Markdown: title, how to fill it, the table, references, ``section`` (the
    savings at equal accuracy), run problems."""
    gpu = spec.gpu_hours_text()
    parts = [f"# {spec.title}", ""]
    if spec.description:
        parts += [spec.description, ""]
    parts += [
        f"State: {spec.state}. Hardware: {spec.hardware or 'unspecified'}. GPU-hours: {gpu}.",
        "",
    ]
    parts += ["Filled by:", "", "```bash", *spec.commands(), "```", ""]
    parts += [_markdown_table(_headers(spec), markdown_rows(spec, lines)), ""]
    if any(cell.incomplete and cell.n for line in lines for cell in line.cells.values()):
        parts += [INCOMPLETE_NOTE, ""]
    notes = _notes(spec)
    if notes:
        parts += ["References:", "", *[f"- {n}" for n in notes], ""]
    if section:
        parts += [section]
    counts: dict[str, int] = {}
    for run in problems.runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    total = len(
        {r.folder for line in lines for r in line.runs}
        | {r.folder for r in problems.runs}
        | {r.folder for r in problems.unused}
    )
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "all ok"
    parts += [f"Runs: {total} found ({summary})."]
    if problems.runs:
        parts += ["", "Not in the table or incomplete:", ""]
        parts += [_run_line(r, roots) for r in problems.runs]
    if problems.not_run:
        parts += ["", "Sweep jobs with no run folder:", ""] + [f"- `{c}`" for c in problems.not_run]
    if problems.empty:
        parts += ["", "Empty cells (no run gave a value): " + "; ".join(problems.empty) + "."]
    if problems.duplicates:
        parts += [
            "",
            "Cells given by more than one run of the same seed (the last folder's "
            "value is shown; narrow the row's `select`): " + "; ".join(problems.duplicates) + ".",
        ]
    if problems.unused:
        parts += [
            "",
            "Runs no row selected: "
            + ", ".join(f"`{_where(r, roots)}`" for r in problems.unused)
            + ".",
        ]
    return "\n".join(parts) + "\n"


def table_records(spec: TableSpec, lines: list[Line]) -> list[dict[str, Any]]:
    """One record per (row, T) in display units: mean, std and n per column, and the first
    reference, Δ and source where one is quoted (None where there is no value). The CSV file
    and the W&B table are both written from these."""
    records = []
    for line in lines:
        record: dict[str, Any] = {"row_id": line.row.id, "row": line.row.label, "T": line.T}
        record["seeds"] = max((cell.n for cell in line.cells.values()), default=0)
        for c in spec.columns:
            cell = line.cells[c]
            record[c], record[f"{c}_std"] = cell.mean, cell.std
            if _has_refs(spec, c):
                first = next(iter(line.references[c]), None)
                delta = None if first is None or cell.mean is None else cell.mean - first.value
                record[f"{c}_reference"] = None if first is None else first.value
                record[f"{c}_delta"] = delta
                record[f"{c}_source"] = "" if first is None else spec.sources[first.source]
        records.append(record)
    return records


def to_csv(records: list[dict[str, Any]]) -> str:
    """:func:`table_records` as CSV (numbers with 6 significant digits, None empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(records[0]) if records else [])
    for record in records:
        writer.writerow(
            "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
            for v in record.values()
        )
    return buf.getvalue()


def render(
    spec: TableSpec,
    roots: Sequence[str | Path],
    out_dir: str | Path | None = None,
    plots: bool = True,
    extra_runs: Sequence[RunRecord] = (),
) -> Rendered:
    """Render ``spec`` from the runs under ``roots`` (and ``extra_runs``, e.g. from W&B);
    write ``<name>.md``/``.csv`` (and the PNG plots) into ``out_dir`` when given. Raises
    :class:`SpecError` when there is no run folder at all."""
    roots = [Path(r) for r in roots]
    runs = find_runs(roots) + list(extra_runs)
    if not runs:
        where = ", ".join(map(str, roots))
        raise SpecError(
            where,
            "sweep folder",
            "no run folder (metrics.json or .hydra/) found; fill it first with: "
            + spec.commands()[-1],
        )
    entries = [e for run in runs for e in split_record(run)]  # unfinished runs: marked cells
    lines = table_lines(spec, entries)
    problems = find_problems(spec, runs, lines)
    records = table_records(spec, lines)
    comparisons, notes = equal_accuracy_comparisons(spec, entries)
    section = eq.section_markdown(comparisons, spec.header("score"), notes, INCOMPLETE)
    markdown = to_markdown(spec, lines, problems, roots, section)
    rendered = Rendered(spec, lines, problems, markdown, to_csv(records), records, entries)
    rendered.comparisons = comparisons
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rendered.files["markdown"] = out / f"{spec.name}.md"
        rendered.files["csv"] = out / f"{spec.name}.csv"
        rendered.files["markdown"].write_text(rendered.markdown)
        rendered.files["csv"].write_text(rendered.csv)
        if plots:
            from adacal.reporting.plots import write_plots  # matplotlib only when drawing

            rendered.files.update(write_plots(rendered, out))
    return rendered
