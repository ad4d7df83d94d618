"""Fewer glibc malloc arenas for the engine process.

glibc gives each new thread that allocates its own arena, up to 8 per core,
and seldom hands their freed pages back; with torch's worker threads,
ZeroMQ's I/O thread and the kernel build thread, the engine's resident memory
kept creeping up in a soak. Two arenas kept it flat at no measurable speed
cost (docs/reliability.md). `limit_arenas` is `MALLOC_ARENA_MAX=2` set from
inside: it must run before the process starts a second thread, because glibc
fixes the limit when the first extra arena is made. An explicit
`MALLOC_ARENA_MAX` in the environment wins; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

M_ARENA_MAX = -8  # glibc's mallopt parameter number
DEFAULT_ARENAS = 2


def limit_arenas(count: int = DEFAULT_ARENAS, env: Mapping[str, str] | None = None) -> bool:
    """Cap malloc arenas at `count`; False when not glibc or the environment decides."""
    env = os.environ if env is None else env
    if "MALLOC_ARENA_MAX" in env or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1
