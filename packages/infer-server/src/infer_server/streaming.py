"""Server-sent events: `data: {json}\\n\\n` ... `data: [DONE]\\n\\n`.

`start_stream` waits for the first piece before answering, so errors the
engine reports up front (overloaded, context too long, unavailable) keep
their HTTP status; later errors become one `data: {"error": ...}` event.
Closing the body (client gone) closes the piece iterator, which aborts the
engine requests (see generation.Choice).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from starlette.responses import StreamingResponse

from .errors import APIError
from .generation import Piece

log = logging.getLogger("infer_server")
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def start_stream(
    pieces: AsyncIterator[Piece],
    opening: Callable[[], Iterable[dict]],
    on_piece: Callable[[Piece], Iterable[dict]],
    closing: Callable[[], Iterable[dict]],
) -> StreamingResponse:
    """Prefetch the first piece (raising its APIError), then stream the rest as SSE."""
    try:
        first = await anext(pieces)
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
                    yield sse(chunk)
                async for piece in pieces:
                    for chunk in on_piece(piece):
                        yield sse(chunk)
            for chunk in closing():
                yield sse(chunk)
        except APIError as exc:
            log.warning("stream failed: %s", exc.message)
            yield sse(exc.body())
        finally:
            await pieces.aclose()
        yield DONE

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)
