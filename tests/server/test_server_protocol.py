"""Protocol faults between a real gateway and a real engine reach the right place.

The faulty gateway is the real infer-server with one thing changed before it
starts (its protocol version, or an extra GenerateRequest field), since a
release of this repository cannot produce such a gateway otherwise.
"""

from __future__ import annotations

import sys
import time

import httpx
import openai
import pytest
from server_procs import Gateway, Proc, free_port

from infer_protocol import PROTOCOL_VERSION

OTHER_VERSION = PROTOCOL_VERSION + 41

NEWER_VERSION = f"""
import infer_protocol, infer_protocol.codec as codec
codec.PROTOCOL_VERSION = infer_protocol.PROTOCOL_VERSION = {OTHER_VERSION}
"""

EXTRA_FIELD = """
import infer_protocol.codec as codec
plain = codec._unstructure
def with_extra(value):
    out = plain(value)
    if type(value).__name__ == "GenerateRequest":
        out["beam_width"] = 4
    return out
codec._unstructure = with_extra
"""


class ChangedGateway(Gateway):
    """infer-server run by this interpreter after `patch` (Python source) has run."""

    def __init__(self, endpoint: str, patch: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = patch + "\nimport sys\nfrom infer_server.cli import main\nsys.exit(main())\n"
        argv = [sys.executable, "-c", code, "--host", "127.0.0.1", "--port", str(self.port)]
        Proc.__init__(self, [*argv, "--engine-endpoint", endpoint, *extra], "gateway")


@pytest.fixture
def changed_gateway(tiny_engine, request):
    gw = ChangedGateway(tiny_engine.endpoint, *request.param)
    yield gw
    gw.stop()


@pytest.mark.parametrize(
    "changed_gateway", [(EXTRA_FIELD, "--request-timeout", "60")], indirect=True
)
def test_a_request_with_an_extra_protocol_field_fails_at_once(changed_gateway):
    gw = changed_gateway.wait_ready()
    client = gw.openai(timeout=60)
    took = []
    for _ in range(2):  # the first also pays the gateway's first-request costs (templates)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        took.append(time.monotonic() - started)
        assert info.value.status_code == 502 and "beam_width" in info.value.message
    assert took[0] < 10 and took[1] < 1.0, took  # not the 60 s request timeout
    assert client.models.list().data  # the gateway and the engine go on


@pytest.mark.parametrize("changed_gateway", [(NEWER_VERSION,)], indirect=True)
def test_a_protocol_version_mismatch_is_one_line_and_ready_503(changed_gateway, tiny_engine):
    gw = changed_gateway.wait_up()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = httpx.get(gw.url + "/ready", timeout=5)
        if "protocol version" in ready.json().get("detail", ""):
            break
        time.sleep(0.1)
    assert ready.status_code == 503
    detail = ready.json()["detail"]
    assert f"engine speaks protocol version {PROTOCOL_VERSION}" in detail
    assert f"this gateway {OTHER_VERSION}" in detail
    time.sleep(1.5)  # a few more pings answered at the wrong version
    said = [line for line in gw.lines if "speaks protocol version" in line]
    assert len(said) == 1, gw.output
    engine_said = [line for line in tiny_engine.lines if f"version {OTHER_VERSION}" in line]
    assert len(engine_said) == 1, "".join(tiny_engine.lines[-20:])
    chat = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert chat.status_code in (502, 503)
