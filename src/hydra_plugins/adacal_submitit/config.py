"""Launcher configs ``adacal_submitit_local`` and ``adacal_submitit_slurm``: the submitit
plugin's configs with adacal's launcher classes (and, for SLURM, the root ``cluster:`` block)."""

from dataclasses import dataclass, field
from typing import Any, Dict  # noqa: UP035 (OmegaConf reads the annotations)

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf


@dataclass
class AdacalLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.adacal_submitit.launcher.LocalLauncher"


@dataclass
class AdacalSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.adacal_submitit.launcher.SlurmLauncher"
    # the root `cluster:` block: its non-null timeout_min, cpus_per_task, mem_gb and
    # gpus_per_node replace the preset's values (partition, account, ... are read directly)
    cluster: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006 (OmegaConf)
    # at most this many seconds between two job-state queries of the sweep (sacct, or squeue
    # without accounting); submitit's own watcher waits up to 600 s
    poll_s: int = 60


ConfigStore.instance().store(
    group="hydra/launcher", name="adacal_submitit_local", node=AdacalLocalConf, provider="adacal"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="adacal_submitit_slurm", node=AdacalSlurmConf, provider="adacal"
)
