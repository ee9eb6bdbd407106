"""Result tables from flat metric keys: a rich table for the terminal, markdown for files.

Keys read (accuracies are fractions in [0, 1], shown as percentages with 2 decimals):

- ``ann/test/acc``: ANN top-1;
- ``snn/test/acc_T{T}``: SNN top-1 at the timestep T that thresholds were fitted for;
- ``snn/test/spikes_T{T}``: spikes per image (a burst of k spikes counts k);
- ``snn/test/rate_T{T}``: mean firing rate (spikes per neuron per timestep);
- ``snn/test/sops_T{T}``: synaptic operations per image (ACs + dense MACs × steps);
- ``snn/test/energy_uj_T{T}``: energy per image (µJ); ``snn/test/saving_vs_baseline_T{T}``:
  1 − E/E_baseline against the SNN Calibration baseline at the same T;
- ``snn/test/mean_timesteps_T{T}``: mean steps simulated per image (< T with IAT exits);
- ``snn/test/anytime_T{T}/acc_t{t}``: accuracy after the first t steps of a T-step run.

Missing values are shown as ``-``. Building the rows is a pure function
(:func:`results_rows`, :func:`anytime_rows`); rendering is a thin layer on top.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from rich.table import Table

MISSING = "-"
RESULT_HEADERS = (
    "T",
    "ANN top-1 (%)",
    "SNN top-1 (%)",
    "Δ vs ANN (pp)",
    "spikes/image",
    "firing rate",
    "SOPs/image",
    "energy (µJ)",
    "saving vs baseline",
    "mean steps",
)
_ACC_KEY = re.compile(r"^snn/test/acc_T(\d+)$")
_ANYTIME_KEY = re.compile(r"^snn/test/anytime_T(\d+)/acc_t(\d+)$")


def _finite(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt_percent(value: object) -> str:
    """Fraction → percentage with 2 decimals (``0.9312`` → ``"93.12"``)."""
    number = _finite(value)
    return MISSING if number is None else f"{100.0 * number:.2f}"


def fmt_delta(snn: object, ann: object) -> str:
    """Signed difference SNN − ANN in percentage points (``"-0.35"``, ``"+0.10"``)."""
    a, b = _finite(snn), _finite(ann)
    return MISSING if a is None or b is None else f"{100.0 * (a - b):+.2f}"


def fmt_count(value: object) -> str:
    """Spike counts: thousands separators, no decimals (``123456.7`` → ``"123,457"``)."""
    number = _finite(value)
    return MISSING if number is None else f"{number:,.0f}"


def fmt_rate(value: object) -> str:
    """Firing rate with 4 decimals."""
    number = _finite(value)
    return MISSING if number is None else f"{number:.4f}"


def fmt_number(value: object) -> str:
    """A quantity with 2 decimals (``12.345`` → ``"12.35"``)."""
    number = _finite(value)
    return MISSING if number is None else f"{number:.2f}"


def fmt_share(value: object) -> str:
    """A fraction as a signed percentage with 1 decimal (``0.253`` → ``"+25.3%"``)."""
    number = _finite(value)
    return MISSING if number is None else f"{100.0 * number:+.1f}%"


def fitted_timesteps(metrics: Mapping[str, object]) -> list[int]:
    """Sorted T values that have a ``snn/test/acc_T{T}`` key."""
    return sorted({int(m.group(1)) for k in metrics if (m := _ACC_KEY.match(k))})


def results_rows(
    metrics: Mapping[str, object], timesteps: Sequence[int] | None = None
) -> list[list[str]]:
    """One row of formatted cells per T (columns as :data:`RESULT_HEADERS`).

    ``timesteps`` defaults to every T found in ``snn/test/acc_T{T}`` keys.
    """
    ts = fitted_timesteps(metrics) if timesteps is None else list(timesteps)
    ann = metrics.get("ann/test/acc")
    rows = []
    for t in ts:
        snn = metrics.get(f"snn/test/acc_T{t}")
        rows.append(
            [
                str(t),
                fmt_percent(ann),
                fmt_percent(snn),
                fmt_delta(snn, ann),
                fmt_count(metrics.get(f"snn/test/spikes_T{t}")),
                fmt_rate(metrics.get(f"snn/test/rate_T{t}")),
                fmt_count(metrics.get(f"snn/test/sops_T{t}")),
                fmt_number(metrics.get(f"snn/test/energy_uj_T{t}")),
                fmt_share(metrics.get(f"snn/test/saving_vs_baseline_T{t}")),
                fmt_number(metrics.get(f"snn/test/mean_timesteps_T{t}")),
            ]
        )
    return rows


def anytime_rows(metrics: Mapping[str, object]) -> tuple[list[str], list[list[str]]]:
    """Anytime accuracy: headers ``["t", "T=<T> (%)", ...]`` and one row per step t.

    Cell (t, T) is ``snn/test/anytime_T{T}/acc_t{t}`` as a percentage.
    """
    found = [(int(m.group(1)), int(m.group(2))) for k in metrics if (m := _ANYTIME_KEY.match(k))]
    big_ts = sorted({T for T, _ in found})
    small_ts = sorted({t for _, t in found})
    headers = ["t", *(f"T={T} (%)" for T in big_ts)]
    rows = [
        [str(t), *(fmt_percent(metrics.get(f"snn/test/anytime_T{T}/acc_t{t}")) for T in big_ts)]
        for t in small_ts
    ]
    return headers, rows


def _rich(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None) -> Table:
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def results_table(
    metrics: Mapping[str, object], timesteps: Sequence[int] | None = None, title: str | None = None
) -> Table:
    """Rich table of ANN/SNN accuracy, spikes and firing rate per T."""
    return _rich(RESULT_HEADERS, results_rows(metrics, timesteps), title)


def results_markdown(metrics: Mapping[str, object], timesteps: Sequence[int] | None = None) -> str:
    """Markdown version of :func:`results_table` (right-aligned columns)."""
    return _markdown(RESULT_HEADERS, results_rows(metrics, timesteps))


def anytime_table(metrics: Mapping[str, object], title: str | None = None) -> Table:
    """Rich table of anytime accuracy (rows t, one column per fitted T)."""
    headers, rows = anytime_rows(metrics)
    return _rich(headers, rows, title)


def anytime_markdown(metrics: Mapping[str, object]) -> str:
    """Markdown version of :func:`anytime_table`."""
    headers, rows = anytime_rows(metrics)
    return _markdown(headers, rows)
