"""The web UI over plain HTTP from the real gateway: content types, headers, offline assets."""

from __future__ import annotations

import re

import httpx
import pytest
from webui_platform import Gateway

from infer_server.webui import STATIC_DIR

ASSET_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".svg": ("image/svg+xml",),
    ".html": ("text/html",),
}


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_pages_are_html_with_a_same_origin_policy(gateway: Gateway, path: str) -> None:
    r = httpx.get(gateway.url + path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<!doctype html>" in r.text.lower()
    head = httpx.head(gateway.url + path)
    assert head.status_code == 200
    assert httpx.post(gateway.url + path).status_code == 405


def test_every_asset_is_served_with_its_content_type(gateway: Gateway) -> None:
    files = sorted(p for p in STATIC_DIR.iterdir() if p.is_file())
    assert {p.suffix for p in files} >= {".js", ".css", ".html", ".svg"}
    for path in files:
        r = httpx.get(f"{gateway.url}/static/{path.name}")
        assert r.status_code == 200, path.name
        assert r.headers["content-type"].split(";")[0] in ASSET_TYPES[path.suffix], path.name
        assert r.content == path.read_bytes()


def test_pages_reference_only_their_own_assets(gateway: Gateway) -> None:
    for page in ("/", "/dashboard"):
        html = httpx.get(gateway.url + page).text
        refs = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert refs, page
        for ref in refs:
            assert ":" not in ref and not ref.startswith("/"), (
                page,
                ref,
            )  # relative: same origin, any prefix
            assert httpx.get(f"{gateway.url}/{ref}").status_code == 200, (page, ref)


def test_assets_name_no_other_host() -> None:
    """Offline by design: no URL to elsewhere (the SVG namespace is a name, not a fetch)."""
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|fonts\.", text), (
            path.name
        )


def test_missing_and_escaping_paths_are_not_found(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/static/nope.js").status_code == 404
    assert httpx.get(gateway.url + "/static/%2e%2e/webui.py").status_code == 404
    assert httpx.get(gateway.url + "/static/..%2fwebui.py").status_code == 404
    # the API still answers beside the UI
    assert httpx.get(gateway.url + "/v1/models").json()["data"]
