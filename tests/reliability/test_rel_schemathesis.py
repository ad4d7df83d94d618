"""Hostile HTTP, generated: schemathesis (v4) against the live gateway's /openapi.json.

The engine runs a tiny random Llama with a 128-token context, so every
generated max_tokens (bounded by the served context in the OpenAPI document)
is cheap on a CPU. Valid (positive) cases and, for request bodies, invalid
(negative) ones. Checks: no 5xx, documented status codes, content types and
response bodies that match the schema. At least 1,000 cases in all.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from rel_procs import Engine, Gateway
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

# valid requests that generate text are the slow ones; invalid ones are answered 400 at once
POSITIVE_CASES = {"POST /v1/chat/completions": 40, "POST /v1/completions": 40}
POSITIVE_DEFAULT = 100
NEGATIVE_CASES = 200
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_gateway(rel_dir):
    from infer_worker.testing import write_tiny_llama

    model = write_tiny_llama(rel_dir / "tiny128", context_length=128)
    engine = Engine(str(model), f"ipc://{rel_dir}/fuzz.ipc").wait_ready()
    gw = Gateway(engine.endpoint, "--request-timeout", "60").wait_ready()
    yield gw
    gw.stop()
    engine.stop()


def run_operation(operation, mode: GenerationMode, examples: int, seen: dict) -> None:
    """Generate `examples` cases of one operation in one mode; call and check each."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=60)
        seen["cases"] += 1
        key = f"{operation.method.upper()} {operation.path} {response.status_code}"
        seen["statuses"][key] = seen["statuses"].get(key, 0) + 1

    run()


def test_generated_requests_never_5xx_nor_break_the_schema(fuzz_gateway):
    schema = schemathesis.openapi.from_url(fuzz_gateway.url + "/openapi.json")
    seen: dict = {"cases": 0, "statuses": {}}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"
        examples = POSITIVE_CASES.get(name, POSITIVE_DEFAULT)
        run_operation(operation, GenerationMode.POSITIVE, examples, seen)
        if operation.method.upper() == "POST":  # only bodies can be made invalid
            run_operation(operation, GenerationMode.NEGATIVE, NEGATIVE_CASES, seen)
    print(seen)
    assert seen["cases"] >= 1000, seen
    assert not [key for key in seen["statuses"] if int(key.rsplit(" ", 1)[1]) >= 500]
    assert "Traceback" not in fuzz_gateway.output
