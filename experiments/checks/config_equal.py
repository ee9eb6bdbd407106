"""Check that a refactoring of conf/ leaves every composed config unchanged.

    python experiments/checks/config_equal.py dump <dir> [--conf <conf dir>]  # before and after
    python experiments/checks/config_equal.py compare <before> <after>  # exit 1 on any difference

``dump`` composes a broad set of configs with Hydra's compose API (the default job, every
experiment, every option of every group on top of the default, every experiment with every
calibration and trainer option, and a few cross combinations), resolves each and writes one
JSON file per combination. Each file holds

* ``config``: the run config as a run records it in metrics.json (everything but ``hydra``),
  resolved leaf by leaf (a leaf that cannot resolve is written as ``<unresolved: ...>``);
* ``hydra``: the parts of the ``hydra`` node a configuration sets (run and sweep folders,
  sweeper params, callbacks, launcher, job.chdir), resolved the same way with ``${now:...}``
  fixed to ``NOW``;
* ``choices``: ``hydra.runtime.choices`` (which option each group got). Hydra's bookkeeping,
  not part of a run's config: ``compare`` lists its differences but does not fail on them
  (a new sub-group such as ``calibration/threshold`` adds an entry there).

Paths are made machine-independent: ``hydra.runtime.cwd`` is ``/ROOT``, the output folder
``/OUT``, and PROJECT_ROOT / SLURM_* are removed from the environment. ``compare`` compares
values as nested dicts (key order is ignored) and lists every added, removed or changed key.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
GROUPS = (
    "dataset",
    "architecture",
    "neuron",
    "calibration",
    "compression",
    "inference",
    "task",
    "trainer",
    "recipe",
    "logger",
    "method",
    "paths",
)
HYDRA_KEYS = ("run", "sweep", "sweeper", "callbacks", "launcher", "job.chdir")


def options(group: str) -> list[str]:
    """The selectable options of a group: its top-level YAML files (sub-folders are not)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def set_conf(conf: Path) -> None:
    """Compose from ``conf`` (e.g. a copy of an earlier commit's conf/) instead of conf/."""
    global CONF
    CONF = conf.resolve()


def combinations() -> list[list[str]]:
    """Every override list to compose (the first is the default job)."""
    experiments = options("experiment")
    combos: list[list[str]] = [[]]
    combos += [[f"experiment={e}"] for e in experiments]
    for group in GROUPS:
        combos += [[f"{group}={o}"] for o in options(group)]
    combos += [[f"hydra/launcher={o}"] for o in options("hydra/launcher")]
    for e in experiments:
        combos += [[f"experiment={e}", f"calibration={o}"] for o in options("calibration")]
        combos += [[f"experiment={e}", f"trainer={o}"] for o in options("trainer")]
        combos += [[f"experiment={e}", f"method={o}"] for o in options("method")]
        combos.append([f"experiment={e}", "recipe=fast", "trainer=gpu"])
    for c in options("calibration"):
        for method in ("max", "percentile", "mse"):
            combos.append([f"calibration={c}", f"calibration.threshold.method={method}"])
        combos.append([f"calibration={c}", "calibration.threshold.granularity=channel"])
    combos += [
        ["experiment=cifar10_resnet20", "calibration=advanced", "trainer=gpu", "neuron=adafire"],
        ["experiment=shapes_deeplabv3plus_resnet18", "calibration=none"],
        ["experiment=voc2012_deeplabv3_resnet34", "dataset=shapes", "trainer=cpu"],
        ["experiment=camvid_deeplabv3plus_resnet18", "trainer=ddp", "hydra/launcher=slurm_ddp"],
        ["experiment=imagenet_vgg16", "trainer=ddp", "calibration=advanced"],
        ["architecture=unet_resnet18", "task=segmentation", "dataset=shapes"],
        ["architecture=fpn_resnet18", "architecture.encoder_depth=4"],
        ["trainer=gpu", "trainer.max_epochs=3", "trainer.deterministic=true"],
        ["experiment=ablation_digits_small_cnn", "hydra/launcher=slurm_cpu"],
        ["experiment=adaptive_cifar10_resnet20", "hydra/launcher=local"],
        ["experiment=cifar100_vgg16", "calibration=advanced", "calibration.num_samples=64"],
        ["dataset=cifar10", "architecture=resnet20"],
        ["dataset=cifar100", "architecture=vgg16", "experiment_name=custom"],
        # an experiment with another data set or architecture on top
        ["experiment=cifar10_resnet20", "architecture=resnet20_wide"],
        ["experiment=cifar10_vgg16", "dataset=cifar100"],
        ["experiment=imagenet_resnet18", "architecture=resnet34"],
        ["experiment=ablation_neuron_cifar10_resnet20", "architecture=vgg16"],
        ["experiment=camvid_deeplabv3plus_resnet18", "architecture=unet_resnet18"],
    ]
    unique = {tuple(c): c for c in combos}  # first occurrence wins, order kept
    return list(unique.values())


def resolved(node: Any) -> Any:
    """``node`` as plain containers, resolved leaf by leaf (a failing leaf becomes a string)."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        out = {}
        for key in node:
            try:
                value = node[key]
            except Exception as err:  # noqa: BLE001 - record any resolution failure
                out[str(key)] = f"<unresolved: {type(err).__name__}>"
                continue
            out[str(key)] = resolved(value)
        return out
    if isinstance(node, ListConfig):
        out_list = []
        for i in range(len(node)):
            try:
                value = node[i]
            except Exception as err:  # noqa: BLE001
                out_list.append(f"<unresolved: {type(err).__name__}>")
                continue
            out_list.append(resolved(value))
        return out_list
    return node


def compose_one(overrides: list[str]) -> dict[str, Any]:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/OUT"
        cfg.hydra.runtime.cwd = "/ROOT"
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    try:
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        hydra = {key: resolved(OmegaConf.select(cfg.hydra, key)) for key in HYDRA_KEYS}
        with open_dict(cfg):
            del cfg["hydra"]
        config = resolved(cfg)
    finally:
        HydraConfig.instance().cfg = None
    return {"overrides": overrides, "config": config, "hydra": hydra, "choices": choices}


def filename(overrides: list[str]) -> str:
    name = "__".join(overrides) or "default"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", name) + ".json"


def dump(out: Path) -> int:
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    for var in list(os.environ):
        if var == "PROJECT_ROOT" or var.startswith("SLURM_"):
            del os.environ[var]
    out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        OmegaConf.register_new_resolver("now", lambda *_: "NOW", replace=True)
        combos = combinations()
        for overrides in combos:
            record = compose_one(overrides)
            (out / filename(overrides)).write_text(json.dumps(record, indent=1, sort_keys=True))
    print(f"{len(combos)} configs written to {out}")
    return 0


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.0": leaf}``; an empty dict or list is a leaf of its own."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def compare(before: Path, after: Path) -> int:
    failures: list[str] = []
    notes: list[str] = []
    names_before = {p.name for p in before.glob("*.json")}
    names_after = {p.name for p in after.glob("*.json")}
    if not names_before:
        print(f"no dumps in {before}")
        return 1
    for name in sorted(names_before - names_after):
        failures.append(f"{name}: missing in {after}")
    for name in sorted(names_before & names_after):
        a = json.loads((before / name).read_text())
        b = json.loads((after / name).read_text())
        for section, out in (("config", failures), ("hydra", failures), ("choices", notes)):
            fa, fb = flatten(a[section]), flatten(b[section])
            for key in sorted(fa.keys() | fb.keys()):
                if key not in fb:
                    out.append(f"{name}: {section}.{key} removed (was {fa[key]!r})")
                elif key not in fa:
                    out.append(f"{name}: {section}.{key} added ({fb[key]!r})")
                elif fa[key] != fb[key] or type(fa[key]) is not type(fb[key]):
                    out.append(f"{name}: {section}.{key}: {fa[key]!r} -> {fb[key]!r}")
    counted: dict[str, int] = {}
    for line in notes:  # the same change in many configs: one line with a count
        what = line.split(": ", 1)[1]
        counted[what] = counted.get(what, 0) + 1
    for what, n in counted.items():
        print(f"note (Hydra's choices, not run config): {what} in {n} configs")
    for line in failures:
        print(line)
    compared = len(names_before & names_after)
    print(f"{compared} configs compared, {len(failures)} differences")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "dump" and argv[2] == "--conf":
        set_conf(Path(argv[3]))  # e.g. git archive HEAD conf | tar -x -C /tmp/head
        return dump(Path(argv[1]))
    if len(argv) == 2 and argv[0] == "dump":
        return dump(Path(argv[1]))
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
