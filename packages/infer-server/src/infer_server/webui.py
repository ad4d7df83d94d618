"""Web UI routes (chat at /, dashboard at /dashboard); filled in by the web UI issue."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    """Routes serving the packaged web UI; empty until the UI lands."""
    return []
