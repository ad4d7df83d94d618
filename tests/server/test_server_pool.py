"""Two engines behind one gateway: /v1/models union, routing by model name, 404, /ready.

Engine `a` serves the tiny model as `tiny` and `alpha`, engine `b` as `tiny`
and `beta` (same tokenizer, so `tiny` is served by both). A third endpoint,
`c`, is started late with another model also called `tiny`: it is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from server_procs import Engine, Gateway

ONE_THREAD = ("--threads", "1", "--kv-cache-tokens", "4096")


def engines(gw: Gateway) -> dict[str, dict]:
    """The /v1/metrics engines list by engine id."""
    body = httpx.get(gw.url + "/v1/metrics", timeout=10).json()
    return {e["id"]: e for e in body["engines"]}


def wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def pool(tiny_model: str, run_dir) -> Iterator[dict]:
    a = Engine(tiny_model, f"ipc://{run_dir}/pa.ipc", *ONE_THREAD, "--engine-id", "a",
               "--served-model-name", "alpha")  # fmt: skip
    b = Engine(tiny_model, f"ipc://{run_dir}/pb.ipc", *ONE_THREAD, "--engine-id", "b",
               "--served-model-name", "beta")  # fmt: skip
    state = {"a": a.wait_ready(), "b": b.wait_ready()}
    gw = Gateway(a.endpoint, "--engine-endpoint", b.endpoint, "--engine-endpoint",
                 f"ipc://{run_dir}/pc.ipc", "--routing", "round_robin")  # fmt: skip
    state["gw"] = gw.wait_ready()
    yield state
    gw.stop()
    for name in ("a", "b", "c"):
        if name in state:
            state[name].stop()


def ask(gw: Gateway, model: str) -> str:
    r = gw.openai().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert r.model == model and r.choices[0].finish_reason in ("length", "stop")
    return r.choices[0].message.content or ""


def test_models_are_the_union_and_each_name_routes_to_its_engines(pool):
    gw = pool["gw"]
    client = gw.openai()
    assert sorted(m.id for m in client.models.list().data) == ["alpha", "beta", "tiny"]
    assert client.models.retrieve("beta").id == "beta"
    before = engines(gw)
    assert before["a"]["state"] == before["b"]["state"] == "ready"
    assert before["a"]["models"] == ["tiny", "alpha"] and before["b"]["models"] == ["tiny", "beta"]
    for _ in range(3):
        ask(gw, "alpha")
    for _ in range(2):
        ask(gw, "beta")
    for _ in range(4):
        ask(gw, "tiny")  # round robin over both
    after = engines(gw)
    routed = {k: after[k]["requests_routed"] - before[k]["requests_routed"] for k in "ab"}
    assert routed == {"a": 3 + 2, "b": 2 + 2}, routed
    assert after["a"]["epoch"] and after["a"]["epoch"] != after["b"]["epoch"]


def test_an_unknown_model_is_404_naming_it(pool):
    with pytest.raises(openai.NotFoundError) as info:
        ask(pool["gw"], "gamma")
    error = info.value.body
    assert "'gamma'" in error["message"] and error["code"] == "model_not_found"
    assert error["param"] == "model"


def test_ready_needs_an_engine_for_every_model(pool):
    gw, b = pool["gw"], pool["b"]
    b.stop()
    assert wait_for(lambda: httpx.get(gw.url + "/ready").status_code == 503, 15)
    body = httpx.get(gw.url + "/ready").json()
    assert body["engine_connected"] is True and b.endpoint in body["detail"]
    assert engines(gw)["b"]["state"] in ("dead", "not_ready")
    # beta has no ready engine: 503 naming it; alpha and tiny go on (tiny on engine a)
    with pytest.raises(openai.InternalServerError) as info:
        ask(gw, "beta")
    assert info.value.status_code == 503 and "'beta'" in info.value.body["message"]
    assert info.value.body["code"] == "model_unavailable"
    for _ in range(3):
        ask(gw, "tiny")
    ask(gw, "alpha")
    assert "beta" in [m.id for m in gw.openai().models.list().data]  # still known
    pool["b"] = b.restart().wait_ready()
    gw.wait_ready(30)
    assert engines(gw)["b"]["state"] == "ready"
    ask(gw, "beta")


def test_an_engine_with_another_model_under_a_served_name_is_refused(pool, run_dir):
    from infer_worker.testing import write_tiny_llama

    gw = pool["gw"]
    other = write_tiny_llama(run_dir / "other" / "tiny", context_length=1024)  # also "tiny"
    pool["c"] = Engine(str(other), f"ipc://{run_dir}/pc.ipc", *ONE_THREAD, "--engine-id", "c")
    pool["c"].wait_ready()
    assert wait_for(lambda: "c" in engines(gw) and engines(gw)["c"]["detail"], 15)
    assert wait_for(lambda: "serves 'tiny' with another" in gw.output, 15)
    c = engines(gw)["c"]
    assert c["state"] == "not_ready" and "'tiny'" in c["detail"] and c["models"] == []
    for _ in range(4):
        ask(gw, "tiny")
    assert engines(gw)["c"]["requests_routed"] == 0
    assert httpx.get(gw.url + "/v1/models/tiny").json()["max_model_len"] == 2048
    pool.pop("c").stop()
