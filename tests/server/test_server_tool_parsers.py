"""The tool-call parsers and the Hermes prompt fallback, without a server."""

from __future__ import annotations

import json

from infer_server.tool_parsers import ParsedCall, make_parser, parser_for_template
from infer_server.tool_prompt import for_template


def test_hermes_finds_calls_and_keeps_the_rest_as_content() -> None:
    p = make_parser("hermes")
    text = 'Let me check.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    assert p.parse(text) == ("Let me check.", [ParsedCall("f", '{"x": 1}')])
    two = '<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "g", "arguments": {"y": "z"}}'
    assert [c.name for c in p.parse(two)[1]] == ["f", "g"]
    assert p.parse("<tool_call>not json</tool_call>") == ("<tool_call>not json</tool_call>", [])
    assert p.parse("plain answer") == ("plain answer", [])


def test_llama3_json_and_mistral() -> None:
    llama = make_parser("llama3_json")
    text = '<|python_tag|>{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}'
    assert llama.parse(text) == ("", [ParsedCall("f", '{"a": 1}'), ParsedCall("g", "{}")])
    assert llama.parse("The answer is {1}") == ("The answer is {1}", [])
    mistral = make_parser("mistral")
    text = 'ok [TOOL_CALLS] [{"name": "f", "arguments": {"q": "x"}}]'
    assert mistral.parse(text) == ("ok", [ParsedCall("f", '{"q": "x"}')])
    assert mistral.parse("[TOOL_CALLS] [oops") == ("[TOOL_CALLS] [oops", [])


def test_the_parser_is_chosen_from_the_template() -> None:
    assert parser_for_template("{{ '[TOOL_CALLS]' }}") == "mistral"
    assert parser_for_template("<|python_tag|>{{ tools }}") == "llama3_json"
    assert parser_for_template("<tool_call>") == "hermes"
    assert parser_for_template("<|im_start|>") == "hermes"


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
CALLS = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "", "tool_calls": CALLS},
    {"role": "tool", "content": "1", "tool_call_id": "c"},
    {"role": "tool", "content": "2", "tool_call_id": "c"},
]


def test_a_template_with_tools_gets_them_natively() -> None:
    messages, tools = for_template("{{ tools }}", HISTORY, TOOLS)
    assert tools == TOOLS
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert messages[3] == HISTORY[3]


def test_a_template_without_tools_gets_the_hermes_prompt() -> None:
    messages, tools = for_template("<|im_start|>{{ m }}", HISTORY, TOOLS)
    assert tools is None
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be brief.")
    assert json.dumps(TOOLS[0]) in messages[0]["content"]
    assert messages[2] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>',
    }
    assert messages[3] == {
        "role": "user",
        "content": "<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n</tool_response>",
    }
    assert len(messages) == 4
