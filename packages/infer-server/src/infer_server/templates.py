"""Chat templates rendered with Hugging Face semantics in a jinja2 sandbox.

A template sees `messages` (list of {"role", "content"} with string content),
`add_generation_prompt`, `bos_token`, `eos_token` and `raise_exception`. Any
error raised while rendering becomes `TemplateError`, which routes report as
400 (it is caused by the request's messages).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(ValueError):
    """Rendering failed (a template's raise_exception or a broken template)."""


def _raise_exception(message: str) -> None:
    raise TemplateError(str(message))


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """One compiled template; `render` is pure and safe to call concurrently."""

    def __init__(self, source: str) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template does not compile: {exc}") from None
        self.source = source

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        bos_token: str | None = None,
        eos_token: str | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token or "",
                eos_token=eos_token or "",
                tools=tools,
                documents=None,
            )
        except TemplateError:
            raise
        except Exception as exc:  # jinja2 errors, sandbox violations, type errors in the template
            raise TemplateError(f"chat template failed: {exc}") from None


def builtin_for(vocab_has: set[str] | frozenset[str]) -> str:
    """Pick a built-in template from the special tokens the tokenizer knows."""
    if "<|start_header_id|>" in vocab_has:
        return LLAMA3_TEMPLATE
    return CHATML_TEMPLATE
