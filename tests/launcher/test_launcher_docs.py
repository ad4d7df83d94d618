"""docs/ stays in sync with the code: every flag, env var, route and metric is documented."""

from __future__ import annotations

import argparse
import re

import pytest
from launcher_util import REPO
from test_launcher_containers import parser_of

from infer.cli import build_parser

DOCS = REPO / "docs"
PAGES = ("architecture", "api", "configuration", "deployment", "troubleshooting", "benchmarks")


def long_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        flags |= {s for s in action.option_strings if s.startswith("--") and s != "--help"}
    return flags


def infer_subparsers() -> dict[str, argparse.ArgumentParser]:
    parser, bench, why = build_parser(with_bench=True)
    assert bench is not None, why
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("infer has no subcommands")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_exists_with_a_title(page):
    text = (DOCS / f"{page}.md").read_text()
    assert text.startswith("# ")
    assert len(text) > 500


def test_every_flag_of_every_process_is_in_configuration_md():
    text = (DOCS / "configuration.md").read_text()
    parsers = {
        "infer-scheduler": parser_of("infer_scheduler"),
        "infer-server": parser_of("infer_server"),
        **{f"infer {name}": sub for name, sub in infer_subparsers().items()},
    }
    missing = {
        name: sorted(flag for flag in long_flags(p) if f"`{flag}`" not in text)
        for name, p in parsers.items()
    }
    assert not any(missing.values()), f"undocumented flags: {missing}"


def test_every_environment_variable_is_in_configuration_md():
    text = (DOCS / "configuration.md").read_text()
    pattern = re.compile(r"""(?:environ\.get|env\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    names = set()
    for path in (REPO / "packages").rglob("*.py"):
        names |= set(pattern.findall(path.read_text()))
    from infer_protocol.defaults import ENDPOINT_ENV

    names |= set(ENDPOINT_ENV)  # read through endpoint_from_env
    assert names >= {"HOST", "PORT", "ENGINE_ENDPOINT", "ZMQ_ENDPOINT", "API_KEY"}
    assert not sorted(n for n in names if f"`{n}`" not in text)


def test_every_route_is_in_api_md():
    from infer_server.app import api_routes

    text = (DOCS / "api.md").read_text()
    for route in api_routes():
        assert f"`{route.path}`" in text or f"/{route.path.lstrip('/')}]" in text, route.path
        for method in route.methods or ():
            if method != "HEAD":
                assert f"| {method} |" in text or f"{method} {route.path}" in text


def test_every_prometheus_metric_is_in_api_md():
    from infer_server.metrics import GatewayMetrics

    text = (DOCS / "api.md").read_text()
    rendered = GatewayMetrics().render().decode()
    names = {n for n in re.findall(r"^# TYPE (\S+) ", rendered, flags=re.M)}
    names = {n for n in names if not n.endswith("_created")}
    assert len(names) >= 10
    for name in names:
        assert f"`{name}`" in text or f"`{name}_total`" in text, name


def test_every_metrics_json_field_is_in_api_md():
    import attrs

    from infer_protocol import CacheStats, EngineStats

    text = (DOCS / "api.md").read_text()
    for cls in (EngineStats, CacheStats):
        for f in attrs.fields(cls):
            assert f'"{f.name}"' in text, f.name


def test_every_error_code_is_in_api_md():
    text = (DOCS / "api.md").read_text()
    source = "\n".join(p.read_text() for p in (REPO / "packages/infer-server/src").rglob("*.py"))
    codes = set(re.findall(r"""code=["']([a-z_]+)["']""", source))
    assert {"invalid_api_key", "model_not_found", "context_length_exceeded"} <= codes
    assert not sorted(c for c in codes if f"`{c}`" not in text)


def test_readme_quick_start_runs_serve_and_the_test_suite():
    text = (REPO / "README.md").read_text()
    assert "\n    uv run pytest\n" in text
    assert "uv run infer serve" in text
    assert "curl http://127.0.0.1:8000/v1/chat/completions" in text
    assert "from openai import OpenAI" in text
    for page in PAGES:
        assert f"docs/{page}.md" in text


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", [*(p for p in PAGES if p != "benchmarks"), "README"])
def test_relative_links_and_anchors_resolve(page):
    path = REPO / "README.md" if page == "README" else DOCS / f"{page}.md"
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: broken link {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path.name}: no anchor {target}"
