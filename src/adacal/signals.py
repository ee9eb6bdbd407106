"""SIGINT and SIGTERM as an exception, so a stopped run records what had finished.

Inside :func:`interrupts_raise` either signal raises :class:`~adacal.errors.Interrupted` in
the main thread; the pipeline writes its failure record (every finished T, the T that was
running, ``interrupted: SIGINT``) and ``run.py`` exits with 128 + the signal number, without a
traceback. A handler someone else installed (submitit's, for instance, which requeues SLURM
jobs) is left in place, and the previous handlers come back on exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from adacal.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise :class:`~adacal.errors.Interrupted` while inside.

    Only in the main thread, and only for a signal whose handler is Python's default (a
    handler installed by a launcher stays). The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in SIGNALS:
        if signal.getsignal(signum) is _DEFAULTS[signum]:
            previous[signum] = signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
