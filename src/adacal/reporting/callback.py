"""Hydra callback: render the paper tables a multirun fills, when the multirun ends.

Configured in ``conf/config.yaml`` (``hydra.callbacks.render_tables``). The tables are the
root key ``table`` (a spec name, a path, or a list of them) or, when null, every spec under
``experiments/tables/`` with a job running this sweep's ``experiment_name``. Outputs go to
``<sweep dir>/tables/``: ``<name>.md``, ``<name>.csv`` and the PNG plots. With a W&B logger
the rendered table and plots are also logged to the sweep's W&B group (offline by default).

A job that failed leaves a ``failed`` metrics.json (``run.py`` keeps a multirun going past
it; adacal's submitit launchers record a job that was killed, cancelled or ran out of time,
keeping what it had measured). The table lists such jobs and marks the cells they fed, and the
multirun then exits with status 1 after one summary line per job. A sweep that no spec
matches says so in one line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from adacal.reporting.records import find_runs
from adacal.reporting.render import Rendered, render
from adacal.reporting.spec import SpecError, TableSpec, load_spec, specs_for_experiment

log = logging.getLogger("adacal")


class RenderTables(Callback):
    """Render the tables of a finished multirun into ``<sweep dir>/tables/``."""

    def __init__(
        self, tables: Any = None, plots: bool = True, fail_on_failed_jobs: bool = True
    ) -> None:
        if tables is None or isinstance(tables, str):
            self.tables = [] if tables is None else [tables]
        else:
            self.tables = [str(t) for t in tables]
        self.plots = plots
        self.fail_on_failed_jobs = fail_on_failed_jobs

    def specs(
        self,
        experiment: str | None,
        swept: set[str] | None = None,
        errors: list[SpecError] | None = None,
    ) -> list[TableSpec]:
        """The named tables; else the specs with a job running ``experiment`` whose sweep
        keys this multirun sweeps (``swept``; None: any), so that e.g. a calibration sweep of
        the default experiment does not render a table of methods × seeds."""
        if self.tables:
            return [load_spec(t) for t in self.tables]
        if not experiment:
            return []
        found = specs_for_experiment(experiment, errors=errors)
        if swept is None:
            return found
        return [
            spec
            for spec in found
            if any(j.experiment == experiment and set(j.sweep) <= swept for j in spec.jobs)
        ]

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check the tables named by ``table`` before any job runs (exit 2 with one line)."""
        try:
            for name in self.tables:
                load_spec(name)
        except SpecError as err:
            print(f"adacal: configuration error: table: {err}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        runs = find_runs([sweep_dir])
        failed = [r for r in runs if r.status != "ok"]
        errors: list[SpecError] = []
        swept = swept_keys(config)
        try:
            specs = self.specs(config.get("experiment_name"), swept, errors)
        except SpecError as err:
            errors, specs = [err], []
        for err in errors:
            log.error("adacal: table not rendered: %s", err)
        written = []
        for spec in specs:
            try:
                rendered = render(spec, [sweep_dir], sweep_dir / "tables", plots=self.plots)
            except SpecError as err:
                log.error("adacal: table %s not rendered: %s", spec.name, err)
                continue
            log.info("adacal: table %s written to %s", spec.name, rendered.files["markdown"])
            written.append(str(rendered.files["markdown"]))
            log_to_wandb(config, rendered)
        if not specs and not errors:
            print(no_table_line(config.get("experiment_name"), swept, sweep_dir), file=sys.stderr)
        if failed and self.fail_on_failed_jobs:
            print(failure_summary(runs, failed, written), file=sys.stderr)
            sys.exit(1)


def no_table_line(experiment: str | None, swept: set[str], sweep_dir: Path) -> str:
    """One line: no table spec matches this sweep (and how to render one anyway)."""
    keys = ", ".join(sorted(swept)) or "none"
    return (
        f"adacal: no table spec matches this sweep (experiment {experiment}, swept keys: "
        f"{keys}); records in {sweep_dir}; render one with: python experiments/render.py "
        f"<table> {sweep_dir}"
    )


def failure_summary(runs: list, failed: list, tables: list[str]) -> str:
    """What a sweep with unfinished jobs ends with: counts, one line per job, the tables."""
    counts: dict[str, int] = {}
    for run in failed:
        counts[run.status] = counts.get(run.status, 0) + 1
    what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [f"adacal: {len(failed)} of {len(runs)} jobs did not finish ({what}); exit status 1"]
    for run in failed:
        done = ", ".join(map(str, run.timesteps()))
        kept = f" [T done: {done}]" if done else ""
        lines.append(f"  {run.folder}: {run.status}: {run.error or 'no metrics.json'}{kept}")
    if tables:
        lines.append("  tables (their cells from these jobs are marked †): " + ", ".join(tables))
    return "\n".join(lines)


def swept_keys(config: DictConfig) -> set[str]:
    """The keys a multirun sweeps: comma lists on the command line and the experiment's
    ``hydra.sweeper.params``."""
    keys = set(OmegaConf.select(config, "hydra.sweeper.params", default=None) or {})
    for override in OmegaConf.select(config, "hydra.overrides.task", default=None) or []:
        key, _, value = str(override).partition("=")
        if "," in value and not value.lstrip().startswith("["):
            keys.add(key.lstrip("+~"))
    return keys


def log_to_wandb(config: DictConfig, rendered: Rendered) -> None:
    """Log the rendered table and plots to the sweep's W&B group when the logger is W&B."""
    logger = config.get("logger") or {}
    if "Wandb" not in str(logger.get("_target_", "")):
        return
    mode = str(OmegaConf.select(config, "logger.mode", default="offline"))
    if mode == "disabled":
        return
    from adacal.reporting.wandb_log import log_rendered_table

    rows = rendered.records
    columns = list(rows[0]) if rows else []
    images = {k: v for k, v in rendered.files.items() if v.suffix == ".png"}
    try:
        log_rendered_table(
            rows,
            columns,
            images,
            project=str(logger.get("project", "adacal")),
            group=str(logger.get("group") or config.get("experiment_name")),
            entity=logger.get("entity"),
            mode=mode,
            save_dir=rendered.files["markdown"].parent,
            name=rendered.spec.name,
        )
    except Exception as err:  # W&B trouble must not hide the rendered files
        log.error("adacal: W&B logging of table %s failed: %s", rendered.spec.name, err)
