"""adacal entry point: ``python run.py [group=option ...] [key=value ...]`` (``-m`` to sweep).

A single run that fails exits non-zero with one line on stderr and a ``failed`` metrics.json
that keeps every finished T:

- 2: a configuration error, found before any work (:class:`~adacal.errors.ConfigError`);
- 3: a health check failed: the numbers cannot be trusted (:class:`~adacal.errors.HealthError`);
- 130 / 143: interrupted by SIGINT / SIGTERM (no traceback);
- 1: anything else (with its traceback).

In a multirun a failed job is recorded in its ``metrics.json`` and the sweep goes on; the
table callback lists it and the multirun exits with status 1. An interrupt stops the sweep.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from adacal.errors import ConfigError, HealthError, Interrupted

EXIT_CONFIG, EXIT_HEALTH = 2, 3


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
        sys.exit(EXIT_CONFIG)
    except HealthError as err:
        print(f"adacal: run failed a health check: {err}", file=sys.stderr)
        if sweeping:
            return None
        sys.exit(EXIT_HEALTH)
    except (Interrupted, KeyboardInterrupt) as err:
        name = getattr(err, "signal_name", "SIGINT")
        where = f" during the {err.where}" if getattr(err, "where", "") else ""
        print(
            f"adacal: interrupted by {name}{where}; metrics.json keeps every finished T",
            file=sys.stderr,
        )
        sys.exit(getattr(err, "exit_status", 130))
    except Exception:
        if sweeping:
            logging.getLogger("adacal").exception("job failed (recorded in its metrics.json)")
            return None
        raise
    return metrics.get("ann/test/acc")


if __name__ == "__main__":
    main()
