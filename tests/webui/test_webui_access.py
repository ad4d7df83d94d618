"""Who can use the UI: the public paths, and a 375 px wide phone."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from webui_platform import MODEL_READY, Gateway, Watched

from infer_server.webui import is_public_path


def no_sideways_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_public_paths_are_the_ui_only() -> None:
    assert (
        is_public_path("/") and is_public_path("/dashboard") and is_public_path("/static/chat.js")
    )
    for path in ("/v1/models", "/v1/metrics", "/metrics", "/tokenize", "/dashboardx", "/staticx"):
        assert not is_public_path(path), path


def test_pages_fit_a_phone(gateway: Gateway, phone: Watched, artifacts: Path) -> None:
    page = phone.page
    page.goto(gateway.url + "/")
    page.wait_for_function(MODEL_READY)
    assert page.evaluate("document.getElementById('settings').open") is False  # folded away
    page.click("#settings summary")
    page.fill("#max-tokens", "24")
    page.click("#settings summary")
    page.focus("#prompt")
    page.keyboard.type("Hi from a phone")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant .meta[data-finish]").wait_for()
    assert page.is_visible("#send") and page.is_visible("#stop")
    assert no_sideways_scroll(page)
    page.screenshot(path=str(artifacts / "chat-375px.png"), full_page=True)

    page.goto(gateway.url + "/dashboard")
    expect(page.locator("#engine-status")).to_have_attribute("data-state", "ok")
    page.wait_for_function(
        "() => Number(document.getElementById('chart-system').dataset.points) >= 1"
    )
    assert no_sideways_scroll(page)
    width = page.evaluate("document.getElementById('chart-tokens').clientWidth")
    assert 250 <= width <= 375
    page.screenshot(path=str(artifacts / "dashboard-375px.png"), full_page=True)
    assert phone.errors == []
