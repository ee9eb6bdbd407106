"""Process-level settings that make CPU simulation fast.

The time-folded activations of a chunk ([Tc·B, C, H, W]) are large. glibc returns blocks
of 32 MiB or more to the OS when they are freed, so every chunk page-faults and zeroes
them again. That alone can double a CPU simulation (benchmarks/README.md). Keeping freed
memory in the heap removes the cost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def tune_cpu_allocator() -> bool:
    """glibc only: serve large allocations from the heap and keep freed memory.

    Returns True when the settings were applied (False elsewhere, e.g. macOS or musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    ok &= mallopt(_M_TOP_PAD, 64 << 20) == 1
    return bool(ok)
