"""The errors that end a run with one line instead of a traceback (``run.py`` prints them).

- :class:`ConfigError`: a configuration value that cannot work, found before the work it
  would spoil (exit status 2);
- :class:`HealthError`: the run did its work but its numbers cannot be trusted (non-finite
  weights, losses or logits, accuracy at chance); the message names the likely key
  (exit status 3);
- :class:`Interrupted`: SIGINT or SIGTERM arrived (:mod:`adacal.signals`); exit status
  128 + the signal number.

Each is written to the run's ``metrics.json`` (status ``"failed"``) with what had finished.
"""

from __future__ import annotations

import signal


class ConfigError(ValueError):
    """A configuration value that cannot work.

    The message always names the config key and says what to do, e.g.
    ``dataset.root: /x does not exist; pass dataset.root=<folder with train/ and test/>``.
    ``run.py`` catches it, prints the one line and exits with status 2.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}")


class HealthError(RuntimeError):
    """A run whose results cannot be trusted (:mod:`adacal.health`).

    Like :class:`ConfigError` the message starts with the key most likely at fault
    (``ann.optim.lr``, ``ann.checkpoint``, ``snn.T``, ...) and says what to do.
    ``run.py`` prints the one line and exits with status 3.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}")


class Interrupted(BaseException):
    """SIGINT or SIGTERM received (raised in the main thread by :mod:`adacal.signals`).

    A ``BaseException`` (like ``KeyboardInterrupt``) so that no ``except Exception`` swallows
    it; Lightning re-raises it from ``Trainer.fit`` / ``test`` after its own teardown.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.where = ""  # what was running, filled in by the pipeline ("snn stage at T=4")
        super().__init__(f"interrupted: {self.signal_name}")

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum
