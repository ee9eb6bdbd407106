"""Run a fixed set of small jobs and compare their metrics.json with an earlier set.

Proof that a refactor changes no number: the same seeds must give the same metrics (timings,
dates and the git revision aside).

    python experiments/checks/same_numbers.py run /tmp/before     # on the old tree
    python experiments/checks/same_numbers.py run /tmp/after      # on the new tree
    python experiments/checks/same_numbers.py compare /tmp/before /tmp/after

Each job runs ``run.py`` in a subprocess with one torch thread (OMP_NUM_THREADS=1), so the
figures do not depend on the thread count. ``compare`` exits 1 and lists every key whose value
differs or that only one side has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name -> overrides: the default job, and the adaptive paths (search, SSC, IAT, advanced
# calibration, burst neurons) plus segmentation on small data.
SMALL = ["dataset.train_limit=600", "dataset.test_limit=200", "logger=none", "progress=false"]
JOBS: dict[str, list[str]] = {
    "default": [],
    "adafire_ssc_iat_advanced": [
        *SMALL,
        "method=adafire_ssc_iat",
        "calibration=advanced",
        "calibration.num_samples=64",
        "snn.T=[4,8]",
    ],
    "burst_light": [*SMALL, "method=burst", "snn.T=[4]"],
    "shapes": [
        "experiment=shapes_deeplabv3plus_resnet18",
        "logger=none",
        "progress=false",
        "dataset.num_train=64",
        "dataset.num_test=16",
        "trainer.max_epochs=1",
        "snn.T=[8]",
        "snn.anytime=[4,8]",
    ],
}
# Top-level record fields a newer tree may add (reported, not compared): Hydra's choices.
NEW_FIELDS = ("choices",)
FOLDERS = ("save_dir", "default_root_dir")
# Keys whose values are wall-clock, provenance or folders (the two trees and run folders
# differ), not numbers of the method.
VOLATILE = ("time", "_s", "seconds", "git_revision", "command", "date", "duration", "walltime")


def run(out: Path) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    status = 0
    for name, overrides in JOBS.items():
        run_dir = out / name
        cmd = [sys.executable, "run.py", *overrides, f"hydra.run.dir={run_dir}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        print(f"{name}: exit {proc.returncode}")
        if proc.returncode:
            print(proc.stderr[-2000:])
            status = 1
    return status


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        flat: dict[str, object] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _volatile(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    where = key.startswith(("config.hydra", "config.paths.")) or leaf in FOLDERS
    return where or any(mark in leaf for mark in VOLATILE)


def compare(before: Path, after: Path) -> int:
    status = 0
    for name in JOBS:
        old = _flatten(json.loads((before / name / "metrics.json").read_text()))
        new = _flatten(json.loads((after / name / "metrics.json").read_text()))
        keys = sorted(k for k in old.keys() | new.keys() if not _volatile(k))
        added = [k for k in keys if k not in old and k.split(".")[0] in NEW_FIELDS]
        keys = [k for k in keys if k not in added]
        bad = [k for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]
        metrics = sum(k.startswith("metrics.") for k in keys)
        print(f"{name}: {len(keys)} values compared ({metrics} metrics), {len(bad)} differ")
        if added:
            print(f"    new record fields (not compared): {', '.join(added)}")
        for key in bad[:40]:
            print(f"    {key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
        status |= bool(bad)
    return status


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "run":
        return run(Path(argv[1]))
    if len(argv) >= 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
