"""The Adaptive Calibration comparison table: methods side by side at each T.

Each run is one method (neuron × compression × inference); its ``metrics.json`` gives,
per fitted T, ``snn/test/acc_T{T}`` (``miou_T{T}`` for segmentation),
``snn/test/sops_T{T}`` (synaptic operations per image: ACs + dense MACs × steps),
``snn/test/energy_uj_T{T}`` and
``snn/test/mean_timesteps_T{T}``. The saving against the SNN Calibration baseline is
1 − E_method/E_baseline at the same T, where the baseline is the run labelled
``baseline`` (IF neuron, same calibration, fixed T) or, when absent, the run's own
``snn/baseline/energy_uj_T{T}``. Pure functions; rendering reuses :mod:`table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from adacal.reporting.records import method_label, read_run, split_record  # noqa: F401
from adacal.reporting.table import (
    MISSING,
    _finite,
    _markdown,
    fmt_delta,
    fmt_number,
    fmt_percent,
    fmt_share,
    headline_metric,
    result_headers,
)

METHOD_HEADERS = (
    "T",
    "method",
    "top-1 (%)",
    "Δ vs ANN (pp)",
    "SOPs/image (M)",
    "energy/image (µJ)",
    "saving vs baseline",
    "saving vs ANN",
    "mean timesteps",
)


def method_headers(metric: str = "acc") -> tuple[str, ...]:
    """:data:`METHOD_HEADERS` labelled for ``metric`` (top-1, mIoU)."""
    label = result_headers(metric)[2].removeprefix("SNN ")
    return (METHOD_HEADERS[0], METHOD_HEADERS[1], label, *METHOD_HEADERS[3:])


def runs_metric(runs: Sequence[tuple[str, Mapping[str, object]]]) -> str:
    """The headline metric of a set of runs (``miou`` if any run is a segmentation run)."""
    return "miou" if any(headline_metric(m) == "miou" for _, m in runs) else "acc"


def method_rows(
    runs: Sequence[tuple[str, Mapping[str, object]]],
    timesteps: Sequence[int],
    baseline: str | None = None,
    metric: str | None = None,
) -> list[list[str]]:
    """One row per (T, run) with the columns of :func:`method_headers`.

    Args:
        runs: (label, flat metrics) per method, in display order.
        timesteps: the T values to show.
        baseline: label of the baseline run (savings are relative to it at the same T).
        metric: the score column (default :func:`runs_metric`: acc, or miou).
    """
    metric = metric or runs_metric(runs)
    by_label = {label.split(" (")[0]: m for label, m in runs}  # "if (running)" is "if"
    rows = []
    for T in timesteps:
        base = by_label.get(baseline, {}) if baseline else {}
        for label, m in runs:
            energy = _finite(m.get(f"snn/test/energy_uj_T{T}"))
            ref = _finite(base.get(f"snn/test/energy_uj_T{T}")) or _finite(
                m.get(f"snn/baseline/energy_uj_T{T}")
            )
            saving = None if energy is None or not ref else 1.0 - energy / ref
            sops = _finite(m.get(f"snn/test/sops_T{T}"))
            rows.append(
                [
                    str(T),
                    label,
                    fmt_percent(m.get(f"snn/test/{metric}_T{T}")),
                    fmt_delta(m.get(f"snn/test/{metric}_T{T}"), m.get(f"ann/test/{metric}")),
                    MISSING if sops is None else f"{sops / 1e6:.2f}",
                    fmt_number(energy),
                    fmt_share(saving),
                    fmt_share(m.get(f"snn/test/saving_vs_ann_T{T}")),
                    fmt_number(m.get(f"snn/test/mean_timesteps_T{T}")),
                ]
            )
    return rows


def methods_markdown(
    runs: Sequence[tuple[str, Mapping[str, object]]],
    timesteps: Sequence[int],
    baseline: str | None = None,
    metric: str | None = None,
) -> str:
    """Markdown of :func:`method_rows`."""
    metric = metric or runs_metric(runs)
    return _markdown(method_headers(metric), method_rows(runs, timesteps, baseline, metric))


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
