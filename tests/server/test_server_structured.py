"""Structured outputs through the official client against the default model (SmolLM2-135M)."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

NAME = {"type": "string", "minLength": 1, "maxLength": 20}
SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "name": NAME,
            "address": {
                "type": "object",
                "properties": {
                    "city": NAME,
                    "zip": {"type": "integer", "minimum": 10000, "maximum": 99999},
                },
                "required": ["city", "zip"],
            },
        },
        "required": ["name", "address"],
    },
    "array": {
        "type": "object",
        "properties": {
            "colors": {"type": "array", "items": NAME, "minItems": 1, "maxItems": 4},
        },
        "required": ["colors"],
    },
    "enum": {
        "type": "object",
        "properties": {
            "sentiment": {"enum": ["positive", "negative", "neutral"]},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["sentiment", "stars"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "price": {"type": "number", "minimum": 0, "maximum": 1000},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
            "in_stock": {"type": "boolean"},
        },
        "required": ["price", "quantity", "in_stock"],
    },
    "list_of_objects": {
        "type": "object",
        "properties": {
            "movies": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "title": NAME,
                        "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
                    },
                    "required": ["title", "year"],
                },
                "minItems": 1,
                "maxItems": 3,
            }
        },
        "required": ["movies"],
    },
}
PROMPTS = {
    "nested": "Invent a person and their address.",
    "array": "List some colors.",
    "enum": "Review: 'Great food, slow service.' Rate it.",
    "numbers": "Describe a product in the shop.",
    "list_of_objects": "Name a few classic movies.",
}


def _ask(client: openai.OpenAI, name: str, seed: int) -> tuple[str, str]:
    out = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": PROMPTS[name] + " Answer in JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True},
        },
        temperature=0.7,
        seed=seed,
        max_tokens=200,
    )
    return out.choices[0].message.content, out.choices[0].finish_reason


def test_twenty_json_schema_requests_parse_and_validate(smol_gateway) -> None:
    client = smol_gateway.openai()
    jobs = [(name, seed) for seed in range(4) for name in SCHEMAS]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda job: _ask(client, *job), jobs))
    for (name, _), (text, reason) in zip(jobs, results, strict=True):
        assert reason == "stop", (name, text)
        jsonschema.validate(json.loads(text), SCHEMAS[name])


class Movie(BaseModel):
    title: str = Field(min_length=1, max_length=30)
    year: int = Field(ge=1900, le=2030)
    genres: list[str] = Field(max_length=3)


def test_parse_with_a_pydantic_model(smol_gateway) -> None:
    out = smol_gateway.openai().chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "Tell me about the movie Alien."}],
        response_format=Movie,
        temperature=0,
        max_tokens=200,
    )
    movie = out.choices[0].message.parsed
    assert isinstance(movie, Movie)
    assert 1900 <= movie.year <= 2030


def test_json_object_and_vllm_guided_fields(smol_gateway) -> None:
    client = smol_gateway.openai()
    out = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=120,
    )
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(out.choices[0].message.content), dict)
    else:  # cut by max_tokens: still a JSON object prefix
        assert out.choices[0].message.content.startswith("{")
    done = client.completions.create(
        model="smollm2",
        prompt="Is Paris in France? Answer:",
        max_tokens=8,
        extra_body={"guided_choice": ["yes", "no"]},
    )
    assert done.choices[0].text in ("yes", "no")
    done = client.completions.create(
        model="smollm2",
        prompt="Call me at",
        max_tokens=12,
        extra_body={"guided_regex": r" \d{3}-\d{4}"},
    )
    assert re.fullmatch(r" \d{3}-\d{4}", done.choices[0].text)
    done = client.completions.create(
        model="smollm2",
        prompt="Pick a pet:",
        max_tokens=8,
        extra_body={"guided_grammar": 'root ::= " " ("cat" | "dog")'},
    )
    assert done.choices[0].text in (" cat", " dog")
    done = client.completions.create(
        model="smollm2",
        prompt="A user record:",
        max_tokens=60,
        stream=True,
        extra_body={"guided_json": SCHEMAS["enum"]},
    )
    text = "".join(c.choices[0].text for c in done if c.choices)
    jsonschema.validate(json.loads(text), SCHEMAS["enum"])


@pytest.mark.parametrize(
    "body, param",
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "foo"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"$ref": "#/nope"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
    ],
)
def test_malformed_constraints_are_400s_naming_the_field(smol_gateway, body, param) -> None:
    client = smol_gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            extra_body=body,
        )
    assert info.value.body["param"] == param, info.value.body
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(
            model="smollm2", prompt="x", max_tokens=4, extra_body={"guided_regex": "(ab"}
        )
    assert info.value.body["param"] == "guided_regex"
    assert "regex" in info.value.body["message"]
