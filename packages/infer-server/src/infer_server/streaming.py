"""Server-sent events: `data: {json}\\n\\n` ... `data: [DONE]\\n\\n`.

`start_stream` waits for the first piece before answering, so errors the
engine reports up front (overloaded, context too long, unavailable) keep
their HTTP status; later errors become one `data: {"error": ...}` event.
Closing the body (client gone) closes the piece iterator, which aborts the
engine requests (see generation.Choice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .errors import APIError
from .pieces import Piece

log = logging.getLogger("infer_server")
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class TextEvent:
    """The SSE bytes of one chunk shape whose only varying field is a text string.

    The chunk is encoded once with a placeholder; `render(text)` splices the JSON
    string of `text` in, so a streamed token costs one short `json.dumps`
    instead of encoding the whole chunk. Invariant: render(t) == sse(chunk with t).
    """

    PLACEHOLDER = "\x00text\x00"

    def __init__(self, chunk: dict) -> None:
        encoded = sse(chunk)
        marker = json.dumps(self.PLACEHOLDER).encode()
        if encoded.count(marker) != 1:
            raise ValueError("the chunk must hold the placeholder text exactly once")
        self._head, self._tail = encoded.split(marker)

    def render(self, text: str) -> bytes:
        return self._head + json.dumps(text, ensure_ascii=False).encode() + self._tail


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body iterator however the response ends, then calls `on_end`.

    When the client leaves while a chunk is being sent, Starlette cancels the send and
    leaves the body generator suspended at its `yield`; only the garbage collector
    would close it (seconds later, when a reference cycle holds it), and until then the
    engine keeps generating for nobody. Closing it here aborts the engine requests now.
    """

    on_end: Callable[[], Awaitable[object]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            if self.on_end is not None:  # also when the body never started
                await self.on_end()


async def _first_unless_gone(pieces: AsyncIterator[Piece], receive: Receive | None) -> Piece:
    """The first piece; if the client disconnects first (its request may still wait in the
    engine's queue), cancel the wait, which aborts the engine requests, and raise 499."""
    if receive is None:
        return await anext(pieces)

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    first = asyncio.ensure_future(anext(pieces))
    watch = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({first, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left = watch.done() and not watch.cancelled()  # the disconnect message is used up
        watch.cancel()
        if left or not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await first
    if left:
        raise APIError(499, "The client closed the request", code="client_closed_request")
    return first.result()


async def start_stream(
    pieces: AsyncIterator[Piece],
    opening: Callable[[], Iterable[dict]],
    on_piece: Callable[[Piece], Iterable[dict | bytes]],
    closing: Callable[[], Awaitable[Iterable[dict]]],
    on_end: Callable[[], Awaitable[object]],
    receive: Receive | None = None,
) -> StreamingResponse:
    """Prefetch the first piece (raising its APIError), then stream the rest as SSE.

    `on_piece` gives chunk dicts or ready SSE bytes (a TextEvent's); `closing`
    the chunks after the last piece. `on_end` is awaited when the body ends,
    however it ends (after the pieces are closed). With the request's
    `receive`, a client that leaves before the first piece ends it.
    """
    try:
        first = await _first_unless_gone(pieces, receive)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await pieces.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in opening():
                yield sse(chunk)
            if first is not None:
                for chunk in on_piece(first):
                    yield chunk if isinstance(chunk, bytes) else sse(chunk)
                async for piece in pieces:
                    for chunk in on_piece(piece):
                        yield chunk if isinstance(chunk, bytes) else sse(chunk)
            for chunk in await closing():
                yield sse(chunk)
        except APIError as exc:
            log.warning("stream failed: %s", exc.message)
            yield sse(exc.body())
        finally:
            await pieces.aclose()
            await on_end()
        yield DONE

    response = ClosingStreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)
    response.on_end = on_end
    return response
