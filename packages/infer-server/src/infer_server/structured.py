"""Request fields that constrain the output -> one protocol Constraint (or None).

Chat completions: `response_format` ({"type": "text" | "json_object" |
"json_schema", "json_schema": {"name", "schema", "strict", "description"}}).
Completions: the same, plus vLLM's extension fields `guided_json`,
`guided_regex`, `guided_choice` and `guided_grammar` (xgrammar EBNF). At
most one of them per request. Schemas are checked against their JSON Schema
meta-schema here (400 naming the field); what the engine's grammar compiler
still refuses comes back as a 400 naming the same field.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from infer_protocol import Constraint

from .errors import bad_request

GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
JSON_SCHEMA_FIELDS = frozenset({"name", "schema", "strict", "description"})


@dataclass(frozen=True)
class OutputConstraint:
    """A Constraint and the request field it came from (for error messages)."""

    constraint: Constraint
    param: str


@functools.lru_cache(maxsize=256)
def _schema_problem(text: str) -> str | None:
    """What is wrong with the schema whose JSON is `text` (None if nothing); cached, as
    a meta-schema check costs ~2 ms and clients resend the same schema."""
    schema = json.loads(text)
    if isinstance(schema, bool):
        return None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        at = f" at '{where}'" if where else ""
        return f"is not a valid JSON Schema{at}: {exc.message}"
    return None


def check_schema(schema: Any, param: str) -> str:
    """The schema as JSON text, or a 400 naming `param` and what is wrong with it."""
    if not isinstance(schema, dict | bool):
        raise bad_request(f"'{param}' must be a JSON Schema object", param)
    text = json.dumps(schema)
    problem = _schema_problem(text)
    if problem is not None:
        raise bad_request(f"'{param}' {problem}", param)
    return text


def _response_format(value: Any) -> OutputConstraint | None:
    param = "response_format"
    if not isinstance(value, dict):
        raise bad_request(f"'{param}' must be an object", param)
    kind = value.get("type")
    extra = sorted(set(value) - {"type", "json_schema"})
    if extra:
        raise bad_request(f"'{param}.{extra[0]}' is not a supported field", f"{param}.{extra[0]}")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputConstraint(Constraint("json_object"), param)
    if kind != "json_schema":
        raise bad_request(
            f"'{param}.type' must be 'text', 'json_object' or 'json_schema'; got {kind!r}",
            f"{param}.type",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise bad_request(f"'{param}.json_schema' must be an object", f"{param}.json_schema")
    extra = sorted(set(spec) - JSON_SCHEMA_FIELDS)
    if extra:
        name = f"{param}.json_schema.{extra[0]}"
        raise bad_request(f"'{name}' is not a supported field", name)
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        name = f"{param}.json_schema.name"
        raise bad_request(f"'{name}' is a required string", name)
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        name = f"{param}.json_schema.strict"
        raise bad_request(f"'{name}' must be a boolean", name)
    schema_param = f"{param}.json_schema.schema"
    schema = spec.get("schema", {"type": "object"})
    return OutputConstraint(
        Constraint("json_schema", check_schema(schema, schema_param)), schema_param
    )


def _guided(name: str, value: Any) -> OutputConstraint:
    if name == "guided_json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise bad_request(f"'{name}' is not valid JSON: {exc}", name) from None
        return OutputConstraint(Constraint("json_schema", check_schema(value, name)), name)
    if name == "guided_choice":
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(c, str) and c for c in value)
        ):
            raise bad_request(f"'{name}' must be a non-empty array of non-empty strings", name)
        return OutputConstraint(Constraint("choice", choices=list(value)), name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{name}' must be a non-empty string", name)
    kind = "regex" if name == "guided_regex" else "grammar"
    return OutputConstraint(Constraint(kind, value), name)


def parse_output_constraint(body: dict, *, completions: bool) -> OutputConstraint | None:
    """The constraint a request asks for; 400 naming the field when it is malformed."""
    given = [k for k in ("response_format", *GUIDED_FIELDS) if body.get(k) is not None]
    if not completions:
        given = [k for k in given if k == "response_format"]
    if len(given) > 1:
        raise bad_request(
            f"'{given[1]}' cannot be combined with '{given[0]}': one output constraint per request",
            given[1],
        )
    if not given:
        return None
    if given[0] == "response_format":
        return _response_format(body["response_format"])
    return _guided(given[0], body[given[0]])
