"""The chat page in a real browser against the real gateway and engine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect
from webui_platform import (
    MODEL_READY,
    Gateway,
    Watched,
    open_raw_stream,
    wait_engine_idle,
    wait_for_content,
)

RECORD_LENGTHS = """() => {
  window.__lengths = [];
  const box = document.getElementById('messages');
  new MutationObserver(() => {
    const texts = box.querySelectorAll('.msg.assistant .text');
    if (texts.length) window.__lengths.push(texts[texts.length - 1].textContent.length);
  }).observe(box, { subtree: true, childList: true, characterData: true });
}"""


def open_chat(w: Watched, base: str) -> Page:
    page = w.page
    page.goto(base + "/")
    page.wait_for_function(MODEL_READY)
    return page


def chat_bodies(w: Watched) -> list[dict]:
    """Bodies of the chat completion requests the page sent, oldest first."""
    bodies: list[dict] = []
    w.page.on(
        "request",
        lambda r: (
            bodies.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None
        ),
    )
    return bodies


def last_reply(page: Page):
    return page.locator(".msg.assistant").last


def test_chat_streams_replies_and_keeps_the_conversation(
    gateway: Gateway, desktop: Watched, artifacts: Path
) -> None:
    page = open_chat(desktop, gateway.url)
    bodies = chat_bodies(desktop)
    assert page.locator("#model option").first.inner_text() == "tiny"
    page.fill("#system-prompt", "You are terse.")
    page.focus("#temperature")
    page.keyboard.press("Home")  # keyboard only: temperature 0
    assert page.inner_text("#temperature-value") == "0.00"
    page.fill("#max-tokens", "64")

    page.evaluate(RECORD_LENGTHS)
    page.focus("#prompt")
    page.keyboard.type("Hello there")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#prompt") == "Hello there\nsecond line"
    assert page.locator(".msg").count() == 0  # Shift+Enter did not send
    page.keyboard.press("Enter")

    reply = last_reply(page)
    meta = reply.locator(".meta[data-finish]")
    meta.wait_for()
    assert page.input_value("#prompt") == ""
    assert page.locator(".msg.user .text").first.inner_text() == "Hello there\nsecond line"
    lengths = page.evaluate("window.__lengths")
    grown = sorted({n for n in lengths if n > 0})
    assert len(grown) >= 3, lengths  # the text arrived in pieces, not at once
    assert lengths == sorted(lengths)
    text = reply.locator(".text").inner_text()
    assert text.strip()
    assert float(meta.get_attribute("data-ttft-ms")) > 0
    assert float(meta.get_attribute("data-tokens-per-second")) > 0
    tokens = int(meta.get_attribute("data-tokens"))
    assert 1 <= tokens <= 64
    assert meta.get_attribute("data-finish") in ("length", "stop")
    assert "TTFT" in meta.inner_text() and "tok/s" in meta.inner_text()

    body = bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "tiny" and body["temperature"] == 0 and body["max_tokens"] == 64
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello there\nsecond line"},
    ]

    page.fill("#max-tokens", "8")
    page.fill("#prompt", "And again?")
    page.click("#send")
    page.locator(".msg.assistant").nth(1).locator(".meta[data-finish]").wait_for()
    second = bodies[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == text
    assert second[3]["content"] == "And again?"
    page.screenshot(path=str(artifacts / "chat-desktop.png"), full_page=True)

    # a visit to the dashboard in the same tab keeps the conversation and settings
    shown = page.locator(".msg").all_inner_texts()
    page.click("nav >> text=Dashboard")
    page.wait_for_url("**/dashboard")
    page.click("nav >> text=Chat")
    page.wait_for_function(MODEL_READY)
    assert page.locator(".msg").all_inner_texts() == shown
    assert page.input_value("#system-prompt") == "You are terse."
    assert page.input_value("#max-tokens") == "8"
    assert page.inner_text("#temperature-value") == "0.00"
    page.fill("#prompt", "Third?")
    page.press("#prompt", "Enter")
    page.locator(".msg.assistant").nth(2).locator(".meta[data-finish]").wait_for()
    assert [m["role"] for m in bodies[-1]["messages"]] == ["system"] + ["user", "assistant"] * 2 + [
        "user"
    ]
    page.click("#clear")
    assert page.locator(".msg").count() == 0
    page.reload()
    page.wait_for_selector("#empty-hint", state="visible")
    assert page.locator(".msg").count() == 0
    assert desktop.errors == []
    assert desktop.foreign_urls(gateway.url) == []


def test_stop_aborts_a_long_generation(gateway: Gateway, desktop: Watched) -> None:
    page = open_chat(desktop, gateway.url)
    page.fill("#max-tokens", "1500")
    for how in ("escape", "button"):
        # A random-weight model may end a reply by itself (an eos token) before
        # the stop lands; such a reply proves nothing, so ask again (bounded).
        for _attempt in range(4):
            page.fill("#prompt", "Tell me a very long story")
            page.press("#prompt", "Enter")
            reply = last_reply(page)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.msg.assistant .text')].pop()"
                ".textContent.length > 10"
            )
            if page.is_enabled("#stop"):
                break
            reply.locator(".meta[data-finish]").wait_for()
        assert page.is_enabled("#stop") and page.is_disabled("#send")
        if how == "escape":
            page.keyboard.press("Escape")
        else:
            page.click("#stop")
        meta = reply.locator('.meta[data-finish="stopped"]')
        meta.wait_for()
        assert meta.inner_text().startswith("stopped")
        assert int(meta.get_attribute("data-tokens")) < 1500
        text = reply.locator(".text").inner_text()
        time.sleep(0.7)
        assert reply.locator(".text").inner_text() == text  # nothing more arrives
        assert page.is_enabled("#send") and page.is_disabled("#stop")
        engine = wait_engine_idle(gateway.url)  # the abort reached the engine
        assert engine["total_tokens_generated"] > 0
    assert desktop.errors == []


def test_too_long_prompt_shows_the_servers_message(gateway: Gateway, desktop: Watched) -> None:
    page = open_chat(desktop, gateway.url)
    long_text = "hello " * 2200
    page.fill("#prompt", long_text)
    page.press("#prompt", "Enter")
    error = page.locator(".msg.error")
    error.wait_for()
    message = error.inner_text()
    assert "rejected" in message and "context length" in message and "2048" in message
    assert page.locator(".msg.user.failed").count() == 1
    assert page.locator(".msg.assistant").count() == 0
    assert page.input_value("#prompt") == long_text  # given back to edit
    assert page.is_enabled("#send")


def test_overload_and_engine_down_get_clear_messages(
    gateway: Gateway, engineless_gateway: Gateway, desktop: Watched
) -> None:
    page = open_chat(desktop, gateway.url)
    running = open_raw_stream(gateway.url, 1500)
    waiting = None
    try:
        wait_for_content(running)
        waiting = open_raw_stream(gateway.url, 4)
        deadline = time.monotonic() + 15
        while httpx.get(gateway.url + "/v1/metrics").json()["engine"]["queue_size"] < 1:
            assert time.monotonic() < deadline, "second request never queued"
            time.sleep(0.1)
        # one running and one waiting: the engine refuses a third (a real 503)
        page.fill("#prompt", "Are you busy?")
        page.press("#prompt", "Enter")
        error = page.locator(".msg.error")
        error.wait_for()
        assert "overloaded (503)" in error.inner_text()
        assert "Try again" in error.inner_text()
    finally:
        running.close()
        if waiting is not None:
            waiting.close()
    wait_engine_idle(gateway.url, timeout=30)

    page.goto(engineless_gateway.url + "/")
    notice = page.locator("#notice")
    notice.wait_for()
    assert "engine is unavailable (502)" in notice.inner_text()
    assert page.is_disabled("#model")
    page.fill("#prompt", "anyone there?")
    page.press("#prompt", "Enter")
    expect(notice).to_contain_text("No model is available")
    assert page.locator(".msg").count() == 0


def _sse_chunk(text: str) -> str:
    delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(delta)}\n\n"


def test_broken_streams_are_reported(gateway: Gateway, desktop: Watched) -> None:
    """A stream cut short or failing midway (faults the healthy test engine cannot
    make on demand, so these two answers are canned; the page is the real one)."""
    page = open_chat(desktop, gateway.url)
    answers = iter(
        [
            _sse_chunk("partial ") + _sse_chunk("reply"),
            _sse_chunk("half")
            + 'data: {"error": {"message": "engine crashed", "type": "server_error"}}\n\n',
        ]
    )
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body=next(answers)
        ),
    )
    page.fill("#prompt", "one")
    page.press("#prompt", "Enter")
    expect(page.locator(".msg.error")).to_contain_text("cut off")
    assert page.locator(".msg.assistant .text").last.inner_text() == "partial reply"
    page.fill("#prompt", "two")
    page.press("#prompt", "Enter")
    expect(page.locator(".msg.error").nth(1)).to_contain_text("The stream failed: engine crashed")
    assert page.locator(".msg.assistant .text").last.inner_text() == "half"
    assert page.is_enabled("#send") and page.is_disabled("#stop")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 12}},
            "required": ["city"],
        },
    },
}


def test_tool_calls_are_shown_and_answered_with_results(
    gateway: Gateway, desktop: Watched, artifacts: Path
) -> None:
    page = open_chat(desktop, gateway.url)
    bodies = chat_bodies(desktop)
    page.click("#clear")
    page.fill("#tools", "[not json")
    page.fill("#prompt", "Weather in Paris?")
    page.click("#send")
    expect(page.locator("#notice")).to_contain_text("Tools must be a JSON array")
    assert bodies == [] and page.locator(".msg").count() == 0  # nothing was sent

    page.fill("#tools", json.dumps([WEATHER_TOOL]))
    page.select_option("#tool-choice", "required")  # the grammar makes even a tiny model call
    page.fill("#max-tokens", "64")
    page.click("#send")
    reply = last_reply(page)
    reply.locator(".meta[data-finish]").wait_for()
    assert reply.locator(".meta").get_attribute("data-finish") == "tool_calls"
    call = reply.locator(".tool-call")
    assert call.count() == 1
    assert call.locator(".tool-name").inner_text() == "get_weather()"
    arguments = json.loads(call.locator("pre").inner_text())
    assert isinstance(arguments["city"], str) and 1 <= len(arguments["city"]) <= 12
    call_id = call.get_attribute("data-call-id")
    assert call_id.startswith("call_")
    assert bodies[0]["tools"] == [WEATHER_TOOL] and bodies[0]["tool_choice"] == "required"
    expect(page.locator("#notice")).to_contain_text("get_weather(): your next message")

    # the next message is the call's result; the model is asked again with the whole history
    page.select_option("#tool-choice", "none")
    page.fill("#prompt", "sunny, 21 C")
    page.click("#send")
    last_reply(page).locator(".meta[data-finish]").wait_for()
    assert page.locator(".msg.tool .text").inner_text() == "sunny, 21 C"
    sent = bodies[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["content"] is None and sent[1]["tool_calls"][0]["id"] == call_id
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == arguments
    assert sent[2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"}
    assert bodies[1]["tool_choice"] == "none"
    assert last_reply(page).locator(".meta").get_attribute("data-finish") in ("length", "stop")
    expect(page.locator("#notice")).to_be_hidden()
    page.screenshot(path=str(artifacts / "chat-tools.png"), full_page=True)

    # the calls survive a reload of the tab
    page.reload()
    page.wait_for_function(MODEL_READY)
    assert page.locator(".tool-call .tool-name").inner_text() == "get_weather()"
    page.click("#clear")
    page.fill("#tools", "")
    assert desktop.errors == []
