"""Process-level settings that make CPU simulation fast, and keep its memory bounded.

The time-folded activations of a chunk ([Tc·B, C, H, W]) are large. glibc returns blocks
of 32 MiB or more to the OS when they are freed, so every chunk page-faults and zeroes
them again. That alone can double a CPU simulation (benchmarks/README.md). Keeping freed
memory in the heap removes the cost (:func:`tune_cpu_allocator`).

The kept memory is not always reused: chunks of other sizes (other T, batch, network copy)
fragment the heap, and a long job grows until the OS kills it (a T = 16 frontier job with
six test passes reached 24 GB). :func:`release_free_memory` hands the heap's free pages back
(``malloc_trim``); the evaluator and the searches call it after each test batch or search
sub-batch once :data:`RELEASE_BYTES` are free in the heap, and each target T calls it after
conversion and calibration, so most batches keep the speed-up and the resident memory stays
near what is live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
RELEASE_BYTES = 1 << 30  # free heap bytes after which a batch loop hands them back


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_cpu_allocator() -> bool:
    """glibc only: serve large allocations from the heap and keep freed memory.

    Returns True when the settings were applied (False elsewhere, e.g. macOS or musl).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    ok &= mallopt(_M_TOP_PAD, 64 << 20) == 1
    return bool(ok)


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc >= 2.33, struct mallinfo2: all size_t
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def free_heap_bytes() -> int | None:
    """Bytes freed but kept in the heap (glibc ``mallinfo2().fordblks``); None elsewhere."""
    info = getattr(_libc(), "mallinfo2", None)
    if info is None:
        return None
    info.restype = _MallInfo2
    return int(info().fordblks)


def release_free_memory(min_free_bytes: int = 0) -> bool:
    """glibc only: give the heap's free pages back to the OS (``malloc_trim(0)``: the top of
    the heap and, with madvise, free pages inside it) when at least ``min_free_bytes`` are
    free in it. Live tensors are untouched; the next allocation of released memory
    page-faults again, so callers in a loop pass a threshold and keep most of the speed-up.
    Without ``mallinfo2`` (glibc < 2.33) the free bytes are unknown and it always trims.
    Returns whether it trimmed."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    if min_free_bytes > 0:
        free = free_heap_bytes()
        if free is not None and free < min_free_bytes:
            return False
    trim(0)
    return True
