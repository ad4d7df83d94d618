"""/health latency while one 4 MB /tokenize runs on a tiny-model gateway (run from the repository root)."""

import json
import os
import pathlib
import sys
import tempfile
import threading
import time

import httpx

sys.path.insert(0, "tests/server")
from server_procs import Engine, Gateway
from test_server_loop import big_text

from infer_worker.testing import write_tiny_llama

d = pathlib.Path(tempfile.mkdtemp(prefix="isrvb-", dir="/tmp"))
e = Engine(str(write_tiny_llama(d / "tiny")), f"ipc://{d}/e.ipc").wait_ready()
g = Gateway(e.endpoint).wait_ready()
try:
    body = json.dumps({"prompt": big_text(4_000_000)}).encode()
    res = {}

    def tok():
        r = httpx.post(
            g.url + "/tokenize",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=600,
        )
        res["status"] = r.status_code

    lat = []
    with httpx.Client(timeout=600) as c:
        c.get(g.url + "/health")
        th = threading.Thread(target=tok)
        t0 = time.perf_counter()
        th.start()
        while th.is_alive():
            t = time.perf_counter()
            c.get(g.url + "/health")
            lat.append(time.perf_counter() - t)
            time.sleep(0.02)
        th.join()
    total = time.perf_counter() - t0
    lat.sort()
    print(
        f"{sys.argv[1]}: status {res['status']}, tokenize {total:.1f} s, {len(lat)} probes, median {lat[len(lat) // 2] * 1e3:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.1f} ms, worst {lat[-1] * 1e3:.1f} ms; load {os.getloadavg()[0]:.1f}"
    )
finally:
    g.stop()
    e.stop()
