"""Run ``run.py`` in this process (fast: no interpreter start) and report what a user sees."""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# A whole pipeline run on digits that takes seconds on a CPU (small data, small network, max
# thresholds, no progress bars); each test adds the T, logger, health and baseline it needs.
TINY_DATA = [
    "dataset.train_limit=300",
    "dataset.test_limit=100",
    "snn.anytime=[1,2]",
    "calibration.num_samples=32",
    "calibration.threshold.method=max",
    "architecture.width=8",
    "progress=false",
    "trainer.enable_progress_bar=false",
]


@dataclass
class CliResult:
    """Exit status, captured stderr, and the run's ``metrics.json`` (None when absent)."""

    code: int
    stderr: str
    record: dict | None


def run_cli(args: list[str], run_dir: Path, capsys) -> CliResult:
    """``python run.py *args hydra.run.dir=<run_dir>`` in-process: the exit status (0 when
    ``main`` returns), stderr, and the record it left."""
    from hydra.core.global_hydra import GlobalHydra

    from adacal.reporting import read_metrics

    argv = sys.argv
    sys.argv = ["run.py", *args, f"hydra.run.dir={run_dir}"]
    capsys.readouterr()
    try:
        runpy.run_path(str(REPO_ROOT / "run.py"), run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    stderr = capsys.readouterr().err
    path = Path(run_dir) / "metrics.json"
    return CliResult(code, stderr, read_metrics(path) if path.is_file() else None)


def error_lines(stderr: str) -> list[str]:
    """The ``adacal: ...`` lines of stderr (the one-line errors run.py prints)."""
    return [line for line in stderr.splitlines() if line.startswith("adacal: ")]
