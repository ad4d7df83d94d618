"""The engine's malloc arena cap takes effect: threads started after it share two
arenas (counted with glibc's malloc_info), and an explicit MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from infer_scheduler.malloc_arenas import limit_arenas

COUNT_ARENAS = r"""
import ctypes, json, re, sys, tempfile, threading
from infer_scheduler.malloc_arenas import limit_arenas
limited = limit_arenas() if sys.argv[1] == "limit" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
go = threading.Barrier(8)
def work():
    go.wait()  # all threads alive at once, so none can inherit a finished one's arena
    for _ in range(100):
        libc.malloc(1000)  # leaked on purpose: the arena stays in use
    go.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    out = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    arenas = len(re.findall(r'<heap nr="\d+">', open(f.name).read()))
print(json.dumps({"limited": limited, "arenas": arenas}))
"""


def arenas(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_limit_arenas_caps_the_arenas_of_threads_started_after_it():
    free = arenas("free")
    assert free["arenas"] >= 4, free  # one per thread, up to 8 per core: the default
    capped = arenas("limit")
    assert capped == {"limited": True, "arenas": 2}, capped
    # the environment decides when it says something
    assert arenas("limit", MALLOC_ARENA_MAX="3") == {"limited": False, "arenas": 3}
    assert limit_arenas(env={"MALLOC_ARENA_MAX": "4"}) is False
