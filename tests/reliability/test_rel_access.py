"""Access: API key on every route but the open ones; owner-only ipc socket; tcp binds as told."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import psutil
import pytest
from rel_procs import Engine, Gateway, free_port

from infer_server.app import api_routes
from infer_server.webui import PAGES

KEY = "s3cret-key"
OPEN = {"/health", "/ready"}


@pytest.fixture(scope="module")
def keyed(tiny, rel_dir):
    engine = Engine(tiny, f"ipc://{rel_dir}/access.ipc").wait_ready()
    gw = Gateway(engine.endpoint, "--api-key", KEY).wait_ready()
    yield engine, gw
    gw.stop()
    engine.stop()


def every_route() -> list[tuple[str, str]]:
    return [(method, r.path) for r in api_routes() for method in sorted(r.methods - {"HEAD"})]


def test_every_api_route_but_health_and_ready_wants_the_key(keyed):
    _, gw = keyed
    routes = every_route()
    assert len(routes) >= 11
    wrong_keys = [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
    ]
    for method, path in routes:
        for headers in wrong_keys:
            r = httpx.request(method, gw.url + path, headers=headers, json={}, timeout=10)
            if path in OPEN:
                assert r.status_code == 200, (method, path, r.status_code)
            else:
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert r.json()["error"]["type"] == "authentication_error"
                assert r.headers["www-authenticate"] == "Bearer"
    # unknown paths are not a way around the key either
    assert httpx.get(gw.url + "/v1/secret").status_code == 401
    # the right key opens the API
    good = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(gw.url + "/v1/models", headers=good).status_code == 200
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
    assert httpx.post(gw.url + "/v1/completions", headers=good, json=body).status_code == 200


def test_web_ui_pages_stay_public(keyed):
    _, gw = keyed
    for page in PAGES:
        r = httpx.get(gw.url + page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"], page


def test_ipc_socket_file_is_owner_only(keyed):
    engine, _ = keyed
    path = Path(engine.endpoint.removeprefix("ipc://"))
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600, oct(stat.S_IMODE(mode))


def test_tcp_endpoint_binds_only_where_told(tiny):
    port = free_port()
    engine = Engine(tiny, f"tcp://127.0.0.1:{port}").wait_ready()
    try:
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(engine.popen.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", port)}, listening
    finally:
        engine.stop()
