"""A finished run's results on the terminal and in ``results.md`` beside its metrics.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

from adacal import keys
from adacal.reporting.table import (
    anytime_markdown,
    headline_metric,
    print_results,
    results_markdown,
)


def run_title(
    experiment: str, architecture: str, dataset: str, neuron: str, calibration: str
) -> str:
    """``<experiment>: <architecture> on <dataset>, <neuron> neuron, <calibration> calibration``."""
    return f"{experiment}: {architecture} on {dataset}, {neuron} neuron, {calibration} calibration"


def write_results(
    metrics: Mapping[str, float], title: str, out_dir: Path, burst: str = keys.SPIKES
) -> None:
    """Print the results table and write it (and the anytime table) as ``results.md``; SOPs
    and energy in the convention ``burst`` (``energy.burst``: ``spikes`` or ``messages``)."""
    print_results(Console(), metrics, title=title, burst=burst)
    text = f"# {title}\n\n{results_markdown(metrics, burst=burst)}\n"
    if any(k.anytime for k in keys.parsed(metrics)):
        label = "mIoU" if headline_metric(metrics) == "miou" else "accuracy"
        text += f"\n## Anytime {label} (%)\n\n{anytime_markdown(metrics)}\n"
    (Path(out_dir) / "results.md").write_text(text)
