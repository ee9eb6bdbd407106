"""A Hydra callback for the launcher tests: a sweep job that kills itself (SIGKILL, as the
out-of-memory killer would) once its first T is recorded, or that waits to be killed.

Used through the command line (``PYTHONPATH`` must hold ``tests/`` in the job processes)::

    +hydra.callbacks.killer._target_=_job_killer.KillAfterFirstT \
        +hydra.callbacks.killer.key=neuron.name +hydra.callbacks.killer.value=burst
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class KillAfterFirstT(Callback):
    """In the job whose config has ``key`` == ``value``, a thread sends SIGKILL (or ``sig``)
    to the job's own process once its metrics.json lists a finished T. ``sig=STALL`` instead
    stalls the whole process, as a computation that never returns to Python would: the thread
    holds the interpreter (a regular expression that backtracks for ever) until the process
    is killed from outside (``scancel``: SIGTERM is not handled, SIGKILL follows)."""

    def __init__(self, key: str, value: str, sig: str = "SIGKILL", timeout_s: float = 300.0):
        self.key, self.value = key, str(value)
        self.sig = None if sig == "STALL" else getattr(signal, sig)
        self.timeout_s = timeout_s

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(OmegaConf.select(config, self.key)) != self.value:
            return
        path = Path(str(config.hydra.runtime.output_dir)) / "metrics.json"
        threading.Thread(target=self._watch, args=(path,), daemon=True).start()

    def _watch(self, path: Path) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                if json.loads(path.read_text()).get("finished_T"):
                    if self.sig is None:
                        re.match(r"(a+)+$", "a" * 64 + "b")  # holds the GIL for ages
                    os.kill(os.getpid(), self.sig or signal.SIGKILL)
                    return
            except (OSError, ValueError, AttributeError):
                pass
            time.sleep(0.02)
