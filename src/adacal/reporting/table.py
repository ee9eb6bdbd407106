"""Result tables from flat metric keys: a rich table for the terminal, markdown for files.

Keys read (accuracies are fractions in [0, 1], shown as percentages with 2 decimals):

- ``ann/test/acc``: ANN top-1;
- ``snn/test/acc_T{T}``: SNN top-1 at the timestep T that thresholds were fitted for;
- ``snn/test/spikes_T{T}``: spikes per image (a burst of k spikes counts k);
- ``snn/test/rate_T{T}``: mean firing rate (spikes per neuron per timestep);
- ``snn/test/sops_T{T}``: synaptic operations per image (ACs + dense MACs × steps);
- ``snn/test/energy_uj_T{T}``: energy per image (µJ); ``snn/test/saving_vs_baseline_T{T}``:
  1 − E/E_baseline against the SNN Calibration baseline at the same T (shown as
  :data:`IS_BASELINE` when the run is itself the baseline, :func:`is_own_baseline`);
- ``snn/test/mean_timesteps_T{T}``: mean steps simulated per image (< T with IAT exits);
- ``snn/test/anytime_T{T}/acc_t{t}``: accuracy after the first t steps of a T-step run.

SOPs, energy and the saving are shown in one energy convention, ``burst`` (the config's
``energy.burst``): ``spikes`` (the keys above, the default) or ``messages`` (the same
quantities with a non-zero burst costing one AC per synapse: ``snn/test/sops_messages_T{T}``,
``energy_messages_uj_T{T}``, ``saving_vs_baseline_messages_T{T}``, :func:`adacal.keys.burst_name`;
the headers then say "messages").

Segmentation runs report ``miou`` (and ``pixel_acc``) where classification reports ``acc``;
every function takes the headline ``metric`` (default: ``miou`` when such keys exist, else
``acc``, :func:`headline_metric`) and labels the columns with it.

Missing values are shown as ``-``. Building the rows is a pure function
(:func:`results_rows`, :func:`anytime_rows`); rendering is a thin layer on top.
:func:`print_results` prints the table whole on any console: a rich table where it fits,
else plain Markdown lines, so that no number is ever cut ("21,9…") off a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from adacal import keys

MISSING = "-"
IS_BASELINE = "–"  # the saving cell of a run that is its own SNN Calibration baseline
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
LABELS = {"acc": "top-1", "miou": "mIoU", "pixel_acc": "pixel acc."}
# the per-T values of a row besides the score (snn/test/<name>_T{T})
QUANTITIES = ("spikes", "rate", "sops", "energy_uj", "saving_vs_baseline", "mean_timesteps")
ENERGY_QUANTITIES = ("sops", "energy_uj", "saving_vs_baseline")  # differ between conventions
BURST_HEADERS = {  # the header of each convention-dependent column under ``messages``
    "SOPs/image": "SOPs/image (messages)",
    "energy (µJ)": "energy (µJ, messages)",
    "saving vs baseline": "saving vs baseline (messages)",
}


def headline_metric(metrics: Mapping[str, object]) -> str:
    """``"miou"`` for segmentation records (an ``ann/test/miou`` or ``snn/test/miou_T*``
    key), else ``"acc"``."""
    seg = keys.ann_key("miou") in metrics or bool(keys.timesteps_of(metrics, keys.TEST, "miou"))
    return "miou" if seg else "acc"


def result_headers(metric: str = "acc", burst: str = keys.SPIKES) -> tuple[str, ...]:
    """:data:`RESULT_HEADERS` with the metric's label in place of top-1 (and, for the
    ``messages`` convention, the energy columns marked :data:`BURST_HEADERS`)."""
    label = LABELS.get(metric, metric)
    headers = tuple(h.replace("top-1", label) for h in RESULT_HEADERS)
    return headers if burst == keys.SPIKES else tuple(BURST_HEADERS.get(h, h) for h in headers)


def quantity_key(name: str, T: int, burst: str = keys.SPIKES) -> str:
    """``snn/test/{name}_T{T}`` of a per-T quantity, in the energy convention ``burst`` for
    the ones that depend on it (:data:`ENERGY_QUANTITIES`)."""
    return keys.key(
        keys.TEST, keys.burst_name(name, burst) if name in ENERGY_QUANTITIES else name, T
    )


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


def fitted_timesteps(metrics: Mapping[str, object], metric: str | None = None) -> list[int]:
    """Sorted T values that have a ``snn/test/{metric}_T{T}`` key."""
    return keys.timesteps_of(metrics, keys.TEST, metric or headline_metric(metrics))


def results_rows(
    metrics: Mapping[str, object],
    timesteps: Sequence[int] | None = None,
    metric: str | None = None,
    burst: str = keys.SPIKES,
) -> list[list[str]]:
    """One row of formatted cells per T (columns as :func:`result_headers`); SOPs, energy and
    saving in the energy convention ``burst``.

    ``timesteps`` defaults to every T found in ``snn/test/{metric}_T{T}`` keys.
    """
    metric = metric or headline_metric(metrics)
    ts = fitted_timesteps(metrics, metric) if timesteps is None else list(timesteps)
    ann = metrics.get(keys.ann_key(metric))
    rows = []
    for t in ts:
        at = {name: metrics.get(quantity_key(name, t, burst)) for name in (metric, *QUANTITIES)}
        saving = at["saving_vs_baseline"]
        rows.append(
            [
                str(t),
                fmt_percent(ann),
                fmt_percent(at[metric]),
                fmt_delta(at[metric], ann),
                fmt_count(at["spikes"]),
                fmt_rate(at["rate"]),
                fmt_count(at["sops"]),
                fmt_number(at["energy_uj"]),
                IS_BASELINE if is_own_baseline(metrics, t) else fmt_share(saving),
                fmt_number(at["mean_timesteps"]),
            ]
        )
    return rows


def is_own_baseline(metrics: Mapping[str, object], t: int) -> bool:
    """Whether the run at T = ``t`` is its own SNN Calibration baseline: the pipeline then
    records the run's own energy as the baseline's, and a saving of exactly 0."""
    saving = _finite(metrics.get(keys.key(keys.TEST, "saving_vs_baseline", t)))
    own = _finite(metrics.get(keys.key(keys.TEST, "energy_uj", t)))
    base = _finite(metrics.get(keys.key(keys.BASELINE, "energy_uj", t)))
    return saving == 0.0 and own is not None and own == base


def anytime_rows(
    metrics: Mapping[str, object], metric: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """Anytime score: headers ``["t", "T=<T> (%)", ...]`` and one row per step t.

    Cell (t, T) is ``snn/test/anytime_T{T}/{metric}_t{t}`` as a percentage.
    """
    metric = metric or headline_metric(metrics)
    found = [
        (k.T, k.step)
        for k in keys.parsed(metrics)
        if k.anytime and (k.prefix, k.name) == (keys.TEST, metric)
    ]
    big_ts = sorted({T for T, _ in found})
    small_ts = sorted({t for _, t in found if t is not None})
    headers = ["t", *(f"T={T} (%)" for T in big_ts)]
    rows = [
        [
            str(t),
            *(fmt_percent(metrics.get(keys.anytime_key(keys.TEST, metric, t, T))) for T in big_ts),
        ]
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
    metrics: Mapping[str, object],
    timesteps: Sequence[int] | None = None,
    title: str | None = None,
    metric: str | None = None,
    burst: str = keys.SPIKES,
) -> Table:
    """Rich table of ANN/SNN score (top-1 or mIoU), spikes, SOPs and energy per T."""
    metric = metric or headline_metric(metrics)
    rows = results_rows(metrics, timesteps, metric, burst)
    return _rich(result_headers(metric, burst), rows, title)


def results_markdown(
    metrics: Mapping[str, object],
    timesteps: Sequence[int] | None = None,
    metric: str | None = None,
    burst: str = keys.SPIKES,
) -> str:
    """Markdown version of :func:`results_table` (right-aligned columns)."""
    metric = metric or headline_metric(metrics)
    rows = results_rows(metrics, timesteps, metric, burst)
    return _markdown(result_headers(metric, burst), rows)


def anytime_table(metrics: Mapping[str, object], title: str | None = None) -> Table:
    """Rich table of anytime accuracy (rows t, one column per fitted T)."""
    headers, rows = anytime_rows(metrics)
    return _rich(headers, rows, title)


def anytime_markdown(metrics: Mapping[str, object]) -> str:
    """Markdown version of :func:`anytime_table`."""
    headers, rows = anytime_rows(metrics)
    return _markdown(headers, rows)


def print_results(
    console: Console,
    metrics: Mapping[str, object],
    title: str | None = None,
    metric: str | None = None,
    burst: str = keys.SPIKES,
) -> None:
    """Print the results table whole (energy in the convention ``burst``): the rich table
    where the console is wide enough for every number and header word (its minimum width),
    else the Markdown lines unwrapped.

    Off a terminal rich assumes 80 columns and would cut numbers to fit ("21,9…"); a log
    file or a pipe gets the Markdown table instead, which never truncates.
    """
    metric = metric or headline_metric(metrics)
    headers, rows = result_headers(metric, burst), results_rows(metrics, None, metric, burst)
    table = _rich(headers, rows, title)
    needed = console.measure(table, options=console.options.update_width(10_000)).minimum
    if console.is_terminal and needed <= console.width:
        console.print(table)
        return
    plain = {"soft_wrap": True, "markup": False, "highlight": False, "emoji": False}
    if title:
        console.print(title, **plain)
    console.print(_markdown(headers, rows), end="", **plain)
