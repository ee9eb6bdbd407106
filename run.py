"""adacal entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` to sweep)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from adacal.errors import ConfigError


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from adacal.pipeline import run  # heavy imports after Hydra has parsed the command line

    try:
        metrics = run(cfg)
    except ConfigError as err:
        print(f"adacal: configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("ann/test/acc")


if __name__ == "__main__":
    main()
