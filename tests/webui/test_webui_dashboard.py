"""The dashboard in a real browser: engine status, live charts fed by real requests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect
from webui_platform import (
    Gateway,
    Watched,
    open_raw_stream,
    wait_engine_idle,
    wait_for_content,
)

CANVAS_IDS = ("tokens", "requests", "latency", "cache", "system")


def chart(page: Page, name: str, key: str) -> str:
    return page.get_attribute(f"#chart-{name}", f"data-{key}") or ""


def pixels(page: Page) -> list[str]:
    return page.evaluate(
        "(ids) => ids.map((id) => document.getElementById('chart-' + id).toDataURL())",
        list(CANVAS_IDS),
    )


def generate(base: str, max_tokens: int) -> None:
    r = httpx.post(
        base + "/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "count to a hundred"}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text


def test_dashboard_charts_follow_real_requests(
    gateway: Gateway, desktop: Watched, artifacts: Path
) -> None:
    page = desktop.page
    started = time.monotonic()
    page.goto(gateway.url + "/dashboard")  # the default: a poll every 2 s
    status = page.locator("#engine-status")
    expect(status).to_have_attribute("data-state", "ok")
    expect(status).to_have_text("Engine ready")
    page.wait_for_function(
        "() => Number(document.getElementById('chart-tokens').dataset.points) >= 1"
    )
    before_pixels = pixels(page)

    # one request decoding and one queued behind it (the engine runs one at a time)
    running = open_raw_stream(gateway.url, 1500)
    waiting = None
    try:
        wait_for_content(running)
        waiting = open_raw_stream(gateway.url, 4)
        page.wait_for_function(
            """() => {
              const latest = JSON.parse(document.getElementById('chart-requests').dataset.latest);
              const rate = Number(document.getElementById('chart-tokens').dataset.max);
              return latest[0] === 1 && latest[1] === 1 && rate > 0;
            }""",
            timeout=20_000,
        )
        legend = page.inner_text("#legend-requests").split()
        assert legend == ["running", "1", "waiting", "1"]
    finally:
        running.close()
        if waiting is not None:
            waiting.close()
    wait_engine_idle(gateway.url, timeout=30)
    generate(gateway.url, 20)
    total = httpx.get(gateway.url + "/v1/metrics").json()["engine"]["total_tokens_generated"]
    page.wait_for_function(
        "(n) => Number(document.getElementById('tile-tokens').textContent.replace(/,/g, '')) >= n",
        arg=total,
        timeout=15_000,
    )
    row = page.locator("#engines-rows tr")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-state", "ready")
    assert int(row.locator("td").nth(6).inner_text().replace(",", "")) >= 3  # routed there
    queue_ms, prefill_ms, decode_ms = json.loads(chart(page, "latency", "latest"))
    assert prefill_ms > 0 and decode_ms > 0 and queue_ms >= 0
    kv_use, hit_rate = json.loads(chart(page, "cache", "latest"))
    assert kv_use is not None and 0 <= hit_rate <= 100
    cpu, memory, gpu, gpu_memory = json.loads(chart(page, "system", "latest"))
    assert 0 <= cpu <= 100 and 0 < memory <= 100
    assert gpu is None and gpu_memory is None  # no GPU here: a gap, not a zero
    assert page.inner_text("#tile-gpu") == "none"
    assert page.inner_text("#tile-cpu").endswith("%")
    after_pixels = pixels(page)
    assert all(a != b for a, b in zip(before_pixels, after_pixels, strict=True))
    page.screenshot(path=str(artifacts / "dashboard-desktop.png"), full_page=True)

    elapsed = time.monotonic() - started
    polls = sum(u.endswith("/v1/metrics") for u in desktop.urls)
    assert elapsed / 2 - 2 <= polls <= elapsed / 2 + 2, (polls, elapsed)
    assert desktop.errors == []
    assert desktop.foreign_urls(gateway.url) == []


def test_dashboard_shows_an_engine_that_is_not_ready(
    engineless_gateway: Gateway, desktop: Watched
) -> None:
    page = desktop.page
    page.goto(engineless_gateway.url + "/dashboard?interval=500")
    status = page.locator("#engine-status")
    expect(status).to_have_attribute("data-state", "bad")
    expect(status).to_have_text("Engine not ready")
    expect(page.locator("#status-detail")).not_to_be_empty()  # the gateway's reason
    row = page.locator("#engines-rows tr")  # its one engine, not contacted yet
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-state", "not_ready")
    expect(row.locator("td").nth(1)).to_have_text("not ready")
    page.wait_for_function(
        "() => Number(document.getElementById('chart-system').dataset.points) >= 2"
    )
    assert float(json.loads(chart(page, "system", "latest"))[0]) >= 0  # the host is still charted
