"""adacal entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` to sweep).

A single run that fails exits non-zero (2 for a configuration error). In a multirun a failed
job is recorded in its ``metrics.json`` and the sweep goes on; the table callback lists it
and the multirun exits with status 1.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from adacal.errors import ConfigError


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from adacal.pipeline import run  # heavy imports after Hydra has parsed the command line

    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = run(cfg)
    except ConfigError as err:
        print(f"adacal: configuration error: {err}", file=sys.stderr)
        if sweeping:  # the failed metrics.json records it; the sweep goes on to its table
            return None
        sys.exit(2)
    except Exception:
        if sweeping:
            logging.getLogger("adacal").exception("job failed (recorded in its metrics.json)")
            return None
        raise
    return metrics.get("ann/test/acc")


if __name__ == "__main__":
    main()
