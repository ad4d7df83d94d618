"""Counting output tokens with one tokenizer for every server compared.

Sources, in the order `cli` tries them: a `--tokenizer` tokenizer.json
file (explicit wins), the server's own `POST /tokenize` ({"model",
"prompt"} -> {"tokens", "count"}), else the number of streamed content
chunks. Special tokens (BOS) are never counted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs
import httpx
from tokenizers import Tokenizer

from infer.bench.sse import RequestResult

CHUNKS = "stream chunks (no tokenizer: one chunk counted as one token)"


class TokenizerError(RuntimeError):
    """A tokenizer that cannot be loaded or used."""


@attrs.frozen
class FileCounter:
    """Counts with a `tokenizers` tokenizer.json, locally."""

    tokenizer: Tokenizer
    source: str

    async def count(self, texts: list[str]) -> list[int]:
        """Token counts of `texts`, without special tokens."""
        return [len(self.tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]


@attrs.frozen
class ServerCounter:
    """Counts with a server's `POST /tokenize`; `extra` holds fields the server accepted."""

    client: httpx.AsyncClient
    url: str
    model: str
    headers: dict[str, str]
    extra: dict
    source: str
    parallel: int = 8

    async def _one(self, text: str, gate: asyncio.Semaphore) -> int:
        if not text:
            return 0
        async with gate:
            body = {"model": self.model, "prompt": text, **self.extra}
            response = await self.client.post(self.url, json=body, headers=self.headers)
        if response.status_code != 200:
            raise TokenizerError(f"{self.url} answered HTTP {response.status_code}")
        return _count_of(response.json())

    async def count(self, texts: list[str]) -> list[int]:
        """Token counts of `texts`; raises TokenizerError or httpx.HTTPError on failure."""
        gate = asyncio.Semaphore(self.parallel)
        return list(await asyncio.gather(*(self._one(t, gate) for t in texts)))


def _count_of(payload: object) -> int:
    if isinstance(payload, dict):
        if isinstance(payload.get("count"), int):
            return payload["count"]
        if isinstance(payload.get("tokens"), list):
            return len(payload["tokens"])
    raise TokenizerError("a /tokenize answer needs an integer 'count' or a 'tokens' list")


def load_file_counter(path: str | Path) -> FileCounter:
    """A FileCounter from a tokenizer.json (or a directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad files
        raise TokenizerError(f"cannot load tokenizer {path}: {exc}") from exc
    return FileCounter(tokenizer, f"tokenizer file {path}")


async def probe_server(
    client: httpx.AsyncClient, root: str, model: str, headers: dict[str, str]
) -> ServerCounter | None:
    """A ServerCounter if `root`/tokenize counts a sample prompt, else None."""
    url = root + "/tokenize"
    for extra in ({"add_special_tokens": False}, {}):
        body = {"model": model, "prompt": "Hello world", **extra}
        try:
            response = await client.post(url, json=body, headers=headers)
            if response.status_code == 200 and _count_of(response.json()) > 0:
                return ServerCounter(client, url, model, headers, extra, f"server {url}")
        except (httpx.HTTPError, ValueError, TokenizerError):
            return None
        if response.status_code not in (400, 422):
            return None
    return None


async def count_outputs(
    counter: FileCounter | ServerCounter | None, results: list[RequestResult]
) -> str:
    """Set `output_tokens` on every successful result; returns the source used.

    Falls back to chunk counts when there is no counter or it fails.
    """
    done = [r for r in results if r.ok]
    if counter is not None:
        try:
            for result, n in zip(done, await counter.count([r.text for r in done]), strict=True):
                result.output_tokens = n
            return counter.source
        except (TokenizerError, httpx.HTTPError, ValueError):
            pass
    for result in done:
        result.output_tokens = result.chunks
    return CHUNKS
