"""The package's import layers (pyproject.toml [tool.importlinter]): a cycle fails CI.

``snn`` (neurons, sites, conversion, every simulation) <- ``calibration`` <- ``adaptive`` <-
the stages <- the composition root; ``metrics`` beside calibration; ``reporting`` above the
library; and no two modules of one package import each other (acyclic siblings).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT, "--config", str(config), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers_and_has_no_import_cycle():
    proc = _lint(REPO_ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout
    layers = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    order = next(c for c in layers["contracts"] if c["id"] == "layers")["layers"]
    # the order the design names: simulation at the bottom, the composition root on top
    position = {name.strip(): i for i, row in enumerate(order) for name in row.split("|")}
    assert position["adacal.pipeline"] < position["adacal.adaptive"]
    assert position["adacal.adaptive"] < position["adacal.calibration"] < position["adacal.snn"]
    assert position["adacal.reporting"] < position["adacal.metrics"]


def test_imports_inside_functions_count(tmp_path):
    """A deferred import (inside a function) is an import for the contracts: the check that
    closes the old cycles (a neuron importing the search, calibration importing adaptive)
    cannot be dodged by moving the import into a function. render.py imports plots.py inside
    a function (matplotlib only when drawing); a contract forbidding it must break."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["adacal"]\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "render must not import plots"\n'
        'type = "forbidden"\n'
        'source_modules = ["adacal.reporting.render"]\n'
        'forbidden_modules = ["adacal.reporting.plots"]\n'
    )
    proc = _lint(config)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "0 kept, 1 broken" in proc.stdout
