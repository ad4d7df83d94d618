"""The server's prefix-cache counters around a level, from infer's GET /v1/metrics.

A level's figures are the difference of the counters read before and after
it, so the warmup and earlier levels do not count (other clients' traffic
in between would). They are None when the server has no such endpoint (not
an infer gateway), it fails, or the counters went backwards (an engine
restarted during the level).
"""

from __future__ import annotations

import httpx


async def counters(
    client: httpx.AsyncClient, root: str, headers: dict[str, str]
) -> tuple[int, int] | None:
    """(hits, misses) in prompt tokens from `root`/v1/metrics, or None."""
    try:
        response = await client.get(root + "/v1/metrics", headers=headers)
        if response.status_code != 200:
            return None
        cache = response.json()["cache"]
        return int(cache["hits"]), int(cache["misses"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def delta(before: tuple[int, int] | None, after: tuple[int, int] | None) -> dict | None:
    """{"hits", "queries", "hit_rate"} of the prompt tokens between two readings, or None."""
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    if hits < 0 or misses < 0:
        return None
    queries = hits + misses
    return {
        "hits": hits,
        "queries": queries,
        "hit_rate": round(hits / queries, 4) if queries else None,
    }
