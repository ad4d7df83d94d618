"""The pages' JavaScript helpers, run as the browser loads them from the real gateway."""

from __future__ import annotations

from typing import Any

import pytest
from webui_platform import Gateway, Watched


def run(w: Watched, base: str, script: str, arg: Any = None) -> Any:
    """Evaluates `script` (an async function of (modules, arg)) on a gateway page."""
    if w.page.url == "about:blank":
        w.page.goto(base + "/static/favicon.svg")
    return w.page.evaluate(
        """async ([script, arg]) => {
          const load = (name) => import(`/static/${name}.js`);
          const modules = {
            sse: await load('sse'), api: await load('api'), charts: await load('charts'),
            completion: await load('completion'), dashboard: await load('dashboard'),
          };
          return (eval(script))(modules, arg);
        }""",
        [script, arg],
    )


def test_sse_parsing_survives_any_chunking(engineless_gateway: Gateway, desktop: Watched) -> None:
    stream = (
        ': comment\r\n\r\ndata: {"a": "h\u00e9llo \U0001f600"}\r\n\r\n'
        "event: x\ndata: line1\ndata: line2\n\ndata:[DONE]\n\n"
    )
    expected = ['{"a": "h\u00e9llo \U0001f600"}', "line1\nline2", "[DONE]"]
    for size in (1, 2, 3, 7, 1000):
        got = run(
            desktop,
            engineless_gateway.url,
            """async ({ sse }, [text, size]) => {
              const bytes = new TextEncoder().encode(text);
              const body = new ReadableStream({
                start(c) {
                  for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size));
                  c.close();
                },
              });
              const out = [];
              for await (const d of sse.sseData(body)) out.push(d);
              return out;
            }""",
            [stream, size],
        )
        assert got == expected, size
    tail = run(
        desktop, engineless_gateway.url, "async ({ sse }) => sse.splitEvents('data: a\\r\\n\\r')"
    )
    assert tail == {"blocks": [], "rest": "data: a\r\n\r"}  # half a CRLF waits for the rest


@pytest.mark.parametrize(
    ("status", "message", "retry", "words"),
    [
        (400, "This model's maximum context length is 2048 tokens.", None, ["rejected", "2048"]),
        (401, "", None, ["needs an API key"]),
        (404, "model 'x' not found", None, ["Not found", "model 'x'"]),
        (413, "", None, ["too large"]),
        (429, "", "3", ["overloaded (429)", "3 s"]),
        (503, "queue full", "1", ["overloaded (503)", "queue full"]),
        (502, "", None, ["unavailable (502)"]),
        (504, "", None, ["did not answer in time"]),
        (500, "boom", None, ["500", "boom"]),
    ],
)
def test_error_sentences(
    engineless_gateway: Gateway,
    desktop: Watched,
    status: int,
    message: str,
    retry: str | None,
    words: list[str],
) -> None:
    text = run(
        desktop,
        engineless_gateway.url,
        "async ({ api }, a) => api.describeStatus(...a)",
        [status, message, retry],
    )
    for word in words:
        assert word in text


def test_server_message_reads_openai_errors(engineless_gateway: Gateway, desktop: Watched) -> None:
    got = run(
        desktop,
        engineless_gateway.url,
        """async ({ api }) => [
          api.serverMessage({ error: { message: 'm1', type: 't' } }),
          api.serverMessage({ error: 'm2' }),
          api.serverMessage('plain text'),
          api.serverMessage(null),
        ]""",
    )
    assert got == ["m1", "m2", "plain text", ""]


def test_dashboard_sample_derives_rates(engineless_gateway: Gateway, desktop: Watched) -> None:
    metrics = {
        "cpu": {"utilization_percent": 12.5, "core_count": 2},
        "memory": {"used_gb": 2, "total_gb": 8, "utilization_percent": 25},
        "gpu": {"utilization_percent": 50, "memory_used_gb": 6, "memory_total_gb": 24},
        "engine": {
            "total_tokens_generated": 160,
            "concurrent_requests": 2,
            "queue_size": 1,
            "avg_queue_time_ms": 1,
            "avg_prefill_time_ms": 2,
            "avg_decode_time_ms": 3,
        },
        "cache": {"hit_rate": 0.25, "total_cached": 50, "total_capacity": 200},
    }
    s = run(
        desktop,
        engineless_gateway.url,
        "async ({ dashboard }, m) => dashboard.sample(m, 2000, { time: 0, tokens: 100 })",
        metrics,
    )
    assert s["tokensPerSecond"] == 30
    assert (s["running"], s["waiting"]) == (2, 1)
    assert (s["queueMs"], s["prefillMs"], s["decodeMs"]) == (1, 2, 3)
    assert (s["kvUse"], s["hitRate"]) == (25, 25)
    assert (s["cpu"], s["memory"], s["gpu"], s["gpuMemory"]) == (12.5, 25, 50, 25)
    restarted = run(
        desktop,
        engineless_gateway.url,
        "async ({ dashboard }, m) => dashboard.sample(m, 2000, { time: 0, tokens: 999 })",
        metrics,
    )
    assert restarted["tokensPerSecond"] is None  # counter went back: no rate, not a negative one
    empty = run(
        desktop,
        engineless_gateway.url,
        "async ({ dashboard }) => dashboard.sample({ gpu: null }, 1, null)",
    )
    assert empty["tokensPerSecond"] is None and empty["gpu"] is None and empty["kvUse"] is None


def test_reply_stats_prefer_the_servers_rate(engineless_gateway: Gateway, desktop: Watched) -> None:
    got = run(
        desktop,
        engineless_gateway.url,
        """async ({ completion }) => {
          const client = completion.replyStats({ started: 0, firstAt: 100, endedAt: 1100, chunks: 11,
                                           usage: null, performance: null, finish: 'length' });
          const server = completion.replyStats({ started: 0, firstAt: 100, endedAt: 1100, chunks: 11,
                                           usage: { completion_tokens: 12 },
                                           performance: { tokens_per_second: 42.5 }, finish: 'stop' });
          const none = completion.replyStats({ started: 0, firstAt: null, endedAt: 50, chunks: 0,
                                         usage: null, performance: null, finish: 'stopped' });
          return [client, server, none, completion.formatStats(client), completion.formatStats(none)];
        }""",
    )
    client, server, none, client_text, none_text = got
    assert client == {"ttftMs": 100, "tokensPerSecond": 10, "tokens": 11, "finish": "length"}
    assert server["tokensPerSecond"] == 42.5 and server["tokens"] == 12
    assert none["ttftMs"] is None and none["tokensPerSecond"] is None
    assert client_text == "TTFT 100 ms · 10.0 tok/s · 11 tokens · length"
    assert none_text == "stopped · TTFT — · — tok/s · 0 tokens"


def test_chart_scales(engineless_gateway: Gateway, desktop: Watched) -> None:
    got = run(
        desktop,
        engineless_gateway.url,
        """async ({ charts }) => [
          [0, 0.3, 1, 1.5, 3, 7, 42, 1000].map(charts.niceCeil),
          [10000, 60000, 90000, 300000].map(charts.formatAgo),
          [60000, 300000].map(charts.tickStepMs),
          [null, 3, 2.5, 0.25, 123.4, 45678].map(charts.formatValue),
        ]""",
    )
    assert got[0] == [1, 0.5, 1, 2, 5, 10, 50, 1000]
    assert got[1] == ["10s", "1m", "1m30s", "5m"]
    assert got[2] == [10000, 60000]
    assert got[3] == ["—", "3", "2.5", "0.25", "123", "46k"]


def test_markdown_replies_are_built_from_nodes(
    engineless_gateway: Gateway, desktop: Watched
) -> None:
    text = (
        "# Title\n\nSome **bold** and `code` <script>alert(1)</script>\n\n"
        "```python\nprint('<b>hi</b>')\n```\n"
        "- one\n- two *it*\n\n1. first\n2. second\n\n"
        "| a | b |\n|---|---|\n| 1 | <img src=x onerror=alert(1)> |\n"
    )
    got = run(
        desktop,
        engineless_gateway.url,
        """async (_, text) => {
          const { renderMarkdown } = await import('/static/markdown.js');
          const box = document.createElement('div');
          box.append(renderMarkdown(document, text));
          return {
            html: box.innerHTML,
            tags: [...box.children].map((e) => e.tagName.toUpperCase()),
            scripts: box.querySelectorAll('script, img, style').length,
            code: box.querySelector('pre code').textContent,
            lang: box.querySelector('pre code').getAttribute('data-lang'),
            items: [...box.querySelectorAll('li')].map((e) => e.textContent),
            cells: [...box.querySelectorAll('td')].map((e) => e.textContent),
            strong: box.querySelector('strong').textContent,
          };
        }""",
        text,
    )
    assert got["tags"] == ["H3", "P", "PRE", "UL", "OL", "TABLE"]
    assert got["scripts"] == 0 and "&lt;script&gt;" in got["html"]
    assert got["code"] == "print('<b>hi</b>')" and got["lang"] == "python"
    assert got["items"] == ["one", "two it", "first", "second"]
    assert got["cells"] == ["1", "<img src=x onerror=alert(1)>"]
    assert got["strong"] == "bold"
