"""A server that wants an API key: the page asks for it, keeps it in the tab, sends it."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect
from webui_platform import API_KEY, MODEL_READY, Gateway, Watched


def test_api_key_is_asked_for_kept_in_the_tab_and_sent(
    keyed_gateway: Gateway, desktop: Watched
) -> None:
    base = keyed_gateway.url
    assert httpx.get(base + "/v1/models").status_code == 401
    for path in ("/", "/dashboard", "/static/chat.js"):
        assert httpx.get(base + path).status_code == 200, path  # the UI itself holds no data

    page = desktop.page
    sent: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers) if r.url.endswith("/v1/chat/completions") else None,
    )
    page.goto(base + "/")
    form = page.locator("#key-form")
    expect(form).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("API key")
    expect(page.locator("#api-key")).to_be_focused()
    page.keyboard.type("not-the-key")
    page.keyboard.press("Enter")
    expect(page.locator("#key-hint")).to_contain_text("refused")
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Enter")
    page.wait_for_function(MODEL_READY)
    expect(form).to_be_hidden()
    expect(page.locator("#notice")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('infer.apiKey')") == API_KEY

    page.fill("#max-tokens", "4")
    page.fill("#prompt", "hello")
    page.press("#prompt", "Enter")
    page.locator(".msg.assistant .meta[data-finish]").wait_for()
    assert sent[-1]["authorization"] == f"Bearer {API_KEY}"

    page.goto(base + "/dashboard")  # same tab: the key is still there
    page.wait_for_function(
        "() => Number(document.getElementById('chart-tokens').dataset.points) >= 1"
    )
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#engine-status")).to_have_attribute("data-state", "ok")
    assert page.inner_text("#tile-requests") != "—"
    assert desktop.errors == []
