"""A small real OpenAI-shaped streaming server for testing `infer bench`.

Run: python bench_sse_app.py --port P [--delay-ms D] [--no-tokenize] [--api-key K].
Each request streams a role chunk, then max_tokens content chunks "w{i} "
D ms apart, a finish chunk, a usage chunk and [DONE]. Prompts containing
FAIL400 get a 400 error, FAILMID an error event mid-stream, CUT a stream
closed without a finish, SLOW waits 2 s before the first chunk, BADJSON and
BADSHAPE send malformed chunks. /tokenize counts whitespace-separated words.
GET /stats gives the received bodies and the most streams in flight at once.
With --cache it plays a prefix cache over words: a prompt's hits are its
longest word prefix shared with an earlier prompt, reported as usage
prompt_tokens_details.cached_tokens and summed in GET /v1/metrics ("cache":
{"hits", "misses"}, as infer's gateway does); with --fail-turn T a chat
request whose last message contains "turn T:" gets a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


def make_app(
    delay: float,
    tokenize: bool,
    api_key: str | None,
    cache: bool = False,
    fail_turn: int | None = None,
) -> Starlette:
    state = {"bodies": [], "inflight": 0, "max_inflight": 0, "hits": 0, "misses": 0}
    seen: list[list[str]] = []

    def cached_words(words: list[str]) -> int:
        best = 0
        for old in seen:
            n = 0
            while n < min(len(old), len(words)) and old[n] == words[n]:
                n += 1
            best = max(best, n)
        seen.append(words)
        state["hits"] += best
        state["misses"] += len(words) - best
        return best

    def prompt_text(body: dict) -> str:
        if "messages" in body:
            return " ".join(m["content"] for m in body["messages"])
        return body.get("prompt", "")

    def error(status: int, message: str) -> JSONResponse:
        err = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return JSONResponse({"error": err}, status_code=status)

    async def models(request: Request) -> JSONResponse:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return error(401, "bad api key")
        return JSONResponse({"object": "list", "data": [{"id": "test-model", "object": "model"}]})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state)

    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse({"cache": {"hits": state["hits"], "misses": state["misses"]}})

    async def tokenize_route(request: Request) -> JSONResponse:
        body = await request.json()
        words = body["prompt"].split()
        return JSONResponse({"tokens": list(range(len(words))), "count": len(words)})

    async def generate(request: Request):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return error(401, "bad api key")
        body = await request.json()
        state["bodies"].append(body)
        if body.get("model") != "test-model":
            return error(404, f"model {body.get('model')!r} not found")
        text = prompt_text(body)
        if "FAIL400" in text:
            return error(400, "prompt asked for a failure")
        last = body["messages"][-1]["content"] if "messages" in body else ""
        if fail_turn is not None and f"turn {fail_turn}:" in last:
            return error(400, f"turn {fail_turn} fails")
        cached = cached_words(text.split()) if cache else None
        chat = request.url.path.endswith("/chat/completions")
        n = int(body.get("max_tokens", 16))

        def chunk(content: str | None, finish: str | None = None) -> str:
            if chat:
                delta = {} if content is None else {"content": content}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": content or "", "finish_reason": finish}
            return "data: " + json.dumps({"id": "x", "choices": [choice]}) + "\n\n"

        async def stream():
            state["inflight"] += 1
            state["max_inflight"] = max(state["max_inflight"], state["inflight"])
            try:
                if chat:
                    yield 'data: {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n'
                yield ": keep-alive comment\n\n"
                if "SLOW" in text:
                    await asyncio.sleep(2.0)
                if "BADJSON" in text:
                    yield "data: {not json\n\n"
                if "BADSHAPE" in text:
                    yield 'data: {"choices": [{"delta": "oops"}]}\n\n'
                    yield 'data: ["a list"]\n\n'
                for i in range(n):
                    await asyncio.sleep(delay)
                    if "FAILMID" in text and i == 2:
                        yield 'data: {"error": {"message": "engine exploded"}}\n\n'
                        return
                    if "CUT" in text and i == 2:
                        return
                    yield chunk(f"w{i} ")
                yield chunk(None, "length")
                usage = {"prompt_tokens": len(text.split()), "completion_tokens": n}
                if cached is not None:
                    usage["prompt_tokens_details"] = {"cached_tokens": cached}
                yield "data: " + json.dumps({"id": "x", "choices": [], "usage": usage}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:
                state["inflight"] -= 1

        return StreamingResponse(stream(), media_type="text/event-stream")

    routes = [
        Route("/v1/models", models),
        Route("/health", lambda request: JSONResponse({"status": "ok"})),
        Route("/stats", stats),
        Route("/v1/chat/completions", generate, methods=["POST"]),
        Route("/v1/completions", generate, methods=["POST"]),
    ]
    if tokenize:
        routes.append(Route("/tokenize", tokenize_route, methods=["POST"]))
    if cache:
        routes.append(Route("/v1/metrics", metrics))
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--no-tokenize", dest="tokenize", action="store_false")
    parser.add_argument("--api-key")
    parser.add_argument("--cache", action="store_true")
    parser.add_argument("--fail-turn", type=int)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    app = make_app(args.delay_ms / 1000.0, args.tokenize, args.api_key, args.cache, args.fail_turn)
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
