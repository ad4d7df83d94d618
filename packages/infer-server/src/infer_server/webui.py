"""Web UI routes: the chat at `/`, the dashboard at `/dashboard`, assets at `/static/`.

Invariants: every file served comes from the package's `static/` directory
(shipped as package data); pages carry a Content-Security-Policy that allows
only this origin, so the UI never loads anything from elsewhere. The pages and
assets hold no data, so they are public (`is_public_path`) even when the API
wants a key: the page asks for the key when /v1/models answers 401.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/dashboard": "dashboard.html"}

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public_path(path: str) -> bool:
    """True for the UI's pages and assets, which an API-key check must let through."""
    return path in PAGES or path.startswith("/static/")


def _page(url_path: str, filename: str) -> Route:
    """A GET route serving one HTML page of the static directory."""
    file = STATIC_DIR / filename

    async def endpoint(request: Request) -> FileResponse:
        return FileResponse(file, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    return Route(url_path, endpoint, methods=["GET"], name=f"webui:{filename}")


def routes() -> list[BaseRoute]:
    """Routes serving the packaged web UI; mount them after the API routes."""
    pages: list[BaseRoute] = [_page(url_path, name) for url_path, name in PAGES.items()]
    return [*pages, Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static")]
