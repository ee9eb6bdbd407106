"""What :func:`adacal.reporting.render.render` produces: cells, lines, problems, the result.

Plain dataclasses, shared by the renderer and the plots
(:mod:`adacal.reporting.render`, :mod:`adacal.reporting.plots`) so neither imports the other.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adacal.reporting.equal_accuracy import Comparison
from adacal.reporting.records import Entry, RunRecord
from adacal.reporting.spec import Reference, Row, TableSpec


@dataclass(frozen=True)
class Cell:
    """One column of one (row, T): the per-seed values in display units."""

    values: tuple[float, ...]
    incomplete: bool = False  # some value comes from a run whose status is not "ok"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Line:
    """One rendered line: a row at one T (``None`` for ANN rows) and its cells."""

    row: Row
    T: int | None
    cells: dict[str, Cell]
    references: dict[str, tuple[Reference, ...]]
    runs: tuple[RunRecord, ...]
    duplicates: tuple[RunRecord, ...] = ()  # runs of one seed that both gave the score


@dataclass
class Problems:
    """What a reader must know before trusting the table."""

    runs: list[RunRecord] = field(default_factory=list)  # failed / running / missing
    not_run: list[str] = field(default_factory=list)  # sweep jobs with no folder at all
    empty: list[str] = field(default_factory=list)  # (row, T) with no value
    duplicates: list[str] = field(default_factory=list)  # (row, T) given twice for a seed
    unused: list[RunRecord] = field(default_factory=list)  # ok runs no row selected


@dataclass
class Rendered:
    """The outcome of :func:`render`: lines, problems, Markdown and CSV text."""

    spec: TableSpec
    lines: list[Line]
    problems: Problems
    markdown: str
    csv: str
    records: list[dict[str, Any]]  # the CSV's rows as numbers (what W&B logs)
    entries: list[Entry]
    files: dict[str, Path] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)  # savings at equal accuracy
