"""Keep the models that tests train the same on every machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread(seed: int | None = 0) -> Iterator[None]:
    """Inside the block torch runs on one intra-op thread with its global RNG seeded; after it,
    the thread count and the global RNG state are what they were before.

    A model trained on one thread does not depend on ``OMP_NUM_THREADS`` or the number of cores
    (a parallel reduction sums in another order with more threads). The restored RNG keeps a
    fixture from changing the random numbers of the tests that happen to run after it.
    """
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        try:
            if seed is not None:
                torch.manual_seed(seed)
            yield
        finally:
            torch.set_num_threads(threads)
