"""Runs as (method label, metrics) pairs, for notebooks and quick looks at run folders.

Paper tables are rendered by :mod:`adacal.reporting.render` from a table spec; this module
keeps the light-weight view the exploration notebook uses: each run folder's records split
into one (label, flat metrics) pair per method it measured, and the headline metric of a set
of runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from adacal.reporting.records import method_label, read_run, split_record
from adacal.reporting.table import headline_metric

__all__ = ["load_runs", "method_label", "runs_metric"]


def runs_metric(runs: Sequence[tuple[str, Mapping[str, object]]]) -> str:
    """The headline metric of a set of runs (``miou`` if any run is a segmentation run)."""
    return "miou" if any(headline_metric(m) == "miou" for _, m in runs) else "acc"


def load_runs(folders: Sequence[Path]) -> list[tuple[str, dict[str, object]]]:
    """(label, metrics) of each run folder's ``metrics.json`` (labels from the configs).

    A run whose status is not ``ok`` keeps its label with `` (<status>)`` appended. Sub-records
    become rows of their own (:func:`adacal.reporting.records.split_record`): an IAT run that
    also evaluated its network with every sample running T steps (``snn/full/*``) gives the
    row without ``+ iat``; a run that also evaluated its network before compression
    (``snn/uncompressed/*``) gives the neuron's row.
    """
    runs = []
    for folder in folders:
        run = read_run(Path(folder))
        status = "" if run.status == "ok" else f" ({run.status})"
        runs += [(entry.label + status, entry.metrics) for entry in split_record(run)]
    return runs
