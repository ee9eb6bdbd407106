"""The CPU allocator settings (adacal.snn.runtime): freed heap memory is handed back on request,
and the evaluator does so after every test batch, so a long job's resident memory stays near
what is live."""

from __future__ import annotations

import sys

import pytest
import torch

from adacal.lightning import SNNEvaluator
from adacal.snn import runtime

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(row for row in status if row.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


@linux
def test_freed_heap_memory_goes_back_to_the_os() -> None:
    """With the simulation's settings (no mmap, no automatic trim) freed tensors stay in the
    heap: mallinfo2 counts them free and the resident size keeps them. Under a higher
    threshold nothing is trimmed; release_free_memory() returns them: the resident size
    falls by at least half of what was freed (measured: all of it)."""
    if not runtime.tune_cpu_allocator() or runtime.free_heap_bytes() is None:
        pytest.skip("glibc mallopt / mallinfo2 unavailable")
    blocks = [torch.ones(int((2 + i % 9) * 1_000_000)) for i in range(20)]  # 4-byte floats
    freed = sum(b.numel() * 4 for b in blocks)
    assert freed > 400 * 2**20
    del blocks
    free = runtime.free_heap_bytes()
    assert free >= freed
    assert not runtime.release_free_memory(min_free_bytes=free + 1)  # under the threshold
    before = _rss_mb()
    assert runtime.release_free_memory(min_free_bytes=free)
    assert before - _rss_mb() > 0.5 * freed / 2**20


def test_the_evaluator_releases_memory_after_every_test_batch(monkeypatch) -> None:
    """After each test batch, with the 1 GiB threshold (a long job stays bounded)."""
    calls = []
    monkeypatch.setattr(
        "adacal.lightning.snn_module.release_free_memory", lambda **kw: calls.append(kw)
    )
    evaluator = SNNEvaluator.__new__(SNNEvaluator)
    for batch in range(3):
        evaluator.on_test_batch_end(None, None, batch)
    assert calls == [{"min_free_bytes": 1 << 30}] * 3
