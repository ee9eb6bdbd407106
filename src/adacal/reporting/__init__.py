"""Run records and result tables: ``metrics.json``, git revision, rich/markdown tables."""

from __future__ import annotations

from adacal.reporting.git import git_revision
from adacal.reporting.metrics_file import (
    metrics_path,
    read_metrics,
    write_failure,
    write_json_atomic,
    write_metrics,
)
from adacal.reporting.table import (
    anytime_markdown,
    anytime_rows,
    anytime_table,
    fitted_timesteps,
    print_results,
    results_markdown,
    results_rows,
    results_table,
)

__all__ = [
    "anytime_markdown",
    "anytime_rows",
    "anytime_table",
    "fitted_timesteps",
    "git_revision",
    "metrics_path",
    "print_results",
    "read_metrics",
    "results_markdown",
    "results_rows",
    "results_table",
    "write_failure",
    "write_json_atomic",
    "write_metrics",
]
