"""glibc malloc statistics (mallinfo2) for memory diagnostics.

Invariant: read-only; works on glibc >= 2.33 (Linux); elsewhere `malloc_stats`
raises OSError/AttributeError, which callers treat as "not available".
"""

from __future__ import annotations

import ctypes

_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (all fields size_t)."""

    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def malloc_stats() -> dict[str, float]:
    """MiB figures of this process's malloc: main-arena bytes in use and free, and mmapped."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    mib = 2**20
    return {
        "arena_used": info.uordblks / mib,
        "arena_free": info.fordblks / mib,
        "mmapped": info.hblkhd / mib,
    }
