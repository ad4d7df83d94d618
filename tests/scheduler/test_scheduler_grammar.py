"""Constrained decoding in the engine, through the offline LLM on the default model."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from infer_protocol import Constraint, SamplingParams
from infer_scheduler import LLM
from infer_scheduler.grammar import GrammarCompiler

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "zip": {"type": "integer", "minimum": 0, "maximum": 99999},
            },
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "pets", "address"],
}


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM(model="smollm2", device="cpu", dtype="float32", kv_cache_tokens=8192)


def test_schema_outputs_validate_beside_free_rows(llm: LLM) -> None:
    prompts = ["Describe a person as JSON.", "Write a JSON object about Ann.", "Tell me a story."]
    free_alone = llm.generate(prompts[2], max_tokens=24)[0]
    sampled = SamplingParams(temperature=0.8, top_p=0.95, seed=7)
    outs = llm.generate(
        prompts,
        [SamplingParams(temperature=0.0), sampled, SamplingParams(temperature=0.0)],
        max_tokens=[160, 160, 24],
        constraint=[
            Constraint("json_schema", json.dumps(PERSON)),
            Constraint("json_schema", json.dumps(PERSON)),
            None,
        ],
    )
    for out in outs[:2]:
        assert out.finish_reason == "stop", out.text
        jsonschema.validate(json.loads(out.text), PERSON)
    # the free row in the same batch is untouched by its neighbours' masks
    assert outs[2].token_ids == free_alone.token_ids


def test_json_object_regex_choice_and_grammar(llm: LLM) -> None:
    outs = llm.generate(
        ["Give me JSON.", "My phone number is", "Is the sky blue? Answer:", "Count:"],
        max_tokens=60,
        constraint=[
            Constraint("json_object"),
            Constraint("regex", r"\d{3}-\d{4}"),
            Constraint("choice", choices=["yes", "no"]),
            Constraint("grammar", 'root ::= "1, 2" (", " [3-9])? (", " [3-9])?'),
        ],
    )
    assert isinstance(json.loads(outs[0].text), dict)
    assert re.fullmatch(r"\d{3}-\d{4}", outs[1].text)
    assert outs[1].finish_reason == "stop"
    assert outs[2].text in ("yes", "no")
    assert re.fullmatch(r"1, 2(, [3-9]){0,2}", outs[3].text)
    assert all(out.finish_reason == "stop" for out in outs)


def test_invalid_constraints_are_refused_by_name(llm: LLM) -> None:
    with pytest.raises(ValueError, match=r"invalid json_schema: .*foo"):
        llm.generate("x", constraint=Constraint("json_schema", '{"type": "foo"}'))
    with pytest.raises(ValueError, match="invalid regex"):
        llm.generate("x", constraint=Constraint("regex", "(ab"))
    with pytest.raises(ValueError, match="invalid grammar"):
        llm.generate("x", constraint=Constraint("grammar", "root ::= undefined_rule"))
    # the engine is unharmed: the next request runs
    assert llm.generate("Hi", max_tokens=4)[0].finish_reason == "length"


def test_compiled_grammars_are_cached_in_a_bounded_lru(llm: LLM) -> None:
    bundle = llm.bundle
    compiler = GrammarCompiler(bundle.tokenizer, bundle.config.vocab_size, [0], cache_size=2)
    schemas = [Constraint("json_schema", json.dumps({"enum": [i]})) for i in range(3)]
    first = compiler.compile(schemas[0])
    assert compiler.compile(schemas[0]) is first
    assert (compiler.hits, compiler.misses) == (1, 1)
    compiler.compile(schemas[1])
    compiler.compile(schemas[2])  # evicts schemas[0]
    assert compiler.compile(schemas[0]) is not first
    assert compiler.misses == 4
