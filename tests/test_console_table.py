"""The printed results table keeps every number whole on any console, and a run that is its
own SNN Calibration baseline shows no "saving vs baseline" of +0.0 %."""

from __future__ import annotations

import io

from rich.console import Console

from adacal.reporting import print_results, results_markdown, results_rows
from adacal.reporting.table import IS_BASELINE

# an IF run (its own baseline) at T = 2, and numbers as wide as a real run's
METRICS = {
    "ann/test/acc": 0.99444,
    "snn/test/acc_T2": 0.98056,
    "snn/test/spikes_T2": 21962.4,
    "snn/test/rate_T2": 0.22341,
    "snn/test/sops_T2": 7332123.0,
    "snn/test/energy_uj_T2": 8.78,
    "snn/baseline/energy_uj_T2": 8.78,
    "snn/test/saving_vs_baseline_T2": 0.0,
    "snn/test/mean_timesteps_T2": 2.0,
    "snn/test/acc_T4": 0.99,
    "snn/test/spikes_T4": 1234567.0,
    "snn/test/sops_T4": 123456789.0,
    "snn/test/energy_uj_T4": 30.0,
    "snn/baseline/energy_uj_T4": 40.0,
    "snn/test/saving_vs_baseline_T4": 0.25,
    "snn/test/mean_timesteps_T4": 4.0,
}
WHOLE = ["99.44", "98.06", "-1.39", "21,962", "0.2234", "7,332,123", "8.78", "2.00"]
WHOLE += ["1,234,567", "123,456,789", "+25.0%", "4.00"]


def _printed(width: int, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    print_results(console, METRICS, title="digits_small_cnn: small_cnn on digits")
    return out.getvalue()


def test_numbers_stay_whole_off_a_terminal():
    text = _printed(width=40, terminal=False)  # a pipe or a log file, narrower than the table
    assert "…" not in text
    for cell in WHOLE:
        assert cell in text, cell
    assert "| 2 | 99.44 | 98.06 |" in text  # plain Markdown lines, not a squeezed box
    assert "digits_small_cnn: small_cnn on digits" in text


def test_numbers_stay_whole_off_a_terminal_at_rich_default_width():
    text = _printed(width=80, terminal=False)
    assert "…" not in text
    for cell in WHOLE:
        assert cell in text, cell


def test_narrow_terminal_falls_back_to_whole_numbers():
    text = _printed(width=50, terminal=True)
    assert "…" not in text
    for cell in WHOLE:
        assert cell in text, cell


def test_wide_terminal_gets_the_rich_table():
    text = _printed(width=200, terminal=True)
    assert "┏" in text and "…" not in text
    for cell in WHOLE:
        assert cell in text, cell


def test_own_baseline_shows_a_dash_not_zero_saving():
    rows = results_rows(METRICS)
    assert rows[0][8] == IS_BASELINE  # T=2: the IF run is its own baseline
    assert rows[1][8] == "+25.0%"  # T=4: a real saving against another network
    assert "+0.0%" not in results_markdown(METRICS)


def test_a_true_zero_saving_against_another_baseline_is_kept():
    metrics = dict(METRICS, **{"snn/baseline/energy_uj_T2": 8.79})
    metrics["snn/test/saving_vs_baseline_T2"] = 0.0
    assert results_rows(metrics)[0][8] == "+0.0%"
